"""``ProgbarLogger``: the progress bar and per-epoch lines ``fit`` prints."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm

from weightwise.callbacks._helpers import _format_logs, _format_time, _print, _verbose
from weightwise.callbacks._ranks import is_primary
from weightwise.callbacks.callback import Callback


class ProgbarLogger(Callback):
    """Prints progress and metrics to stdout, as ``fit(verbose=...)`` asks.

    Reads ``verbose``, ``epochs`` and ``steps`` from ``params``. ``verbose=0`` is
    silent; ``1`` shows a tqdm progress bar per epoch with the running metrics;
    ``2`` prints one line per epoch. With more than one epoch each epoch opens with
    ``Epoch i/n``. Inside ``fit`` the validation pass is silent; ``evaluate`` and
    ``predict`` get a bar (or line) of their own. Under ``torchrun`` only rank 0 prints.

    >>> logger = ProgbarLogger()
    >>> logger.set_params({"verbose": 2, "epochs": 2, "steps": 10})
    >>> logger.on_train_begin()
    >>> logger.on_epoch_begin(0)
    Epoch 1/2
    >>> logger.on_epoch_end(0, {"loss": 0.25, "val_loss": 0.0001})
    10/10 - 0s - ...s/step - loss: 0.2500 - val_loss: 1.0000e-04
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.progbar: tqdm | None = None
        self.target: int | None = None
        self.verbose: int = 1
        self.epochs: int = 1
        self._called_in_fit = False
        self._open = False
        self._start = time.perf_counter()

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.verbose = _verbose(params.get("verbose", 1), (0, 1, 2, "auto"))
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Inside `fit`, the validation pass is silent.
        self._called_in_fit = True

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._reset_progbar()
        if self.verbose and self.epochs > 1:
            _print(f"Epoch {epoch + 1}/{self.epochs}")
        self._maybe_init_progbar()

    def _reads_batch_logs(self, hook: str) -> bool:
        # The bar shows the running values; a line per epoch (verbose=2) needs only the epoch's.
        # Not rank-dependent: under torchrun every rank computes the same logs (a collective).
        return self.verbose == 1 and (hook == "on_train_batch_end" or not self._called_in_fit)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Prediction results are not metrics: not shown.
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._finalize_progbar(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # A bar left open by an interrupted epoch is closed, not left dangling.
        self._reset_progbar()

    def _reset_progbar(self) -> None:
        if self.progbar is not None:
            self.progbar.close()
        self.seen = 0
        self.progbar = None
        self._open = False

    def _maybe_init_progbar(self) -> None:
        if self._open:
            return
        self._open = True
        self._start = time.perf_counter()
        if self.verbose == 1 and is_primary():
            self.progbar = tqdm(
                total=self.target,
                unit="step",
                file=sys.stdout,
                leave=True,
                dynamic_ncols=True,
            )

    def _update_progbar(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._maybe_init_progbar()
        self.seen = batch + 1  # One-indexed.
        if self.progbar is not None:
            self.progbar.set_postfix_str(_format_logs(logs or {}), refresh=False)
            self.progbar.update(self.seen - self.progbar.n)

    def _finalize_progbar(self, logs: dict[str, Any] | None) -> None:
        logs = logs or {}
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
        if self.progbar is not None:
            self.progbar.total = self.target
            self.progbar.set_postfix_str(_format_logs(logs), refresh=False)
            self.progbar.update(self.target - self.progbar.n)
            self.progbar.close()
            self.progbar = None
        elif self.verbose == 2 and self.target:
            elapsed = time.perf_counter() - self._start
            digits = int(math.log10(self.target)) + 1
            line = f"{self.target:{digits}d}/{self.target} - {elapsed:.0f}s - {_format_time(elapsed / self.target, 'step')}"
            if logs:
                line += " - " + _format_logs(logs)
            _print(line)
        self._open = False
