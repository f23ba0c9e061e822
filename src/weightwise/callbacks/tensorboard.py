"""``TensorBoard``: training logs and weight histograms as TensorBoard event files, through torch's writer.

The files are the ones Keras 3 writes on its torch backend: the same directories
(``log_dir/train``, ``log_dir/validation``), tags and steps. They are written with
``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package
(``pip install "weightwise[tensorboard]"``); it is imported only when a ``TensorBoard``
is created, so ``import weightwise`` never needs it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from weightwise import backend
from weightwise.arguments import count, flag, invalid, is_int
from weightwise.callbacks._helpers import _optimizers, _read_learning_rate, _to_float
from weightwise.callbacks._ranks import full_weights, is_primary, on_primary
from weightwise.callbacks.callback import Callback

_INSTALL_HINT = 'pip install tensorboard (or pip install "weightwise[tensorboard]")'

# tf.summary.histogram's default, which Keras's histograms get: 30 equal-width buckets.
_HISTOGRAM_BUCKETS = 30
# tf.summary.image's default `max_outputs`: the first three images of a weight are written.
_MAX_IMAGES = 3


class _NullWriter:
    """What a rank other than 0 writes to: every call does nothing and returns the writer itself."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def _summary_writer_class() -> Any:
    """torch's ``SummaryWriter``, or an ``ImportError`` that says how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            f"callbacks.TensorBoard writes its event files with the `tensorboard` package, which is not "
            f"installed. Install it with: {_INSTALL_HINT}"
        ) from error
    return SummaryWriter


def _numbers(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """The entries of ``logs`` that hold one number, as floats; text and arrays are no scalars."""
    found: dict[str, float] = {}
    for name, value in (logs or {}).items():
        if isinstance(value, (str, bytes)) or value is None:
            continue
        size = value.numel() if isinstance(value, torch.Tensor) else np.size(value)
        if size != 1:
            continue
        try:
            found[name] = _to_float(np.reshape(value, ()) if isinstance(value, np.ndarray) else value)
        except (TypeError, ValueError):
            continue
    return found


def _update_freq(value: Any) -> Any:
    if value in ("batch", "epoch") and isinstance(value, str):
        return 1 if value == "batch" else "epoch"
    if is_int(value) and value >= 1:
        return int(value)
    raise invalid("update_freq", "'batch', 'epoch' or a positive int (a number of batches)", value)


def _check_profile_batch(value: Any) -> None:
    # Keras on its torch backend refuses any profile_batch but 0: torch has no trace it can write.
    if (is_int(value) or isinstance(value, (bool, np.bool_))) and value == 0:
        return
    raise invalid(
        "profile_batch",
        "0: profiling is not available with the PyTorch backend (as in Keras on its torch backend)",
        value,
    )


def _keras_model_summary(json_string: str) -> Any:
    """The summary Keras writes for ``write_graph``: the model's config, read by TensorBoard's graph plugin."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_STRING

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="graph_keras_model", content=b"1"))
    tensor = TensorProto(dtype=DT_STRING, tensor_shape=TensorShapeProto(), string_val=[json_string.encode()])
    return Summary(value=[Summary.Value(tag="keras", metadata=metadata, tensor=tensor)])


def _weight_images(weight: np.ndarray) -> np.ndarray | None:
    """A weight as Keras shows it: images ``(n, height, width, channels)``, or ``None`` for shapes it skips."""
    image = np.squeeze(weight)
    if image.ndim == 1:  # a bias: one column
        image = image.reshape(1, image.shape[0], 1, 1)
    elif image.ndim == 2:  # a dense kernel, wider than high
        if image.shape[0] > image.shape[1]:
            image = image.T
        image = image.reshape(1, image.shape[0], image.shape[1], 1)
    elif image.ndim == 3:  # a 1-D conv kernel: one image per channel
        if backend.image_data_format() == "channels_last":
            image = np.transpose(image, (2, 0, 1))
        image = image.reshape(*image.shape, 1)
    if image.ndim == 4 and image.shape[-1] in (1, 3, 4):
        return image
    return None


class TensorBoard(Callback):
    """Writes the training logs and the weights to TensorBoard event files, as Keras's ``TensorBoard``.

    What is written, and where (view it with ``tensorboard --logdir <log_dir>``):

    - ``log_dir/train``: at the end of each epoch ``epoch_<name>`` for every number in
      the epoch's logs that does not start with ``val_`` (``epoch_loss``, each metric, and
      entries other callbacks put there, such as ``RegularizationMonitor``'s), plus
      ``epoch_learning_rate`` (``epoch_learning_rate_<name>`` for each part of a
      multi-optimizer), at step ``epoch``. With ``update_freq`` ``"batch"`` or ``N``,
      also ``batch_<name>`` after every ``N``-th training batch, at the count of training
      batches since ``fit`` began (1 for the first). Epoch summaries are written every
      epoch whatever ``update_freq`` is (Keras 3.15 drops those of epochs that end off a
      multiple of ``N``; its documentation promises them).
    - ``log_dir/validation``: ``epoch_<name>`` for each ``val_<name>`` (prefix removed)
      at step ``epoch``, and after each validation or ``evaluate``
      ``evaluation_<name>_vs_iterations`` at the optimizer's ``iterations``.
    - every ``histogram_freq`` epochs (``epoch % histogram_freq == 0``), a histogram
      (30 equal-width buckets) of every weight of every layer in ``model.layers``,
      trainable or not, tagged ``<weight path>/histogram`` (``sequential/dense/kernel/histogram``);
      with ``write_images``, the weight as an image too (``<weight path>/image``).
    - ``write_graph``: the model's config under the tag ``keras`` at step 0, which
      TensorBoard's Graphs tab draws, for ``Sequential`` and ``Functional`` models.
    - ``write_steps_per_second``: ``epoch_steps_per_second`` and ``batch_steps_per_second``.

    Args:
        log_dir: the directory of the event files (a str or path).
        histogram_freq: every how many epochs weight histograms are written; 0 for never.
        write_graph: write the model's conceptual graph (its config), as Keras does on
            the torch backend; no operation-level trace is written.
        write_images: write weights as images, as Keras does (at most 3 per weight).
        write_steps_per_second: write the training steps per second.
        update_freq: ``"epoch"``, ``"batch"`` (the same as 1), or a number ``N`` of batches.
        profile_batch: must be 0: profiling is not available with PyTorch, as in Keras on
            its torch backend.
        embeddings_freq: must be 0: embeddings are not written (Keras 3 writes a weights
            file that TensorBoard's projector cannot read).
        embeddings_metadata: ``None``, a file name or a dict of them; unused while
            ``embeddings_freq`` is 0, as in Keras.

    Raises:
        ImportError: if the ``tensorboard`` package is not installed.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from weightwise import Sequential, layers
    >>> log_dir = tempfile.mkdtemp()
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(1, name="dense")], name="sequential")
    >>> model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    >>> x, y = np.ones((8, 3)), np.zeros((8, 1))
    >>> board = TensorBoard(log_dir, histogram_freq=1)
    >>> _ = model.fit(x, y, epochs=2, validation_data=(x, y), callbacks=[board], verbose=0)
    >>> sorted(os.listdir(log_dir))
    ['train', 'validation']
    >>> from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    >>> train = EventAccumulator(os.path.join(log_dir, "train")).Reload()
    >>> sorted(train.Tags()["scalars"]), sorted(train.Tags()["histograms"])
    (['epoch_learning_rate', 'epoch_loss', 'epoch_mae'], ['sequential/dense/bias/histogram', 'sequential/dense/kernel/histogram'])
    >>> [event.step for event in train.Scalars("epoch_loss")]
    [0, 1]
    >>> TensorBoard(log_dir, update_freq=0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `update_freq`: expected 'batch', 'epoch' or a positive int (a number of batches). Received: update_freq=0
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] = "logs",
        histogram_freq: int = 0,
        write_graph: bool = True,
        write_images: bool = False,
        write_steps_per_second: bool = False,
        update_freq: str | int = "epoch",
        profile_batch: int = 0,
        embeddings_freq: int = 0,
        embeddings_metadata: str | Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        writer_class = _summary_writer_class()
        try:
            log_dir = os.fspath(log_dir)
        except TypeError:
            raise invalid("log_dir", "a str or os.PathLike", log_dir) from None
        histogram_freq = count(histogram_freq, "histogram_freq")
        write_graph = flag(write_graph, "write_graph")
        write_images = flag(write_images, "write_images")
        write_steps_per_second = flag(write_steps_per_second, "write_steps_per_second")
        update_freq = _update_freq(update_freq)
        _check_profile_batch(profile_batch)
        if count(embeddings_freq, "embeddings_freq") != 0:
            raise invalid("embeddings_freq", "0: embeddings are not written by this callback", embeddings_freq)
        if not (embeddings_metadata is None or isinstance(embeddings_metadata, (str, Mapping))):
            raise invalid("embeddings_metadata", "None, a file name or a dict of file names", embeddings_metadata)
        self._writer_class = writer_class
        self.log_dir = log_dir
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_images = write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = update_freq
        self.embeddings_freq = 0
        self.embeddings_metadata = embeddings_metadata
        self._writers: dict[str, Any] = {}
        self._global_train_batch = 0
        self._batch_start_time = 0.0
        self._epoch_start_time = 0.0
        self._epoch_start_iterations = 0
        self._evaluated_this_epoch = False

    # -- writers -------------------------------------------------------------------------
    def _writer(self, which: str) -> Any:
        """The writer of ``log_dir/train`` or ``log_dir/validation``, opened on first use (no empty files)."""
        if not is_primary():
            return _NullWriter()  # under torchrun, rank 0 writes the files
        if which not in self._writers:
            self._writers[which] = self._writer_class(os.path.join(self.log_dir, which))
        return self._writers[which]

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _scalars(self, which: str, prefix: str, values: Mapping[str, float], step: int, suffix: str = "") -> None:
        if not values:
            return
        writer = self._writer(which)
        for name, value in values.items():
            writer.add_scalar(f"{prefix}{name}{suffix}", value, global_step=step)
        writer.flush()

    # -- model ---------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Store the model and, with ``write_graph``, write its config as Keras does."""
        super().set_model(model)
        self._close_writers()
        if self.write_graph:
            self._write_model_config()

    def _write_model_config(self) -> None:
        model = self.model
        # Keras writes the conceptual graph of these two model kinds only (by class name, as it checks).
        if type(model).__name__ not in ("Functional", "Sequential"):
            return
        try:
            json_string = model.to_json()
        except Exception as error:  # noqa: BLE001 - as in Keras, a model that cannot serialize is skipped
            warnings.warn(f"Model failed to serialize as JSON. Ignoring... {error}", stacklevel=2)
            return
        writer = self._writer("train")
        # torch's writer has no public call for a raw summary; its own add_* methods use this one.
        writer._get_file_writer().add_summary(_keras_model_summary(json_string), 0)
        writer.flush()

    def _iterations(self) -> int | None:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        return None if iterations is None else int(_to_float(iterations))

    def _learning_rates(self) -> dict[str, float]:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return {}
        return {
            f"learning_rate_{name}" if name else "learning_rate": _read_learning_rate(part)
            for name, part in _optimizers(optimizer)
            if hasattr(part, "learning_rate")
        }

    # -- hooks ---------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._global_train_batch = 0

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Under torchrun every rank waits for rank 0's files to be complete.
        on_primary(self._close_writers)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def _reads_batch_logs(self, hook: str) -> bool:
        return self.update_freq != "epoch"

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq != 0:
            return
        values = _numbers(logs)
        if self.write_steps_per_second:
            values["steps_per_second"] = 1.0 / max(time.time() - self._batch_start_time, 1e-12)
        self._scalars("train", "batch_", values, self._global_train_batch)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._evaluated_this_epoch = True
        iterations = self._iterations()
        if iterations is not None:
            self._scalars("validation", "evaluation_", _numbers(logs), iterations, suffix="_vs_iterations")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._evaluated_this_epoch = False
        if self.write_steps_per_second:
            self._epoch_start_iterations = self._iterations() or 0
            self._epoch_start_time = time.time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = _numbers(logs)
        if values:
            train = {name: value for name, value in values.items() if not name.startswith("val_")}
            validation = {name[4:]: value for name, value in values.items() if name.startswith("val_")}
            train.update(self._learning_rates())
            if self.write_steps_per_second:
                elapsed = max(time.time() - self._epoch_start_time, 1e-12)
                train["steps_per_second"] = ((self._iterations() or 0) - self._epoch_start_iterations) / elapsed
            self._scalars("train", "epoch_", train, epoch)
            self._scalars("validation", "epoch_", validation, epoch)
            if validation and not self._evaluated_this_epoch:
                # A validation pass that ran without the test hooks still gets Keras's evaluation curve.
                self.on_test_end(validation)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            with full_weights(self.model):  # under FSDP2 every rank gathers, rank 0 writes
                self._log_weights(epoch)

    # -- weights -------------------------------------------------------------------------
    def _log_weights(self, epoch: int) -> None:
        if not is_primary():
            return
        writer = self._writer("train")
        for layer in getattr(self.model, "layers", []):
            names: dict[int, str] | None = None
            for weight in layer.weights:
                path = getattr(weight, "path", None)
                if path is None:  # a parameter of a torch module inside the layer: the layer's path, then its name
                    prefix = layer.path or layer.name
                    if names is None:
                        named = [*layer.named_parameters(), *layer.named_buffers()]
                        names = {id(p): f"{prefix}/{name.replace('.', '/')}" for name, p in named}
                    path = names.get(id(weight), f"{prefix}/weight")
                tag = path.replace(":", "_")
                values = weight.detach().to("cpu", torch.float64).numpy()
                if values.size == 0:
                    continue
                writer.add_histogram(f"{tag}/histogram", values, global_step=epoch, bins=_HISTOGRAM_BUCKETS)
                if self.write_images:
                    images = _weight_images(values)
                    if images is not None:
                        writer.add_images(f"{tag}/image", images[:_MAX_IMAGES], global_step=epoch,
                                          dataformats="NHWC")
        writer.flush()

