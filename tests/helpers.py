"""Shared test helpers: the Keras reference, and the checks every class gets."""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import numpy as np
import pytest


def keras_or_skip() -> Any:
    """Import Keras 3, the reference implementation.

    Locally a missing Keras skips the conformance tests; in CI (``CI`` set) it is
    an error, so conformance can never be skipped silently on a landing.
    """
    try:
        keras = importlib.import_module("keras")
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Keras 3 must be installed in CI: the conformance tests may not be skipped.")
        pytest.skip("keras is not installed (pip install -e '.[test]')")
    if os.environ.get("CI") and keras.backend.backend() != "torch":
        pytest.fail(f"CI runs conformance with KERAS_BACKEND=torch, got {keras.backend.backend()!r}")
    return keras


def to_numpy(x: Any) -> np.ndarray:
    """Any tensor (torch, Keras on any backend) or array as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def run_class_serialization_test(obj: Any, module: Any) -> Any:
    """Round-trip ``obj`` through ``get_config``/``from_config``, ``serialize``/``deserialize`` and JSON.

    ``module`` is the family module (``weightwise.regularizers`` or ``weightwise.constraints``).
    Returns the rebuilt object after asserting every path gives an equal config.
    """
    config = obj.get_config()
    assert isinstance(config, dict)
    rebuilt = type(obj).from_config(config)
    assert type(rebuilt) is type(obj)
    assert rebuilt.get_config() == config

    serialized = module.serialize(obj)
    assert set(serialized) == {"module", "class_name", "config", "registered_name"}
    assert serialized["config"] == config
    through_json = json.loads(json.dumps(serialized))
    for form in (serialized, through_json):
        again = module.deserialize(form)
        assert type(again) is type(obj)
        assert again.get_config() == config
        again = module.get(form)
        assert type(again) is type(obj)
        assert again.get_config() == config
    return rebuilt
