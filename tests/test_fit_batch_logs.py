"""Batch logs are read back to the host only when a callback reads them (Keras's rule).

``fit`` and ``evaluate`` accumulate the loss and the metrics on the device; the per-batch
values a callback receives are the running means NumPy computes for the same training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from weightwise import Sequential, layers, metrics, optimizers
from weightwise.callbacks import (
    Callback,
    CallbackList,
    LambdaCallback,
    ModelCheckpoint,
    ProgbarLogger,
    TensorBoard,
    TerminateOnNaN,
)

X = np.arange(20, dtype=np.float32).reshape(10, 2) / 10
Y = (X @ np.array([[1.0], [-2.0]], dtype=np.float32) + 0.5).astype(np.float32)
W0 = np.array([[0.3], [0.1]], dtype=np.float32)
LR = 0.05
BATCH = 4  # batches of 4, 4 and 2 samples


def _model() -> Any:
    model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
    with torch.no_grad():
        model.layers[0].kernel.copy_(torch.from_numpy(W0))
    model.compile(optimizer=optimizers.SGD(learning_rate=LR), loss="mse", metrics=["mae"])
    return model


def _numpy_running_logs(epochs: int) -> list[dict[str, float]]:
    """Per batch, the running (sample-weighted) means of the loss and the MAE over the epoch so far."""
    w, b = W0.astype(np.float64), np.zeros(1)
    out = []
    for _ in range(epochs):
        seen = loss_sum = mae_sum = 0.0
        for start in range(0, len(X), BATCH):
            x, y = X[start:start + BATCH].astype(np.float64), Y[start:start + BATCH].astype(np.float64)
            error = x @ w + b - y
            n = len(x)
            seen += n
            loss_sum += np.mean(error ** 2) * n
            mae_sum += np.sum(np.abs(error))
            out.append({"loss": loss_sum / seen, "mae": mae_sum / seen})
            w = w - LR * 2 * x.T @ error / n
            b = b - LR * 2 * error.sum(0) / n
    return out


class _Recorder(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[str, Any]] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.append(dict(logs))


class _OldName(_Recorder):
    on_train_batch_end = Callback.on_train_batch_end  # the base's, which calls on_batch_end

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches.append(dict(logs))


@pytest.fixture
def result_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the trackers and metrics whose ``result()`` is read (a host read in ``_logs``)."""
    calls: list[str] = []
    original = metrics.Mean.result

    def counted(self: Any) -> torch.Tensor:
        calls.append(self.name)
        return original(self)

    monkeypatch.setattr(metrics.Mean, "result", counted)
    return calls


@pytest.mark.parametrize("verbose", [0, 2])
def test_fit_without_batch_callbacks_reads_no_batch_logs(result_calls: list[str], verbose: int,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = _model()
    history = model.fit(X, Y, batch_size=BATCH, epochs=2, shuffle=False, verbose=verbose)
    # Only the epoch logs are read: loss and mae, once per epoch (3 batches per epoch).
    assert sorted(result_calls) == ["loss", "loss", "mae", "mae"]
    expected = _numpy_running_logs(2)
    np.testing.assert_allclose(history.history["loss"], [expected[2]["loss"], expected[5]["loss"]], rtol=1e-5)
    np.testing.assert_allclose(history.history["mae"], [expected[2]["mae"], expected[5]["mae"]], rtol=1e-5)


def test_progress_bar_reads_every_batch(result_calls: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _model().fit(X, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=1)
    assert result_calls.count("loss") == 3 + 1  # each batch, then the epoch
    assert "loss:" in capsys.readouterr().out


@pytest.mark.parametrize("make", [_Recorder, _OldName])
def test_batch_callback_gets_every_batch_running_values(make: Any) -> None:
    recorder = make()
    _model().fit(X, Y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    expected = _numpy_running_logs(2)
    assert len(recorder.batches) == len(expected)
    for got, want in zip(recorder.batches, expected):
        assert sorted(got) == ["loss", "mae"]
        assert all(type(value) is float for value in got.values())
        np.testing.assert_allclose([got["loss"], got["mae"]], [want["loss"], want["mae"]], rtol=1e-5)


def test_lambda_batch_function_gets_batch_logs() -> None:
    seen: list[float] = []
    callback = LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    _model().fit(X, Y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    np.testing.assert_allclose(seen, [logs["loss"] for logs in _numpy_running_logs(1)], rtol=1e-5)


def test_evaluate_reads_batch_logs_only_for_a_callback(result_calls: list[str]) -> None:
    model = _model()
    model.evaluate(X, Y, batch_size=BATCH, verbose=0)
    assert sorted(result_calls) == ["loss", "mae"]
    seen: list[float] = []
    result_calls.clear()
    model.evaluate(X, Y, batch_size=BATCH, verbose=0,
                   callbacks=[LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(logs["loss"]))])
    assert result_calls.count("loss") == 3 + 1
    error = X @ W0 - Y
    running = [np.sum(error[:end] ** 2) / end for end in (4, 8, 10)]
    np.testing.assert_allclose(seen, running, rtol=1e-5)


class _Quiet(Callback):
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass


class _Duck:
    """Not a Callback: every hook present, so it may read anything."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("on_", "set_")):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class _MyBar(ProgbarLogger):
    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_train_batch_end(batch, logs)


def _reads(callback: Any, verbose: int = 0, hook: str = "on_train_batch_end") -> bool:
    return CallbackList([callback], verbose=verbose, epochs=1, steps=1)._reads_batch_logs(hook)


def test_which_callbacks_read_batch_logs(tmp_path: Any) -> None:
    assert not _reads(_Quiet())
    assert not _reads(LambdaCallback(on_epoch_end=lambda epoch, logs: None))
    assert _reads(LambdaCallback(on_batch_end=lambda batch, logs: None))
    assert _reads(TerminateOnNaN())
    assert _reads(_Duck())
    assert _reads(ProgbarLogger(), verbose=1)
    assert not _reads(ProgbarLogger(), verbose=2)
    assert _reads(_MyBar(), verbose=2)  # an override is not the built-in's to vouch for
    assert not _reads(ModelCheckpoint(tmp_path / "w.weights.h5", save_weights_only=True))
    assert _reads(ModelCheckpoint(tmp_path / "w.weights.h5", save_weights_only=True, save_freq=2))
    assert not _reads(TensorBoard(tmp_path))
    assert _reads(TensorBoard(tmp_path, update_freq="batch"))
    # evaluate's bar shows running values; fit's validation pass is silent.
    bar = ProgbarLogger()
    assert _reads(bar, verbose=1, hook="on_test_batch_end")
    bar.on_train_begin()
    assert not bar._reads_batch_logs("on_test_batch_end")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_mean_of_batch_losses_matches_numpy(dtype: torch.dtype) -> None:
    values = [0.1, 2.5e4, 1 / 3, 7.0]
    sizes = [64, 64, 64, 17]
    tracker = metrics.Mean(name="loss")
    for value, size in zip(values, sizes):
        tracker.update_state(torch.tensor(value, dtype=dtype), sample_weight=size)
    reference = np.array([torch.tensor(v, dtype=dtype).item() for v in values], dtype=np.float32)
    expected = np.sum(reference * np.array(sizes, dtype=np.float32)) / np.sum(sizes)
    np.testing.assert_allclose(float(tracker.result()), expected, rtol=1e-6)
    assert tracker.total.dtype == torch.float32 and float(tracker.count) == sum(sizes)
