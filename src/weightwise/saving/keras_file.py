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

from weightwise.saving.files import (
    atomic_write,
    check_path,
    check_target,
    open_regular,
    parse_json,
    read_member,
    stream_size,
)
from weightwise.saving.weights_h5 import check_module, read_weights, write_weights
from weightwise.serialization import (
    deserialize_keras_object,
    get_registered_object,
    serialize_keras_object,
)

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
# The Keras release whose .keras layout these files follow.
FORMAT_VERSION = "3.15.1"
# What a config value of the wrong shape can raise from deep inside the code that builds from it.
_INTERNAL_ERRORS = (AttributeError, KeyError, IndexError, RuntimeError, OverflowError, RecursionError)


def _version() -> str:
    from weightwise import __version__

    return __version__


def _model_config_json(model: Any) -> str:
    try:
        return json.dumps(serialize_keras_object(model))
    except TypeError as error:
        raise TypeError(f"Model {getattr(model, 'name', model)!r} cannot be saved as a config: {error}") from error


def save_model(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Save ``model`` (config, weights and optimizer state) as a Keras 3 ``.keras`` file.

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
    if not path.endswith(".keras"):
        raise ValueError(
            "Invalid `filepath` argument: expected a `.keras` extension (use `save_weights` with a "
            f"`.weights.h5` name for the weights alone). Received: filepath={path!r}"
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


def _check_model_config(config: Any, label: str, custom_objects: Mapping[str, Any] | None) -> None:
    """Refuse a config that is not a model's, before building anything from it."""
    if not isinstance(config, dict):
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r}: {CONFIG} must hold a model config (a JSON object). Received: {type(config).__name__}"
        )
    described = _described_class(config, custom_objects)
    model_class = _model_class()
    if described is not None and not (isinstance(described, type) and issubclass(described, model_class)):
        raise ValueError(
            f"{label!r} describes a {_config_name(config)}, not a model: `load_model` needs a file written by "
            "`model.save()`."
        )


def _config_name(config: Mapping[str, Any]) -> str:
    module = config.get("module")
    return f"{config.get('class_name')!r}" + (f" (module {module!r})" if isinstance(module, str) else "")


def _model_class() -> type:
    # models/ imports saving/ for Model.save, so Model is looked up when a file is loaded.
    from weightwise.models.model import Model

    return Model


def _described_class(config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None) -> Any:
    """The class ``config`` names when it can be told without building it: a registered or custom
    class, or a built-in of Keras's layer or other non-model modules. ``None`` if unsure."""
    names = [n for n in (config.get("registered_name"), config.get("class_name")) if isinstance(n, str)]
    for name in names:
        found = get_registered_object(name, custom_objects)
        if found is not None:
            return found
    module = config.get("module")
    class_name = config.get("class_name")
    if not isinstance(class_name, str) or not (module is None or isinstance(module, str)):
        return None
    if module in (None, "keras.layers", "weightwise.layers"):  # tf.keras 2 configs name no module
        from weightwise import layers

        return getattr(layers, class_name, None)
    package, _, family = module.partition(".")
    if package in ("keras", "weightwise") and family in _NON_MODEL_MODULES:
        return object  # a regularizer, constraint, optimizer, ...: not a model whatever its class
    return None


_NON_MODEL_MODULES = frozenset({
    "activations", "constraints", "initializers", "losses", "metrics", "optimizers", "regularizers",
})


def load_model(
    filepath: Any,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> Any:
    """Load a model from a ``.keras`` file written by weightwise or by Keras 3.

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
    for name, value in (("compile", compile), ("safe_mode", safe_mode)):
        if not isinstance(value, bool):
            raise TypeError(f"Invalid type for argument `{name}`: expected a bool. Received: {name}={value!r}")
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            f"Invalid type for argument `custom_objects`: expected a dict. Received: custom_objects={custom_objects!r}"
        )
    if not hasattr(filepath, "read"):
        path = check_path(filepath)
        if path.endswith(".weights.h5"):
            raise ValueError(
                f"{path!r} holds weights only. Build the model, then call `model.load_weights({path!r})`."
            )
        if path.endswith((".h5", ".hdf5")):
            raise ValueError(
                f"{path!r} is a legacy tf.keras HDF5 model file, which is not supported. Re-save it with Keras 3 "
                "as a `.keras` file (`model.save('model.keras')`)."
            )
    with _opened(filepath) as (stream, label):
        config_bytes, weights = _read_archive(stream, label, (CONFIG, WEIGHTS))
    config = parse_json(config_bytes, f"{label!r}: its {CONFIG}")
    _check_model_config(config, label, custom_objects)
    compile_config = config.pop("compile_config", None)
    try:
        model = deserialize_keras_object(config, custom_objects, safe_mode=safe_mode)
    except (ValueError, TypeError) as error:
        # The message names what in the config is wrong; this names the file it came from.
        raise (TypeError if isinstance(error, TypeError) else ValueError)(f"{label!r}: {error}") from error
    except _INTERNAL_ERRORS as error:
        # The config is data from the file: a value of the wrong shape deep inside it is the file's fault.
        raise ValueError(
            f"{label!r}: its {CONFIG} does not describe a model that can be built "
            f"({type(error).__name__}: {str(error)[:300]})."
        ) from error
    if not isinstance(model, _model_class()):
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r} describes a {type(model).__name__} ({_config_name(config)}), not a model."
        )
    if compile and compile_config:
        _compile_from(model, compile_config, label)
    for message in read_weights(model, weights, label, optimizer=_compiled_optimizer(model)):
        warnings.warn(message, stacklevel=2)
    return model


def _compiled_optimizer(model: Any) -> Any:
    # Optimizer state is restored only into a model whose compile() succeeded.
    return getattr(model, "optimizer", None) if getattr(model, "compiled", False) else None


def _compile_from(model: Any, compile_config: Any, label: str) -> None:
    try:
        model.compile_from_config(compile_config)
    except (ValueError, TypeError, *_INTERNAL_ERRORS) as error:
        # As Keras does: the model itself is intact, and the user can compile it by hand.
        warnings.warn(
            f"The training configuration saved in {label!r} could not be restored ({error}). The model is "
            "loaded uncompiled; call `model.compile(...)` before training it.",
            stacklevel=3,
        )


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
        messages = read_weights(model, source, label, optimizer=_compiled_optimizer(model))
    for message in messages:
        warnings.warn(message, stacklevel=2)
