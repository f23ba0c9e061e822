"""Checks of one weightwise layer against its Keras 3 twin: same weights in, same numbers out.

Used by the normalization, embedding and activation-layer tests. Keras runs in-process
on its torch backend (``KERAS_BACKEND=torch``, set by the test configuration).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from helpers import to_numpy

TOL = {"rtol": 1e-5, "atol": 1e-5}


def json_normalized(value: Any) -> Any:
    return json.loads(json.dumps(value))


def assert_same_config(ours: Any, theirs: Any) -> None:
    """The configs agree key for key (names aside), floats at float32 precision."""
    mine, reference = dict(ours.get_config()), dict(theirs.get_config())
    mine.pop("name"), reference.pop("name")
    _assert_same(json_normalized(mine), json_normalized(reference), "config")


def _assert_same(ours: Any, theirs: Any, where: str) -> None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert set(ours) == set(theirs), (where, set(ours) ^ set(theirs))
        for key in ours:
            _assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{where}[{index}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert float(np.float32(ours)) == float(np.float32(theirs)), (where, ours, theirs)
    else:
        assert ours == theirs, (where, ours, theirs)


def twins(keras: Any, name: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], seed: int = 1) -> tuple[Any, Any]:
    """Keras's ``layers.<name>(**kwargs)`` and ours, built for ``input_shape``, holding the same random weights."""
    import weightwise

    theirs = getattr(keras.layers, name)(**kwargs)
    ours = getattr(weightwise.layers, name)(**kwargs)
    theirs.build(input_shape)
    ours.build(input_shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert len(ours.trainable_weights) == len(theirs.trainable_weights)
    rng = np.random.default_rng(seed)
    values = [rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in theirs.get_weights()]
    theirs.set_weights(values)
    ours.set_weights(values)
    assert_same_config(ours, theirs)
    return ours, theirs


def compare_calls(
    ours: Any, theirs: Any, inputs: np.ndarray, calls: list[dict[str, Any]], float_inputs: bool = True,
) -> None:
    """Call both layers in turn with each ``calls`` entry as keyword arguments; after each call compare the
    outputs, the gradients of a random projection of them (inputs and trainable weights), ``losses`` and
    every weight (moving statistics included)."""
    rng = np.random.default_rng(7)
    for kwargs in calls:
        mine_in, their_in = torch.tensor(inputs), torch.tensor(inputs)
        if float_inputs:
            mine_in.requires_grad_(True)
            their_in.requires_grad_(True)
        kwargs_theirs = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        kwargs_ours = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        mine_out, their_out = ours(mine_in, **kwargs_ours), theirs(their_in, **kwargs_theirs)
        np.testing.assert_allclose(to_numpy(mine_out), to_numpy(their_out), **TOL, err_msg=f"outputs {kwargs}")
        projection = torch.tensor(rng.normal(size=tuple(mine_out.shape)).astype(np.float32))
        mine_loss = (mine_out * projection).sum() + sum(ours.losses, torch.tensor(0.0))
        their_loss = (their_out * projection).sum() + sum(theirs.losses, torch.tensor(0.0))
        mine_params = list(ours.trainable_weights)
        their_params = [v.value for v in theirs.trainable_weights]
        mine_grads = torch.autograd.grad(mine_loss, ([mine_in] if float_inputs else []) + mine_params,
                                         allow_unused=True)
        their_grads = torch.autograd.grad(their_loss, ([their_in] if float_inputs else []) + their_params,
                                          allow_unused=True)
        for index, (a, b) in enumerate(zip(mine_grads, their_grads)):
            if a is None or b is None:
                assert a is None and b is None or to_numpy(a if a is not None else b).max() == 0, index
                continue
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), **TOL, err_msg=f"gradient {index} {kwargs}")
        np.testing.assert_allclose(sorted(float(to_numpy(v)) for v in ours.losses),
                                   sorted(float(to_numpy(v)) for v in theirs.losses), **TOL)
        for mine_w, their_w, w in zip(ours.get_weights(), theirs.get_weights(), ours.weights):
            np.testing.assert_allclose(mine_w, their_w, **TOL, err_msg=f"weight {w.name} after {kwargs}")


def fit_both(keras: Any, build: Any, x: np.ndarray, y: np.ndarray, loss: str = "mse", steps: int = 3) -> tuple[Any, Any]:
    """``build(lib)`` in Keras and here, the same weights, ``steps`` SGD steps of ``fit`` each; the models."""
    import weightwise

    theirs, ours = build(keras), build(weightwise)
    ours.set_weights(theirs.get_weights())
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    ours.compile(optimizer=weightwise.optimizers.SGD(0.1), loss=loss)
    batch = len(x) // steps
    theirs.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return ours, theirs


def file_round_trip(keras: Any, build: Any, x: np.ndarray, y: np.ndarray, tmp_path: Any, writer: str) -> tuple[Any, Any]:
    """Train ``build(lib)`` two steps on both sides, save one side's model as ``.keras`` (``writer`` is
    ``"keras"`` or ``"weightwise"``) and load it on the other; check weights and predictions agree."""
    import weightwise

    ours, theirs = fit_both(keras, build, x, y, steps=2)
    path = tmp_path / "model.keras"
    if writer == "keras":
        theirs.save(path)
        ours = weightwise.models.load_model(path)
    else:
        ours.save(path)
        theirs = keras.saving.load_model(path)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, to_numpy(reference), **TOL)
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), **TOL)
    return ours, theirs
