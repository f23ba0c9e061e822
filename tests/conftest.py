"""Test set-up: Keras (the reference) runs on its torch backend; CI property runs are reproducible."""

import os

from hypothesis import settings

# Must be set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")

# In CI the property tests draw the same examples on every run, so a landing never
# depends on luck; locally they keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
