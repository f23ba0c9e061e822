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


def rule_arguments(layer_cls: type) -> list[str]:
    """Every ``*_regularizer`` / ``*_constraint`` constructor argument of a layer class, base classes included."""
    import inspect

    names: list[str] = []
    for cls in layer_cls.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for name in inspect.signature(init).parameters:
            if name.endswith(("_regularizer", "_constraint")) and name not in names:
                names.append(name)
    return names


def run_layer_test(
    layer_cls: type,
    init_kwargs: dict[str, Any],
    input_shape: tuple[int, ...] | list[tuple[int, ...]],
    expected_output_shape: tuple[int, ...] | None = None,
    expected_num_weights: int | None = None,
    input_dtype: Any = None,
    exclude: tuple[str, ...] = (),
) -> Any:
    """The checks every layer gets; returns the built layer.

    - it builds on first call and gives ``expected_output_shape``;
    - every ``*_regularizer`` and ``*_constraint`` argument reaches its parameter, in the layer
      or a sublayer (``activity_regularizer`` reaches ``layer.losses``), and ``losses`` counts them;
    - ``get_config``/``from_config``/``serialize``/JSON round trips agree;
    - ``set_weights(get_weights())`` restores the outputs, and a bad list changes nothing.
    """
    import torch

    from weightwise import binding, constraints, layers, regularizers

    rng = np.random.default_rng(0)

    def sample(shape: tuple[int, ...]) -> Any:
        return torch.from_numpy(rng.normal(size=shape).astype(input_dtype or np.float32))

    # A list of shapes feeds a multi-input layer (Concatenate, Add) a list of tensors.
    x = [sample(s) for s in input_shape] if isinstance(input_shape, list) else sample(input_shape)

    layer = layer_cls(**init_kwargs)
    out = layer(x)
    assert layer.built
    if expected_output_shape is not None:
        assert tuple(out.shape) == tuple(expected_output_shape)
    if expected_num_weights is not None:
        assert len(layer.weights) == expected_num_weights

    # Every rule argument reaches its parameter, with a distinct object each.
    rule_args = [arg for arg in rule_arguments(layer_cls) if arg not in exclude]
    given: dict[str, Any] = {}
    for index, arg in enumerate(rule_args):
        given[arg] = regularizers.L1(0.01 * (index + 1)) if arg.endswith("_regularizer") else constraints.MaxNorm(index + 1.0)
    ruled = layer_cls(**{**init_kwargs, **given})
    ruled(x)
    weight_penalties = 0
    entries = list(binding.bound(ruled))
    for arg, obj in given.items():
        assert getattr(ruled, arg) is obj, arg
        if arg == "activity_regularizer":
            continue
        weight, kind = arg.rsplit("_", 1)
        # The weight may sit in a sublayer (an RNN's cell, an attention projection) or carry
        # another name than the argument (a depthwise layer's `kernel`): find it by its rule.
        holders = [entry for entry in entries if getattr(entry.rule, kind) is obj]
        if not holders:
            # Only a weight the configuration leaves out (bias_* with use_bias=False) may lack its rule.
            assert not any(m._parameters.get(weight) is not None for m in ruled.modules()), arg
            continue
        weight_penalties += len(holders) if kind == "regularizer" else 0
    activity = ruled.activity_regularizer is not None
    assert len(ruled.losses) == weight_penalties + (1 if activity else 0)

    # Config round trips: from_config, serialize/deserialize, JSON.
    config = layer.get_config()
    rebuilt = layer_cls.from_config(config)
    assert rebuilt.get_config() == config
    through_json = json.loads(json.dumps(layers.serialize(ruled)))
    again = layers.deserialize(through_json)
    assert type(again) is layer_cls
    assert json.loads(json.dumps(again.get_config())) == through_json["config"]

    # Weights: a round trip restores outputs; a wrong list changes nothing.
    if layer.weights:
        rebuilt(x)
        rebuilt.set_weights(layer.get_weights())
        np.testing.assert_allclose(to_numpy(rebuilt(x)), to_numpy(layer(x)), rtol=1e-6, atol=1e-6)
        before = [w.copy() for w in layer.get_weights()]
        with pytest.raises(ValueError, match="expecting"):
            layer.set_weights(before[:-1])
        wrong = [w.copy() for w in before]
        wrong[-1] = np.zeros(wrong[-1].shape + (1,), wrong[-1].dtype)
        wrong[0] = wrong[0] + 1.0
        with pytest.raises(ValueError, match="not compatible"):
            layer.set_weights(wrong)
        for old, new in zip(before, layer.get_weights()):
            np.testing.assert_array_equal(old, new)
        assert layer.count_params() == sum(w.size for w in before)
    return layer
