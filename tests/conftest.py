"""Test set-up: Keras (the reference) runs on its torch backend."""

import os

# Must be set before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "torch")
