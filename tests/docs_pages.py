"""The documentation's code blocks, read from its Markdown pages and run as one script per page.

Rules every page follows, so each runs top to bottom in CI:

- a ```` ```python ```` block runs, in order, in one fresh interpreter per page;
- a ```` ```python title="train.py" ```` block is a file: it is written to that name in the
  page's working folder, not run where it stands;
- a ```` ```bash ```` block runs in that folder, at its place in the page;
- a ```` ```text ```` block is a listing, and does not run; one titled ``output``
  (```` ```text title="output" ````) right after a Python or shell block is what it prints,
  and :func:`check_outputs` holds the page to it;
- no other kind of block exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
KINDS = {"python", "bash", "text"}

_FENCE = re.compile(r"^```(\S*)(.*)$")
_TITLE = re.compile(r'title="([^"]+)"')


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its ``title=`` file name if any, its code, its first line."""

    kind: str
    title: str | None
    code: str
    line: int


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order. Fences must start at the left margin."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        kind, rest = match.group(1), match.group(2)
        title = _TITLE.search(rest)
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: a code block is never closed")
        found.append(Block(kind, title.group(1) if title else None, "\n".join(lines[i + 1:end]) + "\n", i + 2))
        i = end + 1
    return found


MARK = "\x1e docs block "


def script(page: Path, *, run_bash: bool = True) -> str:
    """The page as one Python script: its Python blocks, its files written, its shell commands run.

    Before each Python or shell block it prints a mark with the block's line, so that each
    block's own output can be cut out of the whole (:func:`outputs`).
    """
    parts = ["import pathlib as _pathlib, subprocess as _subprocess\n"]
    for block in blocks(page):
        where = f"# {page.name}:{block.line}\n"
        if block.kind not in KINDS:
            raise ValueError(f"{page}:{block.line - 1}: a block of kind {block.kind!r}; the pages use {sorted(KINDS)}")
        if block.kind == "python" and block.title:
            parts.append(f"{where}_pathlib.Path({block.title!r}).write_text({block.code!r})\n")
        elif block.kind == "python":
            parts.append(f"{where}print({MARK + str(block.line)!r}, flush=True)\n{block.code}")
        elif block.kind == "bash" and run_bash:
            parts.append(f"{where}print({MARK + str(block.line)!r}, flush=True)\n"
                         f"_subprocess.run({block.code!r}, shell=True, check=True, executable='/bin/bash')\n")
    return "\n".join(parts)


def run(page: Path, workdir: Path, *, run_bash: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a page's script in ``workdir`` with this interpreter; the result, with its output."""
    path = workdir / "page.py"
    path.write_text(script(page, run_bash=run_bash))
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run([sys.executable, str(path)], cwd=workdir, env=env, capture_output=True, text=True, check=False,
                          timeout=timeout)


def outputs(stdout: str) -> dict[int, str]:
    """What each block that runs printed, by the block's first line, from a run's standard output."""
    found: dict[int, str] = {}
    for chunk in stdout.split(MARK)[1:]:
        line, _, printed = chunk.partition("\n")
        found[int(line)] = printed
    return found


def check_outputs(page: Path, stdout: str) -> list[str]:
    """The page's ``output`` blocks that differ from what the block before each one printed."""
    printed = outputs(stdout)
    wrong = []
    previous = None
    for block in blocks(page):
        if block.kind == "text" and block.title == "output":
            if previous is None or previous.kind not in {"python", "bash"} or previous.title:
                wrong.append(f"{page.name}:{block.line}: an output block must follow a block that runs")
            elif printed.get(previous.line, "").strip() != block.code.strip():
                wrong.append(f"{page.name}:{block.line}: the page shows\n{block.code}but the code printed\n"
                             f"{printed.get(previous.line, '')}")
        previous = block
    return wrong


def python_block(page: Path, marker: str) -> str:
    """The code of the page's one inline Python block that contains ``marker``.

    Tests that check what an example does pick it this way, by a string it holds, so that
    blocks added around it do not move them onto another example.
    """
    found = [b.code for b in blocks(page) if b.kind == "python" and not b.title and marker in b.code]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} Python blocks of {page.name} contain {marker!r}")
    return found[0]
