"""One module per family of peers. Each exposes ``setup(peer, spec, reg, x, y, steps) -> Trial``.

A peer module is imported only inside its child process, after the environment
(``KERAS_BACKEND``, thread counts, ``XLA_FLAGS``) has been set by the parent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Unavailable(Exception):
    """The peer cannot run here (a missing dependency, an unsupported option); not a failure."""


@dataclass
class Trial:
    """A ready model: ``epoch()`` trains ``steps`` batches; ``warmup()`` does the same the first time."""

    epoch: Callable[[], Any]
    warmup: Callable[[], Any] | None = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def run_warmup(self) -> None:
        (self.warmup or self.epoch)()
