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
"""

from __future__ import annotations

import inspect
import re
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "ObjectFamily",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
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
            raise ValueError(
                f"Could not deserialize {self.kind}: the config holds a Python lambda (stored as bytecode). "
                "weightwise never runs code from a config or file. Replace the lambda with a named function "
                "registered with `@weightwise.saving.register_keras_serializable()`."
            )
        inner = config.get("config")
        registered_name = config.get("registered_name")
        module = config.get("module")
        if class_name == "function":
            # Keras stores a function's registered name as its config.
            names = [n for n in (inner, registered_name) if isinstance(n, str) and n != "function"]
            found = next((o for n in names if (o := get_registered_object(n, custom_objects)) is not None), None)
            if found is None and (self._is_builtin_module(module) or module == "builtins") and names:
                found = self.builtins.get(names[0])
            if found is None:
                raise ValueError(self._unknown(names[0] if names else _describe(inner)))
            return self._check_kind(found, names[0])
        names = [n for n in (registered_name, class_name) if isinstance(n, str)]
        found = next((o for n in names if (o := get_registered_object(n, custom_objects)) is not None), None)
        if found is None and self._is_builtin_module(module):
            found = self.builtins.get(class_name)
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
        if inner is None:
            inner = {}
        if not isinstance(inner, Mapping):
            raise ValueError(
                f"Could not deserialize {self.kind} {class_name!r}: its 'config' must be a dict. "
                f"Received: config={_describe(inner)}"
            )
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


def serialize_keras_object(obj: Any) -> Any:
    """Serialize ``obj`` to the Keras 3 config form.

    Built-ins get their public Keras module and ``registered_name: None``;
    registered objects carry their ``"package>name"``; plain functions are
    stored by name. Lambdas are refused, since loading them would mean running code.

    >>> from weightwise.regularizers import L2
    >>> serialize_keras_object(L2(0.1))
    {'module': 'keras.regularizers', 'class_name': 'L2', 'config': {'l2': 0.1}, 'registered_name': None}
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, types.FunctionType):
        if obj.__name__ == "<lambda>":
            raise ValueError(
                f"Cannot serialize the lambda {obj!r}: a config never stores code. "
                "Use a named function decorated with `@weightwise.saving.register_keras_serializable()`."
            )
        if obj in _BUILTIN_MODULE:
            # Keras's own form for its built-in functions, so Keras loads ours (and we load Keras's).
            return {"module": "builtins", "class_name": "function", "config": obj.__name__, "registered_name": "function"}
        name = get_registered_name(obj)
        return {"module": obj.__module__, "class_name": "function", "config": name, "registered_name": name}
    cls = type(obj)
    get_config = getattr(obj, "get_config", None)
    if get_config is None:
        raise TypeError(
            f"Cannot serialize {_describe(obj)} of type {cls.__name__}: it has no `get_config()` method. "
            "Implement `get_config()` returning its constructor arguments."
        )
    config = get_config()
    if not isinstance(config, dict):
        raise TypeError(f"`get_config()` of {cls.__name__} must return a dict. It returned: {_describe(config)}")
    module = _BUILTIN_MODULE.get(cls)
    if module is not None:
        serialized = {"module": module, "class_name": cls.__name__, "config": config,
                      "registered_name": _BUILTIN_REGISTERED_NAME.get(cls)}
    else:
        serialized = {
            "module": cls.__module__,
            "class_name": cls.__name__,
            "config": config,
            "registered_name": get_registered_name(cls),
        }
    for key in ("build_config", "compile_config"):
        method = getattr(obj, "get_" + key, None)
        value = method() if callable(method) else None
        if value is not None:
            serialized[key] = value
    return serialized


def deserialize_keras_object(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build an object from a Keras config of any family, chosen by its ``module``.

    >>> deserialize_keras_object({"module": "keras.constraints", "class_name": "NonNeg",
    ...                           "config": {}, "registered_name": None})
    NonNeg()
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"Invalid value for argument `config`: expected a config dict. Received: config={_describe(config)}")
    _check_custom_objects(custom_objects)
    module = config.get("module")
    family = _FAMILIES.get(module, _CUSTOM_ONLY) if isinstance(module, str) else _CUSTOM_ONLY
    return family.deserialize(config, custom_objects)


# Resolves registered and custom objects only; used for configs of no known family.
_CUSTOM_ONLY = ObjectFamily("object", "", [])
