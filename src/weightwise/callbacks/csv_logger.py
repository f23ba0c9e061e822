"""``CSVLogger``: stream each epoch's logs to a CSV file."""

from __future__ import annotations

import collections
import csv
import os
from typing import Any

import numpy as np
import torch

from weightwise import ops
from weightwise.arguments import flag
from weightwise.callbacks._ranks import on_primary, primary_only
from weightwise.callbacks.callback import Callback


class CSVLogger(Callback):
    """Writes each epoch's logs as a row of a CSV file, as Keras does.

    The header is ``epoch`` then the sorted log names of the first epoch; when
    those have no ``val_`` name, the ``val_`` names are added too (``NA`` until
    they appear). Rows end with ``\\r\\n`` (the csv module's default). With
    ``append=True`` an existing file is continued, without a second header.

    Args:
        filename: path of the CSV file.
        separator: the field separator.
        append: continue an existing file instead of overwriting it.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> logger = CSVLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    >>> logger.on_epoch_end(1, {"loss": 0.25, "val_loss": 0.5})
    >>> logger.on_train_end()
    >>> with open(path, newline="") as f:
    ...     print(f.read().replace("\\r\\n", "\\n"), end="")
    epoch,loss,val_loss
    0,0.5,0.75
    1,0.25,0.5
    """

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                f"Invalid value for argument `separator`: expected a one-character string. Received: separator={separator!r}"
            )
        try:
            self.filename = os.fspath(filename)
        except TypeError:
            raise ValueError(
                f"Invalid value for argument `filename`: expected a str or os.PathLike. Received: filename={filename!r}"
            ) from None
        self.sep = separator
        self.append = flag(append, "append")
        self.writer: csv.DictWriter[str] | None = None
        self.keys: list[str] | None = None
        self.append_header = True
        self.csv_file: Any = None

    @primary_only
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")  # noqa: SIM115 - kept open across epochs
        self.writer = None
        self.keys = None

    @primary_only
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.csv_file is None or self.csv_file.closed:
            # Driven without on_train_begin: open the file now.
            self.on_train_begin()

        def handle_value(value: Any) -> Any:
            is_zero_dim = isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0
            if isinstance(value, str):
                return value
            if isinstance(value, torch.Tensor) and not is_zero_dim:
                value = ops.convert_to_numpy(value)
            if isinstance(value, collections.abc.Iterable) and not is_zero_dim:
                return f'"[{", ".join(map(str, value))}]"'
            if isinstance(value, torch.Tensor):
                return value.item()
            return value

        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])

        if self.writer is None:

            class CustomDialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], dialect=CustomDialect)
            if self.append_header:
                self.writer.writeheader()

        row = {"epoch": epoch}
        row.update((key, handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Under torchrun every rank waits for rank 0 to close the file, so each can read it next.
        on_primary(self._close)

    def _close(self) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None
