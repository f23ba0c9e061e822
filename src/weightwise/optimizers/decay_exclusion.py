"""Which variables an optimizer's ``weight_decay`` leaves out: Keras's ``exclude_from_weight_decay`` rule.

:class:`DecayExclusion` holds what one ``exclude_from_weight_decay(var_list, var_names)``
call set and answers, for each variable, whether it decays. The optimizers keep one
and ask it before every decay step (or, for ``AdamW``, when they split their parameters
into torch parameter groups); :mod:`weightwise.optimizers.base_optimizer` holds the
method users call.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

import torch

from weightwise.arguments import echo

__all__ = ["DecayExclusion", "variable_name"]


def variable_name(variable: torch.Tensor) -> str:
    """The name ``var_names`` patterns are searched in: a weight's Keras ``name``, else ``""``.

    A layer's weight (a :class:`~weightwise.variables.Variable`) has its Keras name
    (``"kernel"``, ``"bias"``). A plain ``torch.nn.Parameter`` has none (torch's
    ``Tensor.name`` is ``None``), so only a pattern that matches the empty string finds it.

    >>> from weightwise.variables import Variable
    >>> variable_name(Variable(torch.zeros(2), name="bias")), variable_name(torch.nn.Parameter(torch.zeros(2)))
    ('bias', '')
    """
    name = getattr(variable, "name", None)
    return name if isinstance(name, str) else ""


class DecayExclusion:
    """The variables left out of weight decay: some by identity, others by a name pattern.

    ``var_list`` is a list of tensors, compared by identity; ``var_names`` a list of
    regular expressions, joined with ``|`` and searched (``re.search``) in each
    variable's :func:`variable_name`. Bad input is refused here, before anything is set.
    Decisions are cached per variable, as Keras caches them, so a variable's name is
    read once; unlike Keras's cache (keyed by ``id`` alone), an answer is never given to
    a new variable that happens to reuse a freed one's ``id``.

    >>> from weightwise.variables import Variable
    >>> rule = DecayExclusion(var_names=["bias", "norm$"])
    >>> [rule.decays(Variable(torch.zeros(1), name=n)) for n in ("kernel", "bias", "layer_norm")]
    [True, False, False]
    """

    def __init__(self, var_list: Iterable[torch.Tensor] | None = None, var_names: Iterable[str] | None = None) -> None:
        self._variables = _checked_variables(var_list)  # kept, so that the ids below stay theirs
        self._ids = {id(v) for v in self._variables}
        self._pattern = _checked_pattern(var_names)
        self._cache: dict[int, tuple[weakref.ref[torch.Tensor], bool]] = {}

    @property
    def excludes_any(self) -> bool:
        """Whether anything is left out at all."""
        return bool(self._ids) or self._pattern is not None

    def decays(self, variable: torch.Tensor) -> bool:
        """Whether ``variable`` decays: neither listed nor found by a name pattern."""
        key = id(variable)
        cached = self._cache.get(key)
        if cached is not None and cached[0]() is variable:
            return cached[1]
        verdict = key not in self._ids and (
            self._pattern is None or self._pattern.search(variable_name(variable)) is None
        )
        self._cache[key] = (weakref.ref(variable), verdict)
        return verdict


def _checked_variables(var_list: Any) -> list[torch.Tensor]:
    if var_list is None:
        return []
    if isinstance(var_list, torch.Tensor) or not isinstance(var_list, Iterable) or isinstance(var_list, (str, bytes)):
        raise TypeError(
            "Invalid value for argument `var_list`: expected a list of variables (tensors). "
            f"Received: var_list={echo(var_list)}"
        )
    variables = list(var_list)
    bad = [v for v in variables if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(
            "Invalid value for argument `var_list`: every item must be a variable (a tensor). "
            f"Received an item of type {type(bad[0]).__name__}: var_list={echo(var_list)}"
        )
    return variables


def _checked_pattern(var_names: Any) -> re.Pattern[str] | None:
    if var_names is None:
        return None
    # A string is a list of its characters to Keras ("bias" would exclude every name with an a, b, i
    # or s); its documentation asks for a list of strings, and so do we.
    if isinstance(var_names, (str, bytes)) or not isinstance(var_names, Iterable):
        raise TypeError(
            "Invalid value for argument `var_names`: expected a list of strings (regular expressions), such as "
            f"['bias']. Received: var_names={echo(var_names)}"
        )
    names = list(var_names)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(
            "Invalid value for argument `var_names`: every item must be a string (a regular expression). "
            f"Received an item of type {type(bad[0]).__name__}: var_names={echo(var_names)}"
        )
    if not names:
        return None
    joined = "|".join(dict.fromkeys(names))
    try:
        return re.compile(joined)
    except re.error as error:
        raise ValueError(
            f"Invalid value for argument `var_names`: {joined!r} is not a regular expression ({error}). "
            f"Received: var_names={echo(var_names)}"
        ) from None
