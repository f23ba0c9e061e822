"""Whole models in Keras 3's legacy HDF5 format (``model.save("x.h5")``), both ways.

One HDF5 file holds:

- root attributes ``model_config`` (JSON: ``{"class_name": ..., "config": ...}``),
  ``training_config`` (JSON, for a compiled model: the compile arguments and the
  optimizer's ``optimizer_config``), ``keras_version`` and ``backend``;
- a group ``model_weights`` with the attribute ``layer_names`` and, per layer, a group
  of that name whose attribute ``weight_names`` lists its weights, trainable first,
  each a dataset at that (slash-separated) path; the model's own weights are under
  ``top_level_model_weights``;
- for a compiled model whose optimizer is built, ``optimizer_weights``: the optimizer's
  variables in Keras's order, named by ``weight_names``.

Keras 3 loads the files written here, and :func:`load_model_h5` loads Keras's. Weights
are matched to layers in order, as Keras matches them: the i-th layer that has
weights takes the i-th saved layer that has some.

Loading never unpickles anything, and a Python lambda in the config is refused unless
``safe_mode=False``. Every dataset is checked from its metadata (storage inside the
file, numbers, shape) before anything is read, and every weight before any is set.
Saving writes the whole file in memory, then puts it in place atomically.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from weightwise import layers
from weightwise.callbacks._ranks import written_by_rank_0
from weightwise.ops import convert_to_numpy
from weightwise.saving.files import (
    atomic_write,
    check_path,
    check_target,
    open_regular,
    parse_json,
)
from weightwise.saving.model_build import (
    INTERNAL_ERRORS,
    build_model,
    check_load_arguments,
    compile_from,
    compiled_optimizer,
    keras_compile_config,
)
from weightwise.saving.weights_h5 import (
    _checked_dataset,
    _lookup,
    _open,
    _read,
    cast_to,
    check_module,
    rule_state,
)
from weightwise.serialization import get_registered_name, serialize_keras_object

__all__ = ["is_legacy_h5_path", "load_model_h5", "save_model_h5"]

# The Keras release whose legacy HDF5 layout these files follow.
FORMAT_VERSION = "3.15.1"
# HDF5 keeps attributes in the object header, which holds at most this many bytes; longer lists
# are split over attributes ``name0``, ``name1``, ... as Keras splits them.
_HEADER_LIMIT = 64512
_TOP_LEVEL = "top_level_model_weights"
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def is_legacy_h5_path(filepath: Any) -> bool:
    """Whether ``filepath`` names a legacy HDF5 model file: ``.h5`` or ``.hdf5``, but not ``.weights.h5``.

    >>> is_legacy_h5_path("model.h5"), is_legacy_h5_path("model.weights.h5"), is_legacy_h5_path("model.keras")
    (True, False, False)
    """
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    path = os.fspath(filepath)
    return isinstance(path, str) and path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5")


# -- writing -----------------------------------------------------------------------------
def _legacy_weights(layer: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A layer's weights in the order Keras's legacy format keeps (trainable, then non-trainable),
    each with a name unique within the layer."""
    names = {id(p): n for n, p in layer.named_parameters(remove_duplicate=True)}
    if hasattr(layer, "trainable_weights") and hasattr(layer, "non_trainable_weights"):
        tensors = list(layer.trainable_weights) + list(layer.non_trainable_weights)
        # Then what rules keep with the weights (an L2SP reference), as in .keras files; none for most layers.
        state = [t for sub in layer.modules() if isinstance(sub, layers.Layer) for _, t, _ in rule_state(sub)]
        tensors += state
        names.update({id(t): n for n, t in layer.named_buffers() if any(t is s for s in state)})
    else:  # a plain torch module inside a model: its state, in order
        tensors = [t for t in layer.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
        names.update({id(t): n for n, t in layer.state_dict(keep_vars=True).items()})
    return [(names.get(id(t), f"weight_{i}").replace(".", "/"), t) for i, t in enumerate(tensors)]


def _own_weights(model: torch.nn.Module, layers: list[torch.nn.Module]) -> list[tuple[str, torch.Tensor]]:
    in_layers = {id(t) for layer in layers for _, t in _legacy_weights(layer)}
    return [(n, t) for n, t in _legacy_weights(model) if id(t) not in in_layers]


def _set_attribute(group: h5py.Group, name: str, values: list[str]) -> None:
    encoded = [value.encode("utf8") for value in values]
    too_long = [value for value in values if len(value.encode("utf8")) > _HEADER_LIMIT]
    if too_long:
        raise ValueError(f"Cannot save the names {too_long[:3]} in an HDF5 attribute: each is over {_HEADER_LIMIT} bytes.")
    array = np.asarray(encoded) if encoded else np.asarray([])
    chunks = 1
    while any(part.nbytes > _HEADER_LIMIT for part in np.array_split(array, chunks)):
        chunks += 1
    if chunks == 1:
        # A list of bytes, as Keras stores it: h5py keeps it as variable-length strings.
        group.attrs[name] = encoded
    else:
        for index, part in enumerate(np.array_split(array, chunks)):
            group.attrs[f"{name}{index}"] = part


def _weight_names(prefix: str, weights: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Each weight's Keras variable path where it has one (``weight.path``), else ``prefix/name``;
    made unique within the layer, since each names a dataset."""
    names = []
    for name, tensor in weights:
        path = getattr(tensor, "path", None)
        usable = isinstance(path, str) and all(part not in ("", ".", "..") for part in path.split("/"))
        names.append(path if usable and path not in names else f"{prefix}/{name}")
    return names


def _write_group(group: h5py.Group, prefix: str, weights: list[tuple[str, torch.Tensor]]) -> None:
    names = _weight_names(prefix, weights)
    _set_attribute(group, "weight_names", names)
    for name, (_, tensor) in zip(names, weights):
        group.create_dataset(name, data=convert_to_numpy(tensor))


# Keras 3.15's legacy loader cannot read back these short names (it looks for `keras.metrics.mse`,
# which is no class), so its files store the full names, which both sides read.
_FULL_NAMES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
}


def _full_names(spec: Any) -> Any:
    if isinstance(spec, str):
        return _FULL_NAMES.get(spec, spec)
    if isinstance(spec, list):
        return [_full_names(item) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _full_names(value) for key, value in spec.items()}
    return spec


def _training_config(model: Any) -> dict[str, Any] | None:
    get_compile_config = getattr(model, "get_compile_config", None)
    config = keras_compile_config(get_compile_config() if callable(get_compile_config) else None)
    if not config:
        return None
    training = {key: _full_names(value) if key in ("loss", "metrics", "weighted_metrics") else value
                for key, value in config.items() if key != "optimizer"}
    optimizer = model.optimizer
    training["optimizer_config"] = {
        "class_name": get_registered_name(type(optimizer)),
        "config": serialize_keras_object(optimizer.get_config()),
    }
    return training


def _checked_names(layers: list[torch.nn.Module]) -> list[str]:
    names = [str(getattr(layer, "name", type(layer).__name__)) for layer in layers]
    for name in names:
        if not name or "/" in name or name in (".", _TOP_LEVEL):
            raise ValueError(f"Cannot save layer {name!r} in an HDF5 file: a layer name there must be non-empty, "
                             f"without '/', and not {_TOP_LEVEL!r}.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Cannot save the model in an HDF5 file: its layer names must be unique, and {duplicates} "
                         "are not. Give the layers distinct `name=` arguments.")
    return names


def _h5_bytes(model: Any, include_optimizer: bool) -> bytes:
    """The whole file, in memory: everything is serialized before the target is touched."""
    layers = list(getattr(model, "layers", []))
    names = _checked_names(layers)
    model_config = serialize_keras_object(model)
    attributes = {
        "keras_version": FORMAT_VERSION,
        "backend": "torch",
        "model_config": json.dumps({"class_name": model_config["class_name"], "config": model_config["config"]}),
    }
    training = _training_config(model) if include_optimizer else None
    if training is not None:
        attributes["training_config"] = json.dumps(training)
    model_name = str(getattr(model, "name", "model"))
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for key, value in attributes.items():
            handle.attrs[key] = value
        group = handle.create_group("model_weights")
        _set_attribute(group, "layer_names", names)
        group.attrs["backend"] = "torch"
        group.attrs["keras_version"] = FORMAT_VERSION
        # Sorted by name, as Keras writes them, so that no group name is a prefix of one written before it.
        for name, layer in sorted(zip(names, layers), key=lambda item: item[0]):
            _write_group(group.create_group(name), f"{model_name}/{name}", _legacy_weights(layer))
        _write_group(group.create_group(_TOP_LEVEL), model_name, _own_weights(model, layers))
        optimizer = compiled_optimizer(model) if include_optimizer else None
        if optimizer is not None and getattr(optimizer, "built", False) and hasattr(optimizer, "save_own_variables"):
            state: dict[str, Any] = {}
            optimizer.save_own_variables(state)
            if state:
                optimizer_group = handle.create_group("optimizer_weights")
                keys = sorted(state, key=int)
                paths = [f"{optimizer.name}/variable_{key}" for key in keys]
                _set_attribute(optimizer_group, "weight_names", paths)
                for path, key in zip(paths, keys):
                    optimizer_group.create_dataset(path, data=np.asarray(state[key]))
    return buffer.getvalue()


@written_by_rank_0
def save_model_h5(
    model: Any, filepath: str | os.PathLike[str], overwrite: bool = True, include_optimizer: bool = True
) -> None:
    """Save ``model`` (config, weights, training configuration and optimizer state) as a Keras 3 legacy ``.h5`` file.

    Keras 3 loads the file with ``keras.saving.load_model``. The file is written in
    memory first, then put in place atomically: a failed save leaves an existing file
    as it was. ``overwrite=False`` refuses to replace one. ``include_optimizer=False``
    leaves out the training configuration and the optimizer state.

    >>> import os, tempfile
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_regularizer="l2", name="out")],
    ...                    name="net")
    >>> path = os.path.join(tempfile.mkdtemp(), "model.h5")
    >>> save_model_h5(model, path)
    >>> import h5py
    >>> with h5py.File(path) as handle:
    ...     list(handle["model_weights"].attrs["layer_names"]), list(handle["model_weights/out"].attrs["weight_names"])
    (['out'], ['net/out/kernel', 'net/out/bias'])
    """
    check_module(model)
    path = check_path(filepath)
    if not isinstance(include_optimizer, bool):
        raise TypeError(
            f"Invalid type for argument `include_optimizer`: expected a bool. Received: include_optimizer={include_optimizer!r}"
        )
    check_target(path, overwrite)
    try:
        data = _h5_bytes(model, include_optimizer)
    except TypeError as error:
        raise TypeError(f"Model {getattr(model, 'name', model)!r} cannot be saved as an HDF5 file: {error}") from error
    with atomic_write(path) as stream:
        stream.write(data)


# -- reading -----------------------------------------------------------------------------
def _text(value: Any, label: str, what: str) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{label!r}: its {what} is not UTF-8 text.") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"{label!r}: its {what} must be text, but holds a {type(value).__name__}.")


def _names(group: h5py.Group, name: str, label: str) -> list[str]:
    """The list attribute ``name`` of ``group`` (or its chunks ``name0``, ``name1``, ...)."""
    attrs = group.attrs
    if name in attrs:
        parts = [attrs[name]]
    else:
        parts = []
        while f"{name}{len(parts)}" in attrs:
            parts.append(attrs[f"{name}{len(parts)}"])
    values: list[str] = []
    for part in parts:
        items = np.asarray(part).reshape(-1)
        if items.size and items.dtype.kind not in "OSU":
            raise ValueError(f"{label!r}: the attribute {name!r} of {group.name!r} must list names, "
                             f"but holds {items.dtype} values.")
        values.extend(_text(item, label, f"attribute {name!r} of {group.name!r}") for item in items)
    return values


def _group(handle: h5py.File, path: str, label: str) -> h5py.Group:
    group = _lookup(handle, path, label)
    if not isinstance(group, h5py.Group):
        found = "missing" if group is None else "not a group"
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r} is not a complete Keras HDF5 model file: {path!r} is {found}.")
    return group


def _plan_group(
    handle: h5py.File, path: str, weights: list[tuple[str, torch.Tensor]], label: str, who: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each weight and its new value from the group at ``path``; every dataset checked before any is read."""
    group = _group(handle, path, label)
    names = _names(group, "weight_names", label)
    if len(names) != len(weights):
        raise ValueError(f"{label!r}: weight count mismatch for {who}: the layer has {len(weights)} weight(s), "
                         f"the file {len(names)} ({names[:10]}). Nothing was loaded.")
    datasets = [(_checked_dataset(handle, f"{path}/{name}", label, "biuf"), name) for name in names]
    for (weight_name, tensor), (dataset, name) in zip(weights, datasets):
        if tuple(dataset.shape) != tuple(tensor.shape):
            raise ValueError(f"{label!r}: shape mismatch for {who}, weight {weight_name!r}: the layer expects "
                             f"{tuple(tensor.shape)}, the file has {tuple(dataset.shape)} ({name!r}). Nothing was loaded.")
    plan = []
    for (_, tensor), (dataset, name) in zip(weights, datasets):
        value = cast_to(_read(dataset, f"{path}/{name}", label), tensor)
        if isinstance(value, str):
            raise ValueError(f"{label!r}: {name!r} for {who}: {value}. Nothing was loaded.")  # noqa: TRY004
        plan.append((tensor, value))
    return plan


def _weights_plan(model: Any, handle: h5py.File, label: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What a load writes into ``model``'s weights, all checked and read before any is set."""
    root = _group(handle, "model_weights", label)
    layers = [layer for layer in getattr(model, "layers", []) if _legacy_weights(layer)]
    saved = [name for name in _names(root, "layer_names", label)
             if _names(_group(handle, f"model_weights/{name}", label), "weight_names", label)]
    if len(saved) != len(layers):
        raise ValueError(
            f"{label!r}: layer count mismatch: the model has {len(layers)} layers with weights, the file "
            f"{len(saved)} ({saved[:20]}). Nothing was loaded."
        )
    plan = []
    for index, (name, layer) in enumerate(zip(saved, layers)):
        who = f"layer #{index} ({getattr(layer, 'name', type(layer).__name__)!r} in the model, {name!r} in the file)"
        plan += _plan_group(handle, f"model_weights/{name}", _legacy_weights(layer), label, who)
    own = _own_weights(model, list(getattr(model, "layers", [])))
    if _lookup(handle, f"model_weights/{_TOP_LEVEL}", label) is not None or own:
        plan += _plan_group(handle, f"model_weights/{_TOP_LEVEL}", own, label, "the model's own weights")
    return plan


def _optimizer_values(handle: h5py.File, label: str, limit: int) -> list[np.ndarray] | None:
    group = _lookup(handle, "optimizer_weights", label)
    if not isinstance(group, h5py.Group):
        return None
    names = _names(group, "weight_names", label)
    datasets = [(_checked_dataset(handle, f"optimizer_weights/{n}", label, "biuf", limit), n) for n in names]
    return [_read(dataset, f"optimizer_weights/{name}", label) for dataset, name in datasets]


def _restore_optimizer(model: Any, values: list[np.ndarray], label: str) -> None:
    optimizer = compiled_optimizer(model)
    if optimizer is None or not hasattr(optimizer, "load_own_variables"):
        return
    try:
        if not optimizer.built:
            optimizer.build(model.trainable_weights)
        optimizer.load_own_variables({str(index): value for index, value in enumerate(values)})
    except (ValueError, TypeError) as error:
        # As Keras does: the model loads, with a freshly initialized optimizer.
        warnings.warn(f"The optimizer state in {label!r} was not restored ({error}); the optimizer starts afresh.",
                      stacklevel=3)


def _model_config(handle: h5py.File, label: str) -> Any:
    if "model_config" not in handle.attrs:
        raise ValueError(f"No model config found in the file at {label!r}: it is not a Keras HDF5 model file "
                         "(a weights-only file loads with `model.load_weights`).")
    config = parse_json(_text(handle.attrs["model_config"], label, "model_config"), f"{label!r}: its model_config")
    return _with_modules(config)


def _with_modules(config: Any) -> Any:
    """``config`` with the Keras module filled in where Keras's legacy form names a built-in model or
    layer by class name alone; custom classes are left to the registry and ``custom_objects``."""
    if not isinstance(config, dict) or config.get("module") is not None or not isinstance(config.get("class_name"), str):
        return config
    class_name = config["class_name"]
    if class_name in _MODEL_CLASSES:
        inner = config.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
            inner = {**inner, "layers": [_with_modules(layer) for layer in inner["layers"]]}
        return {**config, "module": "keras.models", "config": inner}
    if isinstance(getattr(layers, class_name, None), type):
        return {**config, "module": "keras.layers"}
    return config


def _training_compile_config(handle: h5py.File, label: str) -> dict[str, Any] | None:
    if "training_config" not in handle.attrs:
        return None
    training = parse_json(_text(handle.attrs["training_config"], label, "training_config"),
                          f"{label!r}: its training_config")
    if not isinstance(training, dict):
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r}: its training_config must be a JSON object. Received: {type(training).__name__}")
    config = {key: value for key, value in training.items() if key != "optimizer_config"}
    if "optimizer_config" in training:
        config["optimizer"] = training["optimizer_config"]
    return config


def load_model_h5(
    filepath: Any,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> Any:
    """Load a model from a Keras 3 legacy ``.h5`` file, written by weightwise or by Keras.

    The model is built from ``model_config`` (custom objects found by registered
    name or in ``custom_objects``), its weights set from ``model_weights`` (layers
    matched in order, as Keras does), and, with ``compile=True``, it is compiled
    from ``training_config`` and its optimizer state restored. A training
    configuration that cannot be restored leaves the model uncompiled, with a
    warning. A lambda in the config loads only with ``safe_mode=False``.

    >>> import os, tempfile, torch
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(3,)), layers.Dense(2, kernel_constraint="non_neg")])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.h5")
    >>> save_model_h5(model, path)
    >>> loaded = load_model_h5(path)
    >>> loaded.layers[0].kernel_constraint, torch.equal(loaded.layers[0].kernel, model.layers[0].kernel)
    (NonNeg(), True)
    """
    check_load_arguments(custom_objects, compile, safe_mode)
    label = str(getattr(filepath, "name", "<stream>")) if hasattr(filepath, "read") else check_path(filepath)
    stream = filepath if hasattr(filepath, "read") else open_regular(filepath)
    try:
        with _open(stream, label) as handle:
            try:
                return _load(handle, label, custom_objects, compile, safe_mode)
            except (OSError, KeyError, RuntimeError, OverflowError) as error:
                raise ValueError(f"{label!r} is damaged: {error}") from error
    finally:
        if stream is not filepath:
            stream.close()


def _load(handle: h5py.File, label: str, custom_objects: Mapping[str, Any] | None, compile: bool, safe_mode: bool) -> Any:
    config = _model_config(handle, label)
    compile_config = _training_compile_config(handle, label) if compile else None
    model = build_model(config, label, "model_config", custom_objects, safe_mode)
    try:
        plan = _weights_plan(model, handle, label)
    except INTERNAL_ERRORS as error:
        raise ValueError(f"{label!r}: its weights do not fit the model ({type(error).__name__}: {error}).") from error
    with torch.no_grad():
        for tensor, value in plan:
            tensor.copy_(value)
    if compile_config is not None:
        compile_from(model, compile_config, label)
        limit = max((t.numel() for t, _ in plan), default=1)
        values = _optimizer_values(handle, label, max(limit, 1))
        if values is not None:
            _restore_optimizer(model, values, label)
    return model
