"""Writing files so that a crash never damages an existing one, and checked reads of archives."""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["atomic_write", "check_path", "check_target", "read_member"]

# Members may be stored or deflated; deflate expands at most ~1032:1, so a member that
# claims far more than that over its stored size is not a genuine file.
_MAX_EXPANSION = 1100
_SMALL_MEMBER = 1 << 20


def check_path(filepath: Any, argument: str = "filepath") -> str:
    """``filepath`` as a str, or a ``TypeError`` naming the argument.

    >>> check_path("model.keras")
    'model.keras'
    """
    if isinstance(filepath, (str, os.PathLike)):
        path = os.fspath(filepath)
        if isinstance(path, str) and path:
            return path
    raise TypeError(f"`{argument}` must be a non-empty path (str or os.PathLike). Received: {argument}={filepath!r}")


def check_target(filepath: Any, overwrite: bool) -> str:
    """``filepath`` as a str, refusing to replace an existing file when ``overwrite`` is False.

    >>> check_target("new-file.keras", overwrite=False)
    'new-file.keras'
    """
    path = check_path(filepath)
    if not isinstance(overwrite, bool):
        raise TypeError(f"`overwrite` must be a bool. Received: overwrite={overwrite!r}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path!r} exists and overwrite=False; nothing was written.")
    return path


@contextmanager
def atomic_write(path: str) -> Iterator[IO[bytes]]:
    """Yield a binary stream whose contents replace ``path`` only once fully written.

    The data goes to a temporary file beside ``path``, is flushed to disk, then renamed
    over ``path`` in one step. If anything fails before that, the temporary file is
    removed and an existing ``path`` is untouched.

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "data.bin")
    >>> with atomic_write(target) as stream:
    ...     _ = stream.write(b"complete")
    >>> open(target, "rb").read()
    b'complete'
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cannot save to {path!r}: the folder {directory!r} does not exist.")
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_member(archive: zipfile.ZipFile, name: str, source: str) -> bytes:
    """The bytes of member ``name``, with a clear error if it is missing, damaged or implausibly large."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(
            f"{source!r} is not a complete .keras file: it has no {name!r}. It holds {archive.namelist()}."
        ) from None
    if info.file_size > _SMALL_MEMBER and info.file_size > _MAX_EXPANSION * max(info.compress_size, 1):
        raise ValueError(
            f"{source!r}: member {name!r} declares {info.file_size} bytes but stores only {info.compress_size}; "
            "refusing to expand it (a damaged file or a decompression bomb)."
        )
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
        raise ValueError(f"{source!r} is damaged: reading {name!r} failed ({error}).") from error
