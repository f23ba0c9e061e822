"""Keras's dtype policies: which dtype a layer computes in, and which its weights are kept in.

A policy is named after a dtype (``"float32"``, ``"bfloat16"``, ...: both dtypes are that one)
or is one of the two mixed policies, ``"mixed_float16"`` and ``"mixed_bfloat16"``: the layer
computes in float16 or bfloat16 while its weights stay float32. Every layer has one, from its
``dtype=`` argument or else the global policy (:func:`dtype_policy`, set with
:func:`set_dtype_policy`, also found in :mod:`weightwise.config` and
:mod:`weightwise.mixed_precision`).

Under a mixed policy a layer casts its floating inputs and, for the length of its call, its
own floating weights to the compute dtype; gradients flow back through that cast to the
float32 weights, which the optimizer updates, the penalties read and the constraints write.

Policies serialize in Keras's form, so ``.keras`` files carry them both ways:

>>> policy = get("mixed_bfloat16")
>>> policy.compute_dtype, policy.variable_dtype
('bfloat16', 'float32')
>>> serialize(policy)
{'module': 'keras', 'class_name': 'DTypePolicy', 'config': {'name': 'mixed_bfloat16'}, 'registered_name': None}
>>> deserialize(serialize(policy)) == policy
True

Not covered: Keras's quantized policies (``"int8_from_float32"`` and the like) and
``DTypePolicyMap``; asking for one is a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from weightwise import backend
from weightwise.arguments import echo

__all__ = ["DTypePolicy", "FloatDTypePolicy", "deserialize", "get", "serialize"]

_MIXED = {"mixed_float16": ("float16", "float32"), "mixed_bfloat16": ("bfloat16", "float32")}
# Keras's quantized policy names start with these; weightwise does not quantize.
_QUANTIZED = ("int8", "float8", "int4", "gptq", "awq")
# The policy set by set_dtype_policy(); None means "follow floatx()".
_GLOBAL_POLICY: DTypePolicy | None = None


def _dtype_string(name: str) -> str | None:
    """``name`` if it is the canonical name of a dtype (``"float32"``, ``"int8"``, ...), else ``None``."""
    try:
        dtype = backend.standardize_dtype(name)
    except ValueError:
        return None
    return name if str(dtype) == f"torch.{name}" else None


def _quantized_error(name: str) -> ValueError:
    return ValueError(
        f"Quantized dtype policies are a Keras feature weightwise does not support. Use 'float32', 'mixed_float16', "
        f"'mixed_bfloat16' or the name of a dtype. Received: name={name!r}"
    )


class DTypePolicy:
    """A layer's dtype policy: its compute dtype and its variable (weight) dtype, by name.

    ``DTypePolicy(name=None)``: ``name`` is ``"mixed_float16"`` (compute float16, variables
    float32), ``"mixed_bfloat16"`` (compute bfloat16, variables float32) or the name of a
    dtype, which is both; ``None`` takes the global policy's name. A name that is not a
    string is a ``TypeError``; an unknown one a ``ValueError``, as in Keras. Two policies are
    equal when their names are.

    >>> policy = DTypePolicy("mixed_float16")
    >>> policy
    <DTypePolicy "mixed_float16">
    >>> policy.name, policy.compute_dtype, policy.variable_dtype
    ('mixed_float16', 'float16', 'float32')
    >>> DTypePolicy("float64").compute_dtype
    'float64'
    """

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = dtype_policy().name
        self._compute_dtype, self._variable_dtype = self._parse_name(name)
        self._name = name

    @staticmethod
    def _parse_name(name: Any) -> tuple[str, str]:
        if not isinstance(name, str):
            raise TypeError(
                f"'name' must be a string, such as 'mixed_float16'. Received: name={echo(name)} (of type {type(name)})")
        if name in _MIXED:
            return _MIXED[name]
        if name.startswith(_QUANTIZED) and "_from_" in name:
            raise _quantized_error(name)
        dtype = _dtype_string(name)
        if dtype is None:
            raise ValueError(
                f"Cannot convert '{name}' to a mixed precision DTypePolicy. Valid policies include 'mixed_float16', "
                "'mixed_bfloat16', and the name of any float dtype such as 'float32'.")
        return dtype, dtype

    @property
    def name(self) -> str:
        """The policy's name (``"mixed_bfloat16"``, ``"float32"``, ...)."""
        return self._name

    @property
    def compute_dtype(self) -> str:
        """The dtype a layer computes in: its inputs are cast to it, and so its outputs come in it."""
        return self._compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype a layer creates its weights in (float32 under both mixed policies).

        Weight penalties are computed in it, and constraints write it.
        """
        return self._variable_dtype

    @property
    def quantization_mode(self) -> None:
        """Always ``None``: weightwise has no quantized policies."""
        return None

    @property
    def is_mixed(self) -> bool:
        """Whether the compute dtype differs from the variable dtype (a weightwise addition).

        >>> DTypePolicy("mixed_bfloat16").is_mixed, DTypePolicy("float32").is_mixed
        (True, False)
        """
        return self._compute_dtype != self._variable_dtype

    def convert_input(self, x: Any, autocast: bool, dtype: Any) -> Any:
        """``x`` as a tensor, its floating values cast to ``dtype`` when ``autocast`` (Keras's rule).

        Integer and bool values keep their dtype; anything that is neither a tensor nor an
        array-like is returned as it is.

        >>> DTypePolicy("mixed_bfloat16").convert_input(torch.ones(2), True, "bfloat16").dtype
        torch.bfloat16
        >>> DTypePolicy("mixed_bfloat16").convert_input(np.arange(2), True, "bfloat16").dtype
        torch.int64
        """
        target = backend.standardize_dtype(dtype)
        if not isinstance(x, torch.Tensor):
            if not hasattr(x, "__array__"):
                return x
            x = torch.as_tensor(np.asarray(x))
        if autocast and x.is_floating_point() and x.dtype != target:
            x = x.to(target)
        return x

    def get_config(self) -> dict[str, Any]:
        """``{"name": ...}``, as Keras."""
        return {"name": self._name}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DTypePolicy:
        """``cls(**config)``."""
        return cls(**config)

    def __repr__(self) -> str:
        shown = "DTypePolicy" if type(self) is FloatDTypePolicy else type(self).__name__
        return f'<{shown} "{self._name}">'

    def __eq__(self, other: object) -> bool:
        if type(self) in (DTypePolicy, FloatDTypePolicy):
            if type(other) not in (DTypePolicy, FloatDTypePolicy):
                return False
        elif type(other) is not type(self):
            return False
        return self._name == other._name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._name)


class FloatDTypePolicy(DTypePolicy):
    """Keras's other name for :class:`DTypePolicy` (it prints as one, and equals one of the same name).

    >>> FloatDTypePolicy("mixed_bfloat16") == DTypePolicy("mixed_bfloat16")
    True
    """


_CLASSES: dict[str, type[DTypePolicy]] = {
    "DTypePolicy": DTypePolicy, "FloatDTypePolicy": FloatDTypePolicy,
    # tf.keras 2 wrote its mixed-precision policies as "Policy".
    "Policy": DTypePolicy,
}


def serialize(policy: DTypePolicy) -> dict[str, Any]:
    """The policy's config in Keras 3's form (``module`` ``"keras"``, as Keras writes it).

    >>> serialize(DTypePolicy("float32"))["config"]
    {'name': 'float32'}
    """
    if not isinstance(policy, DTypePolicy):
        raise TypeError(f"Invalid value for argument `dtype_policy`: expected a DTypePolicy. Received: "
                        f"dtype_policy={echo(policy)}")
    ours = type(policy) in (DTypePolicy, FloatDTypePolicy)
    return {"module": "keras" if ours else type(policy).__module__, "class_name": type(policy).__name__,
            "config": policy.get_config(), "registered_name": None if ours else type(policy).__name__}


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> DTypePolicy:
    """A policy from its serialized form (Keras 3's, or tf.keras 2's ``{"class_name": "Policy", ...}``).

    A policy class of one's own is found in ``custom_objects`` by its class name.

    >>> deserialize({"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}})
    <DTypePolicy "mixed_float16">
    """
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"Invalid value for argument `config`: expected a serialized dtype policy, a dict with "
                        f"'class_name' and 'config'. Received: config={echo(config)}")
    if not isinstance(config.get("config"), Mapping):  # a dict, but not one a policy was written as
        raise ValueError(  # noqa: TRY004
            f"Invalid value for argument `config`: expected a serialized dtype policy, a dict with "
            f"'class_name' and 'config'. Received: config={echo(config)}")
    class_name = config.get("class_name")
    cls = (custom_objects or {}).get(class_name) or _CLASSES.get(class_name)  # type: ignore[arg-type]
    if cls is None:
        if isinstance(class_name, str) and "Quantized" in class_name:
            raise _quantized_error(str(dict(config["config"])))
        raise ValueError(f"Unknown dtype policy: {class_name!r}. Expected one of {sorted(_CLASSES)}, or a class "
                         f"passed in `custom_objects`. Received: config={echo(config)}")
    return cls.from_config(dict(config["config"]))


def get(identifier: Any) -> DTypePolicy:
    """A policy from a name, a serialized policy, a dtype or a policy (which passes through).

    ``None`` gives the global policy (:func:`dtype_policy`). Anything else is a ``ValueError``.

    >>> get("mixed_bfloat16")
    <DTypePolicy "mixed_bfloat16">
    >>> get(torch.float64)
    <DTypePolicy "float64">
    >>> get(3)
    Traceback (most recent call last):
    ...
    ValueError: Cannot interpret `dtype` argument. Expected a string or an instance of DTypePolicy. Received: dtype=3
    """
    if identifier is None:
        return dtype_policy()
    if isinstance(identifier, DTypePolicy):
        return identifier
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return DTypePolicy(identifier)
    try:
        name = str(backend.standardize_dtype(identifier)).replace("torch.", "")
    except ValueError:
        name = None
    if name is None or _dtype_string(name) is None:
        raise ValueError("Cannot interpret `dtype` argument. Expected a string or an instance of DTypePolicy. "
                         f"Received: dtype={echo(identifier)}")
    return DTypePolicy(name)


def set_dtype_policy(policy: DTypePolicy | str) -> None:
    """Set the global policy, which layers created from now on without ``dtype=`` take.

    ``policy`` is a :class:`DTypePolicy` or its name. Set it back with
    ``set_dtype_policy("float32")``.

    >>> set_dtype_policy("mixed_bfloat16")
    >>> dtype_policy()
    <DTypePolicy "mixed_bfloat16">
    >>> set_dtype_policy("float32")
    """
    if not isinstance(policy, DTypePolicy):
        if not isinstance(policy, str):
            raise ValueError(  # noqa: TRY004 -- Keras's error type, which its callers catch
                "Invalid `policy` argument. Expected the string name of a policy (such as 'mixed_float16') or a "
                f"`DTypePolicy` instance. Received: policy={echo(policy)} (of type {type(policy)})")
        policy = DTypePolicy(policy)
    global _GLOBAL_POLICY
    _GLOBAL_POLICY = policy


def dtype_policy() -> DTypePolicy:
    """The global policy: the one last set, else the policy named after :func:`~weightwise.config.floatx`.

    >>> dtype_policy()
    <DTypePolicy "float32">
    """
    if _GLOBAL_POLICY is not None:
        return _GLOBAL_POLICY
    return DTypePolicy(backend.floatx())


def reset_dtype_policy() -> None:
    """Forget the policy set, so the global policy follows ``floatx()`` again (as at import).

    >>> set_dtype_policy("mixed_float16")
    >>> reset_dtype_policy()
    >>> dtype_policy().name
    'float32'
    """
    global _GLOBAL_POLICY
    _GLOBAL_POLICY = None
