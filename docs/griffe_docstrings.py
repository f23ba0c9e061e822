"""Reads the package's docstrings as the reference pages show them.

The docstrings are written for ``help()`` and doctest: reST roles (``:func:`x```), double
backquotes and bare ``>>>`` sessions. Markdown would show the roles verbatim and turn
``>>>`` into nested quotes, so this extension rewrites each docstring before it is parsed:
a role on a documented name becomes a link, any other role becomes code, and each doctest
session, and each reST table, becomes a fenced block.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+?)``")
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


class Docstrings(griffe.Extension):
    """Turns reST roles and doctest sessions into Markdown."""

    def __init__(self) -> None:
        # The reference has one page per public module, named after it: those pages, and the
        # names in each module's ``__all__``, are exactly the anchors a link can land on.
        pages = sorted(Path(__file__).parent.joinpath("reference").glob("weightwise*.md"))
        self._modules = {page.stem: set(importlib.import_module(page.stem).__all__) for page in pages}

    def _target(self, tilde: str, path: str) -> str:
        shown = path.split(".")[-1] if tilde else path
        # A link only where the reference has an anchor, so a strict build cannot fail on it.
        module, _, name = path.rpartition(".")
        if path in self._modules or name in self._modules.get(module, ()):
            return f"[`{shown}`][{path}]"
        return f"`{shown}`"

    def _prose(self, line: str) -> str:
        line = _ROLE.sub(lambda m: self._target(m.group(1), m.group(2)), line)
        line = _LITERAL.sub(r"`\1`", line)
        # reST's "text::" introduces an indented literal block, which Markdown shows as code anyway.
        return re.sub(r"(?<=\S)::$", ":", line)

    def _convert(self, text: str) -> str:
        """Doctest sessions and reST simple tables become fenced blocks; the rest is prose."""
        out: list[str] = []
        fence: str | None = None  # "session" or "table" while inside one
        borders = 0
        for line in text.splitlines():
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if fence is None and stripped.startswith(">>>"):
                fence, fence_indent = "session", indent
                out += ["", f"{indent}```python"]
            elif fence is None and _BORDER.match(line):
                fence, fence_indent, borders = "table", indent, 0
                out += ["", f"{indent}```text"]
            if fence == "session" and not stripped:
                out += [f"{fence_indent}```", ""]
                fence = None
                continue
            if fence is None:
                out.append(self._prose(line))
                continue
            # In a table, double backquotes become spaces, which keeps the columns aligned.
            out.append(line.replace("``", "  ") if fence == "table" else line)
            if fence == "table" and _BORDER.match(line):
                borders += 1
                if borders == 3:
                    out += [f"{fence_indent}```", ""]
                    fence = None
        if fence is not None:
            out.append(f"{fence_indent}```")
        return "\n".join(out)

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        # Some packages build ``__all__`` in code, which static analysis cannot read, and bind
        # Keras's alternative names by tuple assignment: take both from the imported module.
        if pkg.path != "weightwise":
            return
        for name, exported in self._modules.items():
            module = pkg if name == "weightwise" else pkg[name.removeprefix("weightwise.")]
            runtime = importlib.import_module(name)
            for member in sorted(exported - set(module.members)):
                obj = getattr(runtime, member)
                target = f"{obj.__module__}.{obj.__qualname__}"
                module.set_member(member, griffe.Alias(member, target, parent=module))
            module.exports = sorted(exported)
            for member in exported:
                obj = getattr(runtime, member)
                self._name_alias(module, member, obj)
                if inspect.isclass(obj) and obj.__module__.startswith("weightwise."):
                    self._runtime_properties(pkg, obj)

    def _runtime_properties(self, pkg: Any, cls: type) -> None:
        """Properties a class gets in code (a recurrent layer's views of its cell's arguments)
        are invisible to static analysis: add them, with the docstrings they carry."""
        node = pkg[f"{cls.__module__}.{cls.__qualname__}".removeprefix("weightwise.")]
        for name, value in vars(cls).items():
            if name.startswith("_") or not isinstance(value, property) or not value.__doc__:
                continue
            member = node.members.get(name)
            if member is None:
                member = griffe.Attribute(name, parent=node)
                member.labels.add("property")
                node.set_member(name, member)
            if not member.is_alias and member.docstring is None:
                member.docstring = griffe.Docstring(self._convert(inspect.cleandoc(value.__doc__)), parent=member)

    def _name_alias(self, module: Any, member: str, obj: Any) -> None:
        """``l1 = L1``: a second name for a documented class or function, with no docstring
        of its own, gets one that links to where the object is documented."""
        attribute = module.members[member]
        while attribute.is_alias:
            attribute = attribute.final_target
        own_name = getattr(obj, "__name__", None)  # a type alias or a constant has none
        if not attribute.is_attribute or attribute.docstring is not None or own_name is None:
            return
        # The object's own name, in this module if it exports it, else in the first module that does.
        homes = sorted(self._modules.items(), key=lambda item: item[0] != module.path)
        home = next((f"{name}.{own_name}" for name, exported in homes
                     if own_name in exported and getattr(importlib.import_module(name), own_name, None) is obj), None)
        if home is None:
            return
        attribute.docstring = griffe.Docstring(f"Another name for [`{own_name}`][{home}].", parent=attribute)

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = self._convert(obj.docstring.value)
