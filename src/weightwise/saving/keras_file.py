"""Whole models in Keras 3's ``.keras`` format, and weights in its ``.weights.h5`` format.

A ``.keras`` file is a zip archive of three members:

- ``config.json``: the model's config (``serialize_keras_object(model)``), with
  Keras's class names and modules, each built layer's ``build_config`` and, for a
  compiled model, its ``compile_config``;
- ``metadata.json``: the format version and the date;
- ``model.weights.h5``: the weights, and the optimizer's state, in Keras's layout
  (:mod:`weightwise.saving.weights_h5`).

Keras 3 loads the files written here, and these functions load Keras's. Loading
never runs code from the file: configs name classes and functions, which are looked
up among the built-ins, registered objects and ``custom_objects``; nothing is
unpickled, and a Python lambda stored by Keras is refused unless ``safe_mode=False``.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from weightwise.callbacks._ranks import written_by_rank_0
from weightwise.saving.files import (
    atomic_write,
    check_path,
    check_target,
    open_regular,
    parse_json,
    read_member,
    stream_size,
)
from weightwise.saving.legacy_h5 import is_legacy_h5_path, load_model_h5, save_model_h5
from weightwise.saving.model_build import (
    build_model,
    check_load_arguments,
    compile_from,
    compiled_optimizer,
    keras_compile_config,
)
from weightwise.saving.weights_h5 import check_module, read_weights, write_weights
from weightwise.serialization import serialize_keras_object

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
# The Keras release whose .keras layout these files follow.
FORMAT_VERSION = "3.15.1"


def _version() -> str:
    from weightwise import __version__

    return __version__


def _model_config_json(model: Any) -> str:
    try:
        config = serialize_keras_object(model)
        if isinstance(config, dict) and isinstance(config.get("compile_config"), dict):
            config["compile_config"] = keras_compile_config(config["compile_config"])
        return json.dumps(config)
    except TypeError as error:
        raise TypeError(f"Model {getattr(model, 'name', model)!r} cannot be saved as a config: {error}") from error


@written_by_rank_0
def save_model(
    model: Any, filepath: str | os.PathLike[str], overwrite: bool = True, include_optimizer: bool = True
) -> None:
    """Save ``model`` (config, weights and optimizer state) as a Keras 3 ``.keras`` file, or, for a
    name ending in ``.h5`` or ``.hdf5``, in Keras 3's legacy HDF5 format
    (:func:`~weightwise.saving.legacy_h5.save_model_h5`; ``include_optimizer=False``
    leaves the training configuration and optimizer state out of it, and is ignored
    for ``.keras``, as in Keras).

    Everything is serialized before the file is touched, and the archive is written
    beside ``filepath`` then renamed into place, so a failure never damages an
    existing file. ``overwrite=False`` refuses to replace an existing file.
    Otherwise the save behaves as a plain write: through a symbolic link to its
    target, with the mode a new file gets from the umask (an existing file keeps
    its own), and a read-only file or an unusable folder raises its own
    ``PermissionError``, ``FileNotFoundError`` or ``NotADirectoryError`` first.

    >>> import os, tempfile
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(1, kernel_regularizer="l2")])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_model(model, path)
    >>> sorted(__import__("zipfile").ZipFile(path).namelist())
    ['config.json', 'metadata.json', 'model.weights.h5']
    """
    check_module(model)
    path = check_path(filepath)
    if is_legacy_h5_path(path):
        save_model_h5(model, path, overwrite=overwrite, include_optimizer=include_optimizer)
        return
    if not path.endswith(".keras"):
        raise ValueError(
            "Invalid `filepath` argument: expected a `.keras` extension (or `.h5` for Keras's legacy HDF5 format; "
            f"use `save_weights` with a `.weights.h5` name for the weights alone). Received: filepath={path!r}"
        )
    if not isinstance(include_optimizer, bool):
        raise TypeError(
            f"Invalid type for argument `include_optimizer`: expected a bool. Received: include_optimizer={include_optimizer!r}"
        )
    check_target(path, overwrite)
    config_json = _model_config_json(model)
    metadata = json.dumps({
        "keras_version": FORMAT_VERSION,
        "weightwise_version": _version(),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    })
    weights = io.BytesIO()
    write_weights(model, weights, optimizer=getattr(model, "optimizer", None))
    with atomic_write(path) as stream, zipfile.ZipFile(stream, "w") as archive:
        archive.writestr(METADATA, metadata)
        archive.writestr(CONFIG, config_json)
        archive.writestr(WEIGHTS, weights.getvalue())


# Every HDF5 file starts with this signature (at offset 0 when it has no user block, as ours and Keras's).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5_stream(stream: Any) -> bool:
    try:
        position = stream.tell()
        head = stream.read(len(_HDF5_SIGNATURE))
        stream.seek(position)
    except (AttributeError, OSError, ValueError):
        return False
    return head == _HDF5_SIGNATURE


def _open_archive(source: Any, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source, "r")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise ValueError(
            f"{label!r} is not a valid .keras file (a zip archive with config.json and model.weights.h5); it is "
            f"truncated, corrupted or of another format: {error}"
        ) from error


@contextmanager
def _opened(filepath: Any) -> Iterator[tuple[Any, str]]:
    """A binary stream of ``filepath`` (a path, opened only if it is a regular file, or a stream) and its label."""
    if hasattr(filepath, "read"):
        yield filepath, str(getattr(filepath, "name", "<stream>"))
        return
    with open_regular(filepath) as stream:
        yield stream, os.fspath(filepath)


def _read_archive(stream: Any, label: str, members: tuple[str, ...]) -> list[bytes]:
    size = stream_size(stream)
    with _open_archive(stream, label) as archive:
        return [read_member(archive, name, label, size) for name in members]


def load_model(
    filepath: Any,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> Any:
    """Load a model from a ``.keras`` file written by weightwise or by Keras 3 (or, for a name
    ending in ``.h5``/``.hdf5`` or a stream of HDF5 data, from Keras 3's legacy HDF5 format:
    :func:`~weightwise.saving.legacy_h5.load_model_h5`).

    Custom layers, regularizers, constraints and functions are found by their
    registered name (``register_keras_serializable``) or in ``custom_objects``;
    anything else fails with an error naming it. With ``compile=True`` a saved
    training configuration is restored, optimizer state included, so training
    resumes where it stopped. Loading never unpickles anything. A Python lambda that
    Keras stored as bytecode is refused unless ``safe_mode=False`` (or
    ``weightwise.config.enable_unsafe_deserialization()``) says the file is trusted:
    then its code is loaded, as Keras does.

    Loading reads only what the file holds: ``filepath`` must be a regular file (a
    FIFO or device is refused, unopened), members are read up to the sizes the
    archive can really hold, ``config.json`` must describe a model and be nested no
    deeper than a config can be, and the weights are checked as
    :func:`load_weights` checks them; each problem raises a ``ValueError`` naming it.

    >>> import os, tempfile, torch
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_constraint="non_neg")])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> model.save(path)
    >>> loaded = load_model(path)
    >>> loaded.layers[0].kernel_constraint, torch.equal(loaded.layers[0].kernel, model.layers[0].kernel)
    (NonNeg(), True)
    """
    check_load_arguments(custom_objects, compile, safe_mode)
    if not hasattr(filepath, "read"):
        path = check_path(filepath)
        if path.endswith(".weights.h5"):
            raise ValueError(
                f"{path!r} holds weights only. Build the model, then call `model.load_weights({path!r})`."
            )
        if is_legacy_h5_path(path):
            return load_model_h5(path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    elif _is_hdf5_stream(filepath):
        return load_model_h5(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    with _opened(filepath) as (stream, label):
        config_bytes, weights = _read_archive(stream, label, (CONFIG, WEIGHTS))
    config = parse_json(config_bytes, f"{label!r}: its {CONFIG}")
    compile_config = config.pop("compile_config", None) if isinstance(config, dict) else None
    model = build_model(config, label, CONFIG, custom_objects, safe_mode)
    if compile and compile_config:
        compile_from(model, compile_config, label)
    for message in read_weights(model, weights, label, optimizer=compiled_optimizer(model)):
        warnings.warn(message, stacklevel=2)
    return model


@written_by_rank_0
def save_weights(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Write ``model``'s weights (and optimizer state) to a Keras 3 ``.weights.h5`` file, atomically.

    The file behaves as :func:`save_model`'s does.

    >>> import os, tempfile
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_weights(model, path)
    >>> os.path.getsize(path) > 0
    True
    """
    check_module(model)
    path = check_path(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(
            f"The filename must end in `.weights.h5` for Keras's weights format. Received: filepath={path!r}"
        )
    check_target(path, overwrite)
    buffer = io.BytesIO()
    write_weights(model, buffer, optimizer=getattr(model, "optimizer", None))
    with atomic_write(path) as stream:
        stream.write(buffer.getvalue())


def load_weights(model: Any, filepath: Any) -> None:
    """Load weights from a ``.weights.h5`` or ``.keras`` file (ours or Keras's) into a built ``model``.

    All or nothing: every dataset is checked (storage inside the file, numeric
    dtype, shape) before any data is read, and every layer's weights against the
    file before anything changes; see :func:`~weightwise.saving.weights_h5.read_weights`.
    The optimizer state is restored too when the model is compiled, together with
    the weights. ``filepath`` must be a regular file (or a binary stream).

    >>> import os, tempfile, torch
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_weights(model, path)
    >>> twin = Sequential([layers.Input(shape=(3,)), layers.Dense(2)])
    >>> load_weights(twin, path)
    >>> torch.equal(twin.layers[0].kernel, model.layers[0].kernel)
    True
    """
    check_module(model)
    with _opened(filepath) as (stream, label):
        if label.endswith(".keras"):
            (source,) = _read_archive(stream, label, (WEIGHTS,))
        else:
            source = stream
        messages = read_weights(model, source, label, optimizer=compiled_optimizer(model))
    for message in messages:
        warnings.warn(message, stacklevel=2)
