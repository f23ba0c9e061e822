"""One registry and one get/serialize/deserialize mechanism for every object family.

Each family (regularizers, constraints, and later initializers, layers, ...) is an
:class:`ObjectFamily`: its built-in catalogue plus the Keras module name it
serializes under. User objects join through :func:`register_keras_serializable`
or a :func:`custom_object_scope`, and are found by every family alike.

The serialized form is Keras 3's, so configs travel between Keras and weightwise
in both directions::

    {"module": "keras.regularizers", "class_name": "L2",
     "config": {"l2": 0.1}, "registered_name": None}

The tf.keras 2 form ``{"class_name": ..., "config": ...}`` is read too.

:func:`serialize_keras_object` and :func:`deserialize_keras_object` are Keras's
``serialization_lib`` functions: plain values, Keras's special forms (bytes, slices,
NumPy arrays, tensors), functions in Keras's one form, shared objects inside an
:class:`ObjectSharingScope`, and safe mode: a Python lambda, which Keras stores as
bytecode, loads only when a call passes ``safe_mode=False``, a :class:`SafeModeScope`
allows it, or :func:`enable_unsafe_deserialization` was called. Nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import inspect
import marshal
import re
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from weightwise import config as _settings
from weightwise.backend import standardize_dtype

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ObjectFamily",
    "ObjectSharingScope",
    "SafeModeScope",
    "custom_object_scope",
    "deserialize_keras_object",
    "enable_unsafe_deserialization",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
    "in_safe_mode",
    "register_keras_serializable",
    "serialize_keras_object",
    "to_snake_case",
]

T = TypeVar("T")

# "Package>Name" -> object, and object -> "Package>Name".
_REGISTERED: dict[str, Any] = {}
_REGISTERED_NAMES: dict[Any, str] = {}
# Built-in classes of every family, so a generic serialize knows their Keras module
# (and, for the few Keras writes that way, a registered name).
_BUILTIN_MODULE: dict[type, str] = {}
_BUILTIN_REGISTERED_NAME: dict[type, str] = {}
_FAMILIES: dict[str, ObjectFamily] = {}
# The root class of each family that has one (Regularizer, Constraint, Layer, ...), so that an
# object of one family is never taken for another's.
_ROOTS: dict[type, ObjectFamily] = {}
_SCOPES = threading.local()
# How deeply a config may nest dicts and lists. Real models stay far below it; a deeper (or
# self-referencing) config would otherwise end in a RecursionError somewhere inside deserialization.
MAX_CONFIG_DEPTH = 100

_HOW_TO_REGISTER = (
    "If it is a custom object, decorate its class or function with "
    "`@weightwise.saving.register_keras_serializable({package})` before loading, or pass it in "
    "`custom_objects={{'{name}': {name}}}`."
)


def to_snake_case(name: str) -> str:
    """Convert a CamelCase class name to the snake_case id Keras derives from it.

    >>> to_snake_case("OrthogonalRegularizer")
    'orthogonal_regularizer'
    >>> to_snake_case("L1L2")
    'l1l2'
    """
    intermediate = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", intermediate).lower()


def register_keras_serializable(package: str = "Custom", name: str | None = None) -> Callable[[T], T]:
    """Register a class or function so configs can refer to it as ``"package>name"``.

    ``name`` defaults to the object's ``__name__``. A registered object is found by
    every family's ``get``/``deserialize``, by string or by config.

    >>> @register_keras_serializable(package="Docs")
    ... def tiny_penalty(x):
    ...     return 1e-6 * x.abs().sum()
    >>> get_registered_name(tiny_penalty)
    'Docs>tiny_penalty'
    >>> get_registered_object("Docs>tiny_penalty") is tiny_penalty
    True
    """
    if not isinstance(package, str) or not package:
        raise ValueError(f"Invalid value for argument `package`: expected a non-empty str. Received: package={package!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"Invalid value for argument `name`: expected a non-empty str or None. Received: name={name!r}")

    def decorator(obj: T) -> T:
        if not callable(obj):
            raise TypeError(f"Only classes and functions can be registered. Received: {obj!r}")
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError(
                f"Cannot register class {obj.__name__!r}: it has no `get_config()` method, "
                "so it could not be serialized."
            )
        registered = f"{package}>{name or obj.__name__}"
        _REGISTERED[registered] = obj
        _REGISTERED_NAMES[obj] = registered
        return obj

    return decorator


def get_registered_name(obj: Any) -> str:
    """Return the name ``obj`` was registered under, or its ``__name__`` if unregistered.

    >>> class Unregistered:
    ...     pass
    >>> get_registered_name(Unregistered)
    'Unregistered'
    >>> get_registered_name(5)
    Traceback (most recent call last):
    ...
    TypeError: Invalid value for argument `obj`: expected a class or a function (an object with a `__name__`). Received: obj=5
    """
    try:
        registered = _REGISTERED_NAMES.get(obj)
    except TypeError:  # unhashable, so never registered
        registered = None
    if registered is not None:
        return registered
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        shown = repr(obj)
        raise TypeError(
            "Invalid value for argument `obj`: expected a class or a function (an object with a `__name__`). "
            f"Received: obj={shown if len(shown) <= 120 else shown[:117] + '...'}"
        )
    return name


def get_custom_objects() -> dict[str, Any]:
    """Return the live global registry of ``"package>name"`` -> object.

    >>> @register_keras_serializable(package="Docs")
    ... def other_penalty(x):
    ...     return x.sum()
    >>> get_custom_objects()["Docs>other_penalty"] is other_penalty
    True
    """
    return _REGISTERED


def _scopes() -> list[Mapping[str, Any]]:
    if not hasattr(_SCOPES, "stack"):
        _SCOPES.stack = []
    return _SCOPES.stack


@contextmanager
def custom_object_scope(*custom_objects: Mapping[str, Any] | None) -> Iterator[None]:
    """Make custom objects findable by name inside a ``with`` block.

    >>> def my_penalty(x):
    ...     return 0.5 * x.sum()
    >>> with custom_object_scope({"my_penalty": my_penalty}):
    ...     get_registered_object("my_penalty") is my_penalty
    True
    >>> get_registered_object("my_penalty") is None
    True
    """
    merged: dict[str, Any] = {}
    for objects in custom_objects:
        if objects is None:
            continue
        if not isinstance(objects, Mapping):
            raise TypeError(
                f"Invalid value for argument `custom_objects`: expected a dict. Received: custom_objects={_describe(objects)}"
            )
        merged.update(objects)
    stack = _scopes()
    stack.append(merged)
    try:
        yield
    finally:
        stack.pop()


def get_registered_object(
    name: str,
    custom_objects: Mapping[str, Any] | None = None,
    module_objects: Mapping[str, Any] | None = None,
) -> Any:
    """Find an object by name: ``custom_objects``, then open scopes, the registry, ``module_objects``.

    Returns ``None`` when nothing matches.

    >>> get_registered_object("nothing_here") is None
    True
    """
    if not isinstance(name, str):
        raise TypeError(f"Invalid value for argument `name`: expected a str. Received: name={_describe(name)}")
    _check_custom_objects(custom_objects)
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    for scope in reversed(_scopes()):
        if name in scope:
            return scope[name]
    if name in _REGISTERED:
        return _REGISTERED[name]
    if module_objects and name in module_objects:
        return module_objects[name]
    return None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _check_custom_objects(custom_objects: Any) -> None:
    if custom_objects is not None and not isinstance(custom_objects, Mapping):
        raise TypeError(
            "Invalid value for argument `custom_objects`: expected a dict mapping names to objects, or None. "
            f"Received: custom_objects={_describe(custom_objects)}"
        )


def config_depth_exceeds(config: Any, limit: int = MAX_CONFIG_DEPTH) -> bool:
    """Whether ``config`` nests dicts, lists and tuples more than ``limit`` levels deep.

    Walked without recursion, so a config of any depth (or one that contains itself)
    gets an answer rather than a ``RecursionError``.

    >>> config_depth_exceeds({"a": [{"b": 1}]}, limit=3)
    False
    >>> nested = {}
    >>> nested["self"] = nested
    >>> config_depth_exceeds(nested)
    True
    """
    stack = [(config, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class ObjectFamily:
    """The catalogue of one object family and its ``get``/``serialize``/``deserialize``.

    ``kind`` names the family in error messages; ``module`` is the Keras module its
    built-ins serialize under. Built-ins are found by class name and by snake_case;
    ``aliases`` add string ids that build a particular instance (``'l1_l2'``).

    When the first built-in is a class that every built-in class derives from (``Regularizer``,
    ``Constraint``, ``Layer``, ...), it is the family's *root*, and the family accepts only its
    own kind: a class, given or found by name, must derive from the root, and an object of
    another family's root is refused. Functions are accepted as they are.

    >>> class Half:
    ...     def __call__(self, x):
    ...         return x / 2
    ...     def get_config(self):
    ...         return {}
    >>> family = ObjectFamily("halver", "docs.halvers", [Half])
    >>> family.serialize(Half())
    {'module': 'docs.halvers', 'class_name': 'Half', 'config': {}, 'registered_name': None}
    >>> type(family.get("half")).__name__
    'Half'
    """

    def __init__(
        self,
        kind: str,
        module: str,
        builtins: Sequence[Callable[..., Any]],
        aliases: Mapping[str, Callable[[], Any]] | None = None,
        extra_names: Mapping[str, Callable[..., Any]] | None = None,
        forms: Mapping[type, tuple[str, str | None]] | None = None,
    ) -> None:
        self.kind = kind
        self.module = module
        self.builtins: dict[str, Callable[..., Any]] = {}
        for obj in builtins:
            self.builtins[obj.__name__] = obj
            self.builtins.setdefault(to_snake_case(obj.__name__), obj)
            _BUILTIN_MODULE[obj] = module
        # Further names of built-ins (Keras's 'zero', 'swish'), usable as ids and class names.
        self.builtins.update(extra_names or {})
        self.aliases: dict[str, Callable[[], Any]] = dict(aliases or {})
        self.members: list[ObjectFamily] = []
        first = builtins[0] if builtins else None
        self.root: type | None = None
        if inspect.isclass(first) and all(issubclass(obj, first) for obj in builtins if inspect.isclass(obj)):
            self.root = first
            _ROOTS.setdefault(first, self)
        # Configs name the Keras module; our own module name is accepted as a synonym.
        self.modules = {module, "weightwise." + module.split(".")[-1]} if module else set()
        # Classes Keras writes under another module (and registered name): ``Functional``
        # is ``keras.src.models.functional``, ``Sequential`` is plain ``keras``.
        for cls, (form_module, registered_name) in (forms or {}).items():
            _BUILTIN_MODULE[cls] = form_module
            if registered_name is not None:
                _BUILTIN_REGISTERED_NAME[cls] = registered_name
            self.modules.add(form_module)
        self.register_modules(self.modules)

    def accept_members(self, family: ObjectFamily) -> None:
        """Let configs of ``family`` deserialize through this family (every model is a layer)."""
        self.members.append(family)

    def register_modules(self, modules: Sequence[str] | set[str]) -> None:
        """Accept configs naming any of ``modules`` as this family's built-ins."""
        self.modules.update(modules)
        for name in modules:
            _FAMILIES[name] = self

    # -- serialize ---------------------------------------------------------------------
    def serialize(self, obj: Any) -> dict[str, Any] | None:
        """Return the Keras 3 config dict of ``obj`` (``None`` stays ``None``)."""
        return serialize_keras_object(obj)

    # -- kind --------------------------------------------------------------------------
    def _foreign_kind(self, obj: Any, named: bool) -> str | None:
        """What ``obj`` (a class or an object) is instead of this family's kind, or ``None`` if it fits.

        Only a family with a root checks: one without (activations, plain custom objects)
        accepts any callable, as Keras does. An object of another family's root never fits. A
        class given directly must derive from the root; one the user ``named`` (registered, or in
        ``custom_objects``) may also be a class of its own that derives from no family's root.
        """
        if self.root is None:
            return None
        cls = obj if inspect.isclass(obj) else type(obj)
        if issubclass(cls, self.root):
            return None
        for root, family in _ROOTS.items():
            if family is not self and issubclass(cls, root):
                return family.kind
        if inspect.isclass(obj) and not named:
            return f"a class; a class must derive from {self.root.__name__}"
        return None

    def _check_kind(self, obj: Any, identifier: Any, named: bool = True) -> Any:
        foreign = self._foreign_kind(obj, named)
        if foreign is not None:
            if foreign.startswith("a class"):
                reason = foreign[len("a class; "):]
            else:
                reason = f"it is {_article(foreign)} {foreign}, not {_article(self.kind)} {self.kind}"
            raise ValueError(f"Could not interpret {self.kind} identifier: {_describe(identifier)}: {reason}.")
        return obj

    # -- deserialize -------------------------------------------------------------------
    def deserialize(self, config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
        """Build an object of this family from a config dict or a string id."""
        _check_custom_objects(custom_objects)
        if config is None:
            return None
        if isinstance(config, str):
            return self._from_name(config, custom_objects)
        if not isinstance(config, Mapping):
            raise ValueError(
                f"Could not deserialize {self.kind}: expected a config dict or a string id. "
                f"Received: config={_describe(config)}"
            )
        # The depth is checked once, by the outermost call: nested objects deserialize through here too.
        if getattr(_SCOPES, "walking", False):
            return self._from_config(config, custom_objects)
        if config_depth_exceeds(config):
            raise ValueError(
                f"Could not deserialize {self.kind}: the config nests more than {MAX_CONFIG_DEPTH} levels of "
                f"dicts and lists (or contains itself). Received: config={_describe(config)}"
            )
        _SCOPES.walking = True
        try:
            return self._from_config(config, custom_objects)
        finally:
            _SCOPES.walking = False

    def _from_name(self, name: str, custom_objects: Mapping[str, Any] | None) -> Any:
        if name in self.aliases:
            return self.aliases[name]()
        found = get_registered_object(name, custom_objects, self.builtins)
        if found is None:
            raise ValueError(self._unknown(name))
        self._check_kind(found, name)
        return found() if inspect.isclass(found) else found

    def _from_config(self, config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None) -> Any:
        if "class_name" not in config:
            raise ValueError(
                f"Could not deserialize {self.kind}: the config has no 'class_name' key. "
                f"Received: config={_describe(dict(config))}"
            )
        class_name = config["class_name"]
        if not isinstance(class_name, str):
            raise TypeError(
                f"Could not deserialize {self.kind}: its 'class_name' must be a str. "
                f"Received: class_name={_describe(class_name)}"
            )
        if not class_name:
            raise ValueError(f"Could not deserialize {self.kind}: its 'class_name' is empty. Received: class_name=''")
        for key in ("module", "registered_name"):
            if not isinstance(config.get(key), (str, type(None))):
                raise TypeError(
                    f"Could not deserialize {self.kind} {class_name!r}: its {key!r} must be a str or None. "
                    f"Received: {key}={_describe(config[key])}"
                )
        if class_name == "__lambda__":
            forced = in_safe_mode()
            return _load_lambda(config.get("config"), True if forced is None else forced)
        inner = config.get("config")
        registered_name = config.get("registered_name")
        module = config.get("module")
        if class_name == "function":
            found = _find_function(config, custom_objects, [self])
            if found is None:
                raise ValueError(self._unknown(inner))
            return self._check_kind(found, inner)
        if inner is None:
            inner = {}
        if not isinstance(inner, Mapping):
            raise TypeError(
                f"Expected 'config' to be a dict for {class_name} ({_article(self.kind)} {self.kind}): its 'config' must "
                "be a dict of constructor arguments. "
                f"Received: config={_describe(inner)}"
            )
        shared = _shared_object(config)
        if shared is not None:
            return shared
        names = [n for n in (registered_name, class_name) if isinstance(n, str)]
        found = next((o for n in names if (o := get_registered_object(n, custom_objects)) is not None), None)
        if found is None and self._is_builtin_module(module):
            found = self.builtins.get(class_name)
            if found is not None:
                _check_no_registered_name(config, class_name, f"'{module or self.module}.{class_name}'")
        if found is None and isinstance(registered_name, str) and ">" in registered_name:
            raise ValueError(self._unknown(registered_name, module))
        if found is None and isinstance(module, str) and _FAMILIES.get(module) in self.members:
            # An object of a family whose objects are also of this one: a model used as a layer.
            return _FAMILIES[module].deserialize(config, custom_objects)
        if found is None:
            raise ValueError(self._unknown(class_name, module))
        self._check_kind(found, registered_name if isinstance(registered_name, str) else class_name)
        if not inspect.isclass(found):
            return found
        from_config = getattr(found, "from_config", None)
        with custom_object_scope(custom_objects):
            try:
                obj = from_config(dict(inner)) if from_config is not None else found(**inner)
            except TypeError as error:
                raise TypeError(
                    f"Could not build {self.kind} {class_name!r} from its config {_describe(dict(inner))}: {error}. "
                    "A custom class whose constructor arguments differ from its `get_config()` keys "
                    "must override `from_config`."
                ) from error
            # Keras stores how a built layer was built, and how a model was compiled, beside its config.
            build_config = config.get("build_config")
            if build_config and not getattr(obj, "built", True) and hasattr(obj, "build_from_config"):
                obj.build_from_config(build_config)
            compile_config = config.get("compile_config")
            if compile_config and hasattr(obj, "compile_from_config"):
                obj.compile_from_config(compile_config)
        _record_deserialized(config, obj)
        return obj

    def _is_builtin_module(self, module: Any) -> bool:
        # tf.keras 2 configs carry no module at all.
        return module is None or module in self.modules

    def _unknown(self, name: str, module: Any = None) -> str:
        where = f" (module {module!r})" if module not in (None, self.module) else ""
        known = sorted(set(self.builtins) | set(self.aliases))
        package, _, short = name.rpartition(">")
        return (
            f"Unknown {self.kind}: {name!r}{where}. Built-in ids are {known}. "
            + _HOW_TO_REGISTER.format(name=short, package=f"package={package!r}" if package else "")
        )

    # -- get ---------------------------------------------------------------------------
    def get(self, identifier: Any) -> Any:
        """Resolve ``identifier`` (``None``, string id, config dict, class or callable) to an object."""
        if identifier is None:
            return None
        if isinstance(identifier, (str, Mapping)):
            obj = self.deserialize(identifier)
        else:
            obj = self._check_kind(identifier, identifier, named=False)
        if inspect.isclass(obj):
            return obj()
        if callable(obj):
            return obj
        raise ValueError(
            f"Could not interpret {self.kind} identifier: {_describe(identifier)}. Expected None, a string id, "
            f"a config dict, or a callable such as {_article(self.kind)} {self.kind} instance."
        )


def _config_module(module: str) -> str | None:
    # As Keras: a class or function defined in a script has no module a loader could find.
    return None if module == "__main__" else module


def _record_serialized(obj: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Inside an :class:`ObjectSharingScope`, mark ``config`` (and the first config of ``obj``) as shared when
    ``obj`` was serialized before."""
    seen = getattr(_SCOPES, "configs", None)
    if seen is None:
        return config
    key = id(obj)
    if key not in seen:
        # The object is kept alive with its config, so that its id cannot be reused within the scope.
        seen[key] = (obj, config)
    else:
        config["shared_object_id"] = key
        seen[key][1]["shared_object_id"] = key
    return config


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return np.dtype(dtype).name


def _serialize_lambda(function: types.FunctionType) -> dict[str, Any]:
    try:
        source = inspect.getsource(function).strip()
    except (OSError, TypeError):
        source = repr(function)
    warnings.warn(
        "The object being serialized includes a `lambda`, stored as Python bytecode. Loading it means running "
        "that code, so it loads only with `safe_mode=False` or after "
        "`weightwise.config.enable_unsafe_deserialization()`. Use a named function registered with "
        f"`@weightwise.saving.register_keras_serializable()` instead. The lambda: {source}",
        stacklevel=3,
    )
    code = base64.encodebytes(marshal.dumps(function.__code__)).decode("ascii")
    closure = tuple(cell.cell_contents for cell in function.__closure__) if function.__closure__ else None
    return {"class_name": "__lambda__", "config": {"value": (code, function.__defaults__, closure)}}


def _serialize_special(obj: Any) -> tuple[bool, Any]:
    """Keras's forms for values that are neither plain nor objects with a config: ``(True, form)``, or ``(False, None)``."""
    if isinstance(obj, bytes):
        try:
            text = obj.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                "Cannot serialize bytes that are not UTF-8 text: a config stores them as a string. "
                f"Received: {_describe(obj)}"
            ) from None
        return True, {"class_name": "__bytes__", "config": {"value": text}}
    if isinstance(obj, slice):
        return True, {"class_name": "__slice__", "config": {
            "start": serialize_keras_object(obj.start),
            "stop": serialize_keras_object(obj.stop),
            "step": serialize_keras_object(obj.step),
        }}
    if obj is Ellipsis:
        return True, {"class_name": "__ellipsis__", "config": {}}
    if isinstance(obj, torch.dtype):
        # Keras stores a framework dtype by its name (as it does TensorFlow's).
        return True, _dtype_name(obj)
    if isinstance(obj, torch.Tensor):
        value = obj.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()  # numpy has no bfloat16; the name below keeps the dtype
        return True, {"class_name": "__tensor__", "config": {"value": value.numpy().tolist(), "dtype": _dtype_name(obj.dtype)}}
    if type(obj).__module__ == np.__name__:
        if isinstance(obj, np.ndarray) and obj.ndim > 0:
            return True, {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": _dtype_name(obj.dtype)}}
        if isinstance(obj, (np.ndarray, np.generic)):
            return True, obj.item()  # a NumPy scalar is stored as the plain number
    return False, None


def serialize_keras_object(obj: Any) -> Any:
    """Serialize ``obj`` to Keras 3's config form, exactly as ``keras.saving.serialize_keras_object`` does.

    - ``None``, str, int, float and bool stay as they are; lists, tuples and dicts are
      serialized item by item (a tuple stays a tuple, a NumPy scalar becomes its number);
    - bytes, slices, ``...``, NumPy arrays and torch tensors get Keras's ``__bytes__``,
      ``__slice__``, ``__ellipsis__``, ``__numpy__`` and ``__tensor__`` forms; a torch dtype
      becomes its name (``'float32'``);
    - every named function, built-in or custom, is
      ``{"module": "builtins", "class_name": "function", "config": <registered name>,
      "registered_name": "function"}``; a lambda is stored as bytecode (``__lambda__``), with a
      warning, and loads only in unsafe mode;
    - an object with ``get_config()`` gets its class's public Keras module (for built-ins) or
      its Python module and registered name, with its config serialized in turn, and its
      ``build_config`` and ``compile_config`` beside it.

    Inside an :class:`ObjectSharingScope`, an object serialized twice gets a
    ``shared_object_id`` in both configs.

    >>> from weightwise.regularizers import L2
    >>> serialize_keras_object(L2(0.1))
    {'module': 'keras.regularizers', 'class_name': 'L2', 'config': {'l2': 0.1}, 'registered_name': None}
    >>> serialize_keras_object({"sizes": (3, 4), "window": slice(None, 2)})
    {'sizes': (3, 4), 'window': {'class_name': '__slice__', 'config': {'start': None, 'stop': 2, 'step': None}}}
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [serialize_keras_object(item) for item in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return _serialize_dict(obj)
    special, form = _serialize_special(obj)
    if special:
        return form
    if isinstance(obj, types.FunctionType):
        if obj.__name__ == "<lambda>":
            return _serialize_lambda(obj)
        # Keras's one form for every function: loaders find built-ins by name, custom ones by registered name.
        return _record_serialized(
            obj, {"module": "builtins", "class_name": "function", "config": get_registered_name(obj),
                  "registered_name": "function"})
    cls = type(obj)
    get_config = getattr(obj, "get_config", None)
    if get_config is None or inspect.isclass(obj):
        raise TypeError(
            f"Cannot serialize {_describe(obj)} of type {cls.__name__}: it has no `get_config()` method. "
            "Implement `get_config()` returning its constructor arguments."
        )
    config = get_config()
    if not isinstance(config, dict):
        raise TypeError(f"`get_config()` of {cls.__name__} must return a dict. It returned: {_describe(config)}")
    module = _BUILTIN_MODULE.get(cls)
    if module is not None:
        serialized = {"module": module, "class_name": cls.__name__, "config": _serialize_dict(config),
                      "registered_name": _BUILTIN_REGISTERED_NAME.get(cls)}
    else:
        serialized = {
            "module": _config_module(cls.__module__),
            "class_name": cls.__name__,
            "config": _serialize_dict(config),
            "registered_name": get_registered_name(cls),
        }
    for key in ("build_config", "compile_config"):
        method = getattr(obj, "get_" + key, None)
        value = method() if callable(method) else None
        if value is not None:
            serialized[key] = _serialize_dict(value) if isinstance(value, dict) else value
    return _record_serialized(obj, serialized)


def _serialize_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: serialize_keras_object(value) for key, value in config.items()}


# -- safe mode and shared objects --------------------------------------------------------
# The global switch lives in weightwise.config (Keras's keras.config.enable_unsafe_deserialization)
# where that module keeps one; this flag stands in for it otherwise.
_UNSAFE_EVERYWHERE = False


def enable_unsafe_deserialization() -> None:
    """Allow every later load to rebuild Python lambdas from their stored bytecode, as Keras's
    ``keras.config.enable_unsafe_deserialization()`` does.

    A lambda in a config is code: loading it runs whatever the file's author wrote.
    Call this only for files you trust. It overrides ``safe_mode=True`` everywhere
    except inside a ``SafeModeScope(True)``.

    >>> enable_unsafe_deserialization()
    >>> in_safe_mode()
    False
    >>> _restore_safe_default()
    """
    global _UNSAFE_EVERYWHERE
    switch = getattr(_settings, "enable_unsafe_deserialization", None)
    if switch is not None and switch is not enable_unsafe_deserialization:
        switch()
    else:
        _UNSAFE_EVERYWHERE = True


def _restore_safe_default() -> None:
    global _UNSAFE_EVERYWHERE
    _UNSAFE_EVERYWHERE = False
    reset = getattr(_settings, "set_safe_mode", None)
    if reset is not None:
        reset(None)


def in_safe_mode() -> bool | None:
    """The safe mode in force: that of the innermost :class:`SafeModeScope`, else ``False`` after
    :func:`enable_unsafe_deserialization`, else ``None`` (each call's own ``safe_mode`` decides).

    >>> in_safe_mode() is None
    True
    >>> with SafeModeScope(False):
    ...     in_safe_mode()
    False
    """
    stack = getattr(_SCOPES, "safe_mode", None)
    if stack:
        return stack[-1]
    global_setting = getattr(_settings, "in_safe_mode", None)
    value = global_setting() if global_setting is not None and global_setting is not in_safe_mode else None
    if value is not None:
        return bool(value)
    return False if _UNSAFE_EVERYWHERE else None


class SafeModeScope:
    """Set the safe mode for every deserialization inside a ``with`` block, nested ones included.

    ``SafeModeScope(True)`` refuses lambdas even where a call passes ``safe_mode=False``;
    ``SafeModeScope(False)`` loads them (their stored code runs), as Keras's scope does.

    >>> config = {"class_name": "__lambda__", "config": {"value": ["", None, None]}}
    >>> with SafeModeScope(True):
    ...     deserialize_keras_object(config, safe_mode=False)
    Traceback (most recent call last):
    ...
    ValueError: Requested the deserialization of a Python lambda. This carries a potential risk of arbitrary code execution, so it is refused in safe mode. If you trust the source of the config, pass `safe_mode=False` to the loading function or call `weightwise.config.enable_unsafe_deserialization()`.
    """

    def __init__(self, safe_mode: bool = True) -> None:
        if not isinstance(safe_mode, bool):
            raise TypeError(f"Invalid type for argument `safe_mode`: expected a bool. Received: safe_mode={_describe(safe_mode)}")
        self.safe_mode = safe_mode

    def __enter__(self) -> Self:
        if not hasattr(_SCOPES, "safe_mode"):
            _SCOPES.safe_mode = []
        _SCOPES.safe_mode.append(self.safe_mode)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _SCOPES.safe_mode.pop()


class ObjectSharingScope:
    """Keep one object shared across a config, as Keras's scope of the same name does.

    While serializing inside the scope, an object met twice gets the same
    ``shared_object_id`` in each of its configs; while deserializing inside it, the
    configs with one ``shared_object_id`` build a single object.

    >>> from weightwise.constraints import NonNeg
    >>> same = NonNeg()
    >>> with ObjectSharingScope():
    ...     configs = serialize_keras_object([same, same])
    ...     first, second = deserialize_keras_object(configs)
    >>> configs[0]["shared_object_id"] == configs[1]["shared_object_id"], first is second
    (True, True)
    """

    def __enter__(self) -> Self:
        self._outer = (getattr(_SCOPES, "configs", None), getattr(_SCOPES, "objects", None))
        _SCOPES.configs = {}
        _SCOPES.objects = {}
        return self

    def __exit__(self, *exc_info: object) -> None:
        _SCOPES.configs, _SCOPES.objects = self._outer


def _shared_object(config: Mapping[str, Any]) -> Any:
    objects = getattr(_SCOPES, "objects", None)
    key = config.get("shared_object_id")
    if objects is None or key is None:
        return None
    try:
        return objects.get(key)
    except TypeError:  # an unhashable id in a damaged config shares nothing
        return None


def _record_deserialized(config: Mapping[str, Any], obj: Any) -> None:
    objects = getattr(_SCOPES, "objects", None)
    key = config.get("shared_object_id")
    if objects is not None and isinstance(key, (int, str)):
        objects[key] = obj


# -- deserialize -------------------------------------------------------------------------
_LAMBDA_REFUSED = (
    "Requested the deserialization of a Python lambda. This carries a potential risk of arbitrary code execution, "
    "so it is refused in safe mode. If you trust the source of the config, pass `safe_mode=False` to the loading "
    "function or call `weightwise.config.enable_unsafe_deserialization()`."
)


def _load_lambda(inner: Any, safe_mode: bool) -> types.FunctionType:
    """Rebuild a lambda stored by Keras (base64 of its marshalled code, defaults, closure values), in unsafe mode only."""
    if safe_mode:
        raise ValueError(_LAMBDA_REFUSED)
    value = inner.get("value") if isinstance(inner, Mapping) else None
    if isinstance(value, str):  # the code alone, as Keras also reads it
        value = (value, None, None)
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not isinstance(value[0], str):
        raise ValueError(
            "Could not deserialize a lambda: its config must be {'value': [code, defaults, closure]} with the code "
            f"as a base64 string. Received: config={_describe(inner)}"
        )
    text, defaults, closure = value
    try:
        code = marshal.loads(base64.decodebytes(text.encode("ascii")))
    except (ValueError, EOFError, TypeError, UnicodeEncodeError, binascii.Error) as error:
        raise ValueError(
            "Could not deserialize a lambda: its bytecode is damaged, or was written by another Python version "
            f"than {sys.version_info.major}.{sys.version_info.minor} ({error})."
        ) from None
    if not isinstance(code, types.CodeType):
        raise ValueError(  # noqa: TRY004 - the config's content is at fault, not an argument's type
            f"Could not deserialize a lambda: its bytecode holds a {type(code).__name__}, not code.")
    cells = tuple(types.CellType(item) for item in closure) if closure else None
    if len(cells or ()) != len(code.co_freevars):
        raise ValueError(
            f"Could not deserialize a lambda: its code uses {len(code.co_freevars)} closure values but the config "
            f"holds {len(cells or ())}."
        )
    arguments = tuple(defaults) if isinstance(defaults, (list, tuple)) else None
    return types.FunctionType(code, {"__builtins__": builtins}, code.co_name, arguments, cells)


def _deserialize_special(config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None, safe_mode: bool) -> Any:
    """The value of one of Keras's special forms (``__numpy__``, ``__slice__``, ...); ``config`` names one."""
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "__lambda__":
        return _load_lambda(inner, safe_mode)
    if class_name == "__typespec__":
        if not isinstance(inner, (list, tuple)):
            raise TypeError(
                "Expected 'config' to be a list or a tuple for a __typespec__ class name. "
                f"Received: config={_describe(inner)}"
            )
        raise ValueError(
            f"Cannot deserialize the TensorFlow TypeSpec {config.get('spec_name')!r}: TensorFlow specs have no "
            "counterpart in weightwise, which runs on PyTorch."
        )
    if not isinstance(inner, Mapping):
        raise TypeError(
            f"Expected 'config' to be a dict for a {class_name} value. Received: config={_describe(inner)}"
        )
    if class_name == "__ellipsis__":
        return Ellipsis
    if class_name == "__slice__":
        parts = [deserialize_keras_object(inner.get(key), custom_objects, safe_mode) for key in ("start", "stop", "step")]
        return slice(*parts)
    if "value" not in inner:
        raise ValueError(f"Could not deserialize a {class_name} value: its config has no 'value'. Received: {_describe(inner)}")
    value = inner["value"]
    if class_name == "__bytes__":
        if not isinstance(value, str):
            raise TypeError(f"Expected a str as the value of a __bytes__ config. Received: value={_describe(value)}")
        return value.encode("utf-8")
    dtype = inner.get("dtype")
    try:
        if class_name == "__numpy__":
            return np.array(value, dtype=dtype)
        tensor_dtype = standardize_dtype(dtype) if dtype is not None else None
        return torch.tensor(value, dtype=tensor_dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"Could not deserialize a {class_name} value of dtype {dtype!r}: {error}. Received: value={_describe(value)}"
        ) from None


_SPECIAL_FORMS = frozenset({"__lambda__", "__typespec__", "__ellipsis__", "__slice__", "__bytes__", "__numpy__", "__tensor__"})
# Where Keras looks for a built-in function stored by name alone (module "builtins"), in our search order.
_FUNCTION_MODULES = ("activations", "losses", "metrics", "regularizers", "constraints", "initializers", "optimizers")


def _check_no_registered_name(config: Mapping[str, Any], name: str, what: str) -> None:
    """Keras 3.15's check: a config that resolves to a built-in may name no other registered name."""
    explicit = config.get("registered_name")
    if not explicit or explicit in (name, config.get("class_name")):
        return
    raise ValueError(
        f"`registered_name={explicit!r}` was provided in the config, but {what} resolved to a Keras built-in and "
        f"does not use registered names. Remove the `registered_name` field from the config. "
        f"Full object config: {_describe(dict(config))}"
    )


def _find_function(
    config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None, families: Sequence[ObjectFamily]
) -> Any:
    """The function a ``class_name: 'function'`` config names, looked up as Keras does; ``None`` if none.

    The registry and ``custom_objects`` come first, then the built-ins of ``families``,
    then (for configs written by Keras 3.6 and older, which stored a registered function
    by its bare name) any registered ``"package>name"`` of that name.
    """
    name = config.get("config")
    if not isinstance(name, str):
        raise TypeError(
            "Expected 'config' to be a non-null str for a function class name (the function's name). "
            f"Received: config={_describe(config.get('config'))}"
        )
    found = get_registered_object(name, custom_objects)
    if found is not None:
        return found
    for family in families:
        builtin = family.builtins.get(name)
        if builtin is not None and not inspect.isclass(builtin):
            _check_no_registered_name(config, name, f"'{family.module}.{name}'")
            return builtin
    if ">" not in name:
        suffix = ">" + name
        for scope in (custom_objects or {}, *reversed(_scopes()), _REGISTERED):
            for key, obj in scope.items():
                if isinstance(key, str) and key.endswith(suffix):
                    return obj
    return None


def _builtin_function_families() -> list[ObjectFamily]:
    return [family for m in _FUNCTION_MODULES if (family := _FAMILIES.get("keras." + m)) is not None]


def _effective_safe_mode(safe_mode: Any) -> bool:
    if not isinstance(safe_mode, bool):
        raise TypeError(f"Invalid type for argument `safe_mode`: expected a bool. Received: safe_mode={_describe(safe_mode)}")
    forced = in_safe_mode()
    return safe_mode if forced is None else forced


def deserialize_keras_object(
    config: Any,
    custom_objects: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
    **kwargs: Any,
) -> Any:
    """Rebuild what :func:`serialize_keras_object` wrote (or Keras wrote), as ``keras.saving.deserialize_keras_object`` does.

    - ``None`` and plain values come back as they are (a string naming a custom object
      gives that object); lists and tuples come back as lists; a dict without both
      ``class_name`` and ``config`` is a plain dict, its values deserialized;
    - Keras's special forms give bytes, slices, ``...``, NumPy arrays and torch tensors;
    - a function config finds the function by registered name, then among the built-in
      activations, losses, metrics, ...; Keras 3.6's form (the bare name of a registered
      function) is read too;
    - a class config is built by the family its ``module`` names (layers, regularizers, ...)
      or, for custom classes, by registered name or ``custom_objects``. As in Keras 3.15, a
      config that resolves to a built-in may carry no other ``registered_name``.

    A lambda (``__lambda__``, stored as bytecode) is refused in safe mode, the default;
    with ``safe_mode=False`` (or after ``weightwise.config.enable_unsafe_deserialization()``)
    its code is loaded and may run. A :class:`SafeModeScope` overrides ``safe_mode``.
    ``module_objects`` (a keyword, as in Keras) adds names to look up.

    >>> deserialize_keras_object({"module": "keras.constraints", "class_name": "NonNeg",
    ...                           "config": {}, "registered_name": None})
    NonNeg()
    >>> deserialize_keras_object({"module": "builtins", "class_name": "function", "config": "relu",
    ...                           "registered_name": "function"}).__name__
    'relu'
    """
    module_objects = kwargs.pop("module_objects", None)
    if kwargs:
        raise TypeError(f"deserialize_keras_object() got unexpected keyword arguments: {sorted(kwargs)}")
    _check_custom_objects(custom_objects)
    if module_objects is not None:
        _check_custom_objects(module_objects)
        custom_objects = {**module_objects, **(custom_objects or {})}
    safe = _effective_safe_mode(safe_mode)
    if getattr(_SCOPES, "walking", False):
        return _deserialize_any(config, custom_objects, safe)
    if config_depth_exceeds(config):
        raise ValueError(
            f"Could not deserialize: the config nests more than {MAX_CONFIG_DEPTH} levels of dicts and lists "
            f"(or contains itself). Received: config={_describe(config)}"
        )
    _SCOPES.walking = True
    try:
        return _deserialize_any(config, custom_objects, safe)
    finally:
        _SCOPES.walking = False


def _deserialize_any(config: Any, custom_objects: Mapping[str, Any] | None, safe_mode: bool) -> Any:
    if config is None:
        return None
    if isinstance(config, str):
        found = get_registered_object(config, custom_objects)
        return config if found is None else found
    if isinstance(config, (list, tuple)):
        return [_deserialize_any(item, custom_objects, safe_mode) for item in config]
    if isinstance(config, (int, float, bool)):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(f"Could not parse config: expected a config dict, a list or a plain value. Received: config={_describe(config)}")
    if "class_name" not in config or "config" not in config:
        return {key: _deserialize_any(value, custom_objects, safe_mode) for key, value in config.items()}
    class_name = config["class_name"]
    if class_name in _SPECIAL_FORMS:
        return _deserialize_special(config, custom_objects, safe_mode)
    with SafeModeScope(safe_mode):
        if class_name == "function":
            found = _find_function(config, custom_objects, _builtin_function_families())
            if found is None:
                name = config["config"]
                raise ValueError(
                    f"Unknown function: {name!r}. It is neither a built-in activation, loss or metric nor a "
                    "registered function. "
                    + _HOW_TO_REGISTER.format(name=name.rpartition(">")[2], package="")
                )
            return found
        module = config.get("module")
        family = _FAMILIES.get(module, _CUSTOM_ONLY) if isinstance(module, str) else _CUSTOM_ONLY
        return family._from_config(config, custom_objects)


# Resolves registered and custom objects only; used for configs of no known family.
_CUSTOM_ONLY = ObjectFamily("object", "", [])
