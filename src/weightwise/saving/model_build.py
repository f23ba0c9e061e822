"""Building a model from the config a model file holds, and compiling it from the saved training
configuration: shared by the ``.keras`` and the legacy ``.h5`` formats.

A config is data from a file: before anything is built, it must describe a model (not a
layer or a regularizer), and whatever goes wrong while building it is reported as the
file's fault, naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from weightwise.serialization import deserialize_keras_object, get_registered_object

__all__ = ["INTERNAL_ERRORS", "build_model", "check_load_arguments", "compile_from", "compiled_optimizer",
           "keras_compile_config"]

# What a config value of the wrong shape can raise from deep inside the code that builds from it.
INTERNAL_ERRORS = (AttributeError, KeyError, IndexError, RuntimeError, OverflowError, RecursionError)


def check_load_arguments(custom_objects: Any, compile: Any, safe_mode: Any) -> None:
    """A ``TypeError`` naming the argument, for a loader's ``custom_objects``, ``compile`` or ``safe_mode`` of the wrong type.

    >>> check_load_arguments(None, True, "yes")
    Traceback (most recent call last):
    ...
    TypeError: Invalid type for argument `safe_mode`: expected a bool. Received: safe_mode='yes'
    """
    for name, value in (("compile", compile), ("safe_mode", safe_mode)):
        if not isinstance(value, bool):
            raise TypeError(f"Invalid type for argument `{name}`: expected a bool. Received: {name}={value!r}")
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            f"Invalid type for argument `custom_objects`: expected a dict. Received: custom_objects={custom_objects!r}"
        )


def build_model(
    config: Any, label: str, what: str, custom_objects: Mapping[str, Any] | None, safe_mode: bool
) -> Any:
    """The model ``config`` (found in ``what`` of the file ``label``) describes, or a ``ValueError``
    (``TypeError``) naming the file and what in the config is wrong.

    >>> build_model({"module": "keras.layers", "class_name": "Dense", "config": {"units": 1}},
    ...             "model.keras", "config.json", None, True)
    Traceback (most recent call last):
    ...
    ValueError: 'model.keras' describes a 'Dense' (module 'keras.layers'), not a model: `load_model` needs a file written by `model.save()`.
    """
    _check_model_config(config, label, what, custom_objects)
    try:
        model = deserialize_keras_object(config, custom_objects, safe_mode=safe_mode)
    except (ValueError, TypeError) as error:
        # The message names what in the config is wrong; this names the file it came from.
        raise (TypeError if isinstance(error, TypeError) else ValueError)(f"{label!r}: {error}") from error
    except INTERNAL_ERRORS as error:
        # The config is data from the file: a value of the wrong shape deep inside it is the file's fault.
        raise ValueError(
            f"{label!r}: its {what} does not describe a model that can be built "
            f"({type(error).__name__}: {str(error)[:300]})."
        ) from error
    if not isinstance(model, _model_class()):
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r} describes a {type(model).__name__} ({_config_name(config)}), not a model."
        )
    return model


def _check_model_config(config: Any, label: str, what: str, custom_objects: Mapping[str, Any] | None) -> None:
    """Refuse a config that is not a model's, before building anything from it."""
    if not isinstance(config, dict):
        raise ValueError(  # noqa: TRY004 - the file's content is at fault, not an argument's type
            f"{label!r}: {what} must hold a model config (a JSON object). Received: {type(config).__name__}"
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


def compiled_optimizer(model: Any) -> Any:
    """``model``'s optimizer if ``compile()`` succeeded, else ``None``: only then is its state restored.

    >>> compiled_optimizer(object()) is None
    True
    """
    return getattr(model, "optimizer", None) if getattr(model, "compiled", False) else None


def compile_from(model: Any, compile_config: Any, label: str) -> None:
    """Compile ``model`` from the training configuration saved in ``label``; if that fails, warn
    and leave the model uncompiled, as Keras does.

    >>> import warnings
    >>> from weightwise import layers, Sequential
    >>> model = Sequential([layers.Input(shape=(2,)), layers.Dense(1)])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     compile_from(model, {"optimizer": "no-such-optimizer"}, "model.keras")
    >>> model.compiled, "could not be restored" in str(caught[0].message)
    (False, True)
    """
    try:
        model.compile_from_config(compile_config)
    except (ValueError, TypeError, *INTERNAL_ERRORS) as error:
        # As Keras does: the model itself is intact, and the user can compile it by hand.
        warnings.warn(
            f"The training configuration saved in {label!r} could not be restored ({error}). The model is "
            "loaded uncompiled; call `model.compile(...)` before training it.",
            stacklevel=3,
        )


# compile() arguments of weightwise's own that Keras's compile does not take: how a run is
# spread over processes belongs to the run, not to the file, which stays Keras's.
_RUN_ONLY = ("distribute",)


def keras_compile_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A compile config as saved to a file: what Keras's ``compile`` accepts (``distribute`` left out).

    >>> keras_compile_config({"loss": "mse", "distribute": "fsdp"})
    {'loss': 'mse'}
    """
    if config is None:
        return None
    return {key: value for key, value in config.items() if key not in _RUN_ONLY}
