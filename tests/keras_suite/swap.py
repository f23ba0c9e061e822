"""The import swap: ``keras`` and ``keras.src.*`` resolve to weightwise while Keras's tests load and run.

Keras's test files import ``from keras.src import layers, ops, testing, ...``. Inside
:func:`swapped` those names come from :data:`MODULES`: each entry is a weightwise module
(or our test helpers) seen through an :class:`Alias`, a fresh module object that forwards
attribute reads, so nothing is ever written onto weightwise's own modules. A Keras name
with no entry becomes a :func:`missing` stand-in that imports fine and fails, naming the
Keras object, only when a test uses it. Outside the swap ``import keras`` is the real
Keras again, which the conformance tests compare against.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Keras module name -> the modules that stand in for it, searched in order. Modules
# weightwise does not have yet are skipped, so their names fail as stand-ins until they
# land. Keras names with no entry import as stand-ins (``missing``): their features are
# outside weightwise (quantizers, export).
MODULES: dict[str, tuple[str, ...]] = {
    "keras": ("weightwise",),
    "keras.src.activations": ("weightwise.activations",),
    # Keras's backend module also carries the core tensor functions and ``Variable``.
    # get_keras_mask / set_keras_mask live beside KerasTensor.
    "keras.src.backend": ("weightwise.backend", "weightwise.ops", "weightwise", "weightwise.layers.symbolic"),
    "keras.backend": ("weightwise.backend",),
    # Keras re-exports its model classes at the package root (`from keras.src import Sequential`).
    "keras.src": ("weightwise.models",),
    "keras.src.backend.common.keras_tensor": ("weightwise.layers.symbolic",),
    "keras.src.backend.config": ("weightwise.config",),
    "keras.src.backend.random": ("weightwise.random",),
    "keras.src.callbacks": ("weightwise.callbacks",),
    "keras.src.constraints": ("weightwise.constraints",),
    "keras.src.initializers": ("weightwise.initializers",),
    "keras.src.layers": ("weightwise.layers",),
    "keras.src.layers.core.einsum_dense": ("weightwise.layers.einsum_dense",),
    "keras.src.layers.rnn.conv_lstm": ("weightwise.layers.conv_lstm",),
    "keras.src.layers.rnn.dropout_rnn_cell": ("weightwise.layers.rnn.dropout_cell",),
    # Keras's test files that others import helpers from (the cells of rnn_test.py), loaded under the swap.
    "keras.src.layers.rnn.rnn_test": ("keras_suite.own.layers.rnn.rnn_test",),
    # Keras's test files import the activation layers' modules (`from keras.src.layers.activations import elu`).
    **{f"keras.src.layers.activations.{module}": ("weightwise.layers",)
       for module in ("elu", "leaky_relu", "prelu", "relu", "softmax")},
    "keras.src.losses": ("weightwise.losses",),
    "keras.src.metrics": ("weightwise.metrics",),
    "keras.src.models": ("weightwise.models",),
    "keras.src.ops": ("weightwise.ops",),
    "keras.src.ops.random": ("weightwise.random",),
    "keras.src.optimizers": ("weightwise.optimizers",),
    # adam_test.py imports the class from its module (`from keras.src.optimizers.adam import Adam`).
    "keras.src.optimizers.adam": ("weightwise.optimizers",),
    "keras.src.dtype_policies": ("weightwise.dtype_policies",),
    "keras.src.random": ("weightwise.random",),
    "keras.src.regularizers": ("weightwise.regularizers",),
    "keras.src.regularizers.regularizers": ("weightwise.regularizers",),
    "keras.src.saving": ("weightwise.saving",),
    "keras.src.saving.object_registration": ("weightwise.saving", "weightwise.serialization"),
    "keras.src.saving.serialization_lib": ("weightwise.saving", "weightwise.serialization"),
    "keras.src.testing": ("keras_suite.testing",),
    "keras.src.utils": ("weightwise.utils",),
    "keras.src.testing.test_case": ("keras_suite.testing",),
    # Keras's repository conftest, which some test files import helpers from (not a Keras module:
    # the swap puts it back as it was afterwards).
    "conftest": ("keras_suite.testing",),
}

# Names Keras's test files read while they load (``@pytest.mark.skipif(backend.backend()
# == "torch")``): without a value the whole file would fail to import. Used only while
# weightwise lacks the name; each one is a library gap listed in the failure inventory.
FALLBACKS: dict[str, Any] = {
    "keras.src.backend.backend": lambda: "torch",
    "keras.src.backend.SUPPORTS_SPARSE_TENSORS": False,
}

# Keras modules of pure Python arithmetic that its tests use to compute expected values
# (Keras's own ``*_test`` modules load the same way): they run from Keras's source.
REFERENCE_MODULES = ("keras.src.backend.common.backend_utils",)

KERAS_SOURCE = Path(importlib.util.find_spec("keras").origin).parent / "src"


class _MissingMeta(type):
    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise NotImplementedError(f"weightwise has no counterpart of Keras's {cls._keras_name}.{attr}")


def missing(keras_name: str) -> type:
    """A stand-in for a Keras object weightwise lacks: importable and subclassable, it fails when used.

    >>> Quantizer = missing("keras.src.quantizers.AbsMaxQuantizer")
    >>> Quantizer()
    Traceback (most recent call last):
    ...
    NotImplementedError: weightwise has no counterpart of Keras's keras.src.quantizers.AbsMaxQuantizer
    """

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"weightwise has no counterpart of Keras's {keras_name}")

    return _MissingMeta(keras_name.rsplit(".", 1)[-1], (), {"__init__": refuse, "_keras_name": keras_name})


class Alias(types.ModuleType):
    """A module named like Keras's that reads its attributes from weightwise modules, first match wins.

    >>> import weightwise
    >>> Alias("keras.src.layers", [weightwise.layers]).Dense is weightwise.layers.Dense
    True
    """

    def __init__(self, name: str, targets: list[types.ModuleType]) -> None:
        super().__init__(name)
        self._targets = targets
        self.__path__: list[str] = []  # a package, so ``keras.src.quantizers.awq_config`` can import

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_targets":
            raise AttributeError(attr)
        qualified = f"{self.__name__}.{attr}"
        if qualified in sys.modules:
            return sys.modules[qualified]
        for index, target in enumerate(self._targets):
            if hasattr(target, attr):
                value = getattr(target, attr)
                if isinstance(value, types.ModuleType) and index > 0:
                    continue  # ``weightwise.backend`` is not Keras's ``backend.backend``
                if isinstance(value, types.ModuleType):
                    # ``keras.layers.X`` must resolve as ``keras.src.layers.X`` does.
                    value = Alias(qualified, [value])
                    setattr(self, attr, value)
                return value
        if qualified in FALLBACKS:
            return FALLBACKS[qualified]
        if not self._targets or _ACTIVE:
            return missing(qualified)
        where = ", ".join(target.__name__ for target in self._targets)
        raise AttributeError(f"weightwise has no counterpart of Keras's {qualified} (looked in {where})")


_ACTIVE: list[bool] = []
_OWN = "keras_suite.own."


# Other libraries some Keras test files import at the top (for their tf.data and grain tests). When
# they are not installed they load as stand-ins, so the file's other tests run; a test that uses
# one fails naming it, and is listed in EXCLUDED.
ABSENT_LIBRARIES = ("tensorflow", "grain")


def _stand_in_name(name: str) -> bool:
    if name == "keras" or name.startswith("keras."):
        return True
    top = name.split(".", 1)[0]
    return top in ABSENT_LIBRARIES and importlib.machinery.PathFinder.find_spec(top) is None


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports every Keras module name without a weightwise counterpart, and every absent library of
    :data:`ABSENT_LIBRARIES`, as an empty stand-in."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.endswith("_test") or name in REFERENCE_MODULES:
            # NumPy references one test file takes from another: Keras's own code, run under the swap.
            return importlib.util.spec_from_file_location(
                name, KERAS_SOURCE.joinpath(*name.split(".")[2:]).with_suffix(".py"))
        if _stand_in_name(name):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return Alias(spec.name, [])

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _importable(name: str) -> types.ModuleType | None:
    if name.startswith(_OWN) and name not in sys.modules:
        return load(name.removeprefix(_OWN).replace(".", "/") + ".py")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        return None


def _modules() -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {}
    for keras_name, ours in MODULES.items():
        modules[keras_name] = Alias(keras_name, [m for m in map(_importable, ours) if m is not None])
    # Parents without a counterpart of their own (``keras.src``, ``keras.src.backend.common``)
    # are empty aliases, so ``from keras.src import layers`` finds the entry above.
    for keras_name in list(modules):
        parts = keras_name.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            modules.setdefault(parent, Alias(parent, []))
    return modules


@contextlib.contextmanager
def swapped() -> Iterator[None]:
    """While active, ``import keras`` and ``keras.src.*`` give weightwise; afterwards, Keras again.

    >>> import weightwise
    >>> with swapped():
    ...     from keras.src import layers
    >>> layers.Dense is weightwise.layers.Dense
    True
    >>> import keras
    >>> keras.layers.Dense is weightwise.layers.Dense
    False
    """
    saved = {name: module for name, module in sys.modules.items()
             if name == "keras" or name.startswith("keras.") or name in MODULES}
    for name in saved:
        del sys.modules[name]
    sys.modules.update(_modules())
    finder = _StandInFinder()
    sys.meta_path.insert(0, finder)
    _ACTIVE.append(True)
    try:
        yield
    finally:
        _ACTIVE.pop()
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if name == "keras" or name.startswith("keras.")
                     or name in MODULES or isinstance(sys.modules[name], Alias)]:
            del sys.modules[name]
        sys.modules.update(saved)


def load(relative_path: str) -> types.ModuleType:
    """Load one of Keras's installed test files (path under ``keras/src``) under the swap.

    >>> module = load("layers/regularization/activity_regularization_test.py")
    >>> module.ActivityRegularizationTest.__mro__[1].__module__
    'keras_suite.testing'
    """
    path = KERAS_SOURCE / relative_path
    name = _OWN + relative_path.removesuffix(".py").replace("/", ".")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered first, so a test file that imports this one (and this one's own swap) finds it.
    sys.modules[name] = module
    with swapped():
        spec.loader.exec_module(module)
    return module


__all__ = ["FALLBACKS", "KERAS_SOURCE", "MODULES", "REFERENCE_MODULES", "Alias", "load", "missing", "swapped"]
