"""Files that behave like files: checked paths, atomic writes, and bounded reads.

Writing goes through :func:`atomic_write`: the data lands in a temporary file beside
the target and is renamed over it only once complete, so a crash never damages an
existing file. Otherwise a save behaves as a plain ``open(path, "wb")`` would: it
writes through a symbolic link to its target, a new file gets the permissions the
umask gives (``0o666 & ~umask``), an overwritten one keeps its mode, and a read-only
file, a folder that is missing, not writable or cannot be searched each raise their
own error, naming the path, before anything is serialized.

Reading goes through :func:`open_regular`, which refuses anything but a regular file
(a FIFO would block forever, a device such as ``/dev/zero`` never ends), and the
readers bound what they read by the file's real size.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["atomic_write", "check_path", "check_target", "open_regular", "parse_json", "read_member", "stream_size"]

# Members may be stored or deflated; deflate expands at most ~1032:1, so a member that
# claims far more than that over its stored size is not a genuine file.
_MAX_EXPANSION = 1100
_SMALL_MEMBER = 1 << 20
# Deeper JSON than any config needs; well inside what Python's parser can take without a RecursionError.
MAX_JSON_DEPTH = 500
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_path(filepath: Any, argument: str = "filepath") -> str:
    """``filepath`` as a str: a ``TypeError`` naming the argument for anything but a non-empty str
    or ``os.PathLike`` of str, a ``ValueError`` for one with a NUL character.

    >>> check_path("model.keras")
    'model.keras'
    >>> check_path(b"model.keras")
    Traceback (most recent call last):
    ...
    TypeError: Invalid type for argument `filepath`: expected a non-empty path (str or os.PathLike of str). Received: filepath=b'model.keras'
    """
    path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise TypeError(
            f"Invalid type for argument `{argument}`: expected a non-empty path (str or os.PathLike of str). "
            f"Received: {argument}={filepath!r}"
        )
    if "\0" in path:  # as open() refuses it
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected a path without NUL characters. "
            f"Received: {argument}={filepath!r}"
        )
    return path


def _access(path: str, mode: int) -> bool:
    # The effective ids are the ones open() is checked against.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _not_regular(path: str, mode: int, argument: str = "filepath") -> OSError | ValueError:
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, f"Invalid value for argument `{argument}`: {path!r} is a directory, "
                                 f"not a file. Received: {argument}={path!r}")
    return ValueError(f"Invalid value for argument `{argument}`: expected a regular file, but {path!r} is "
                      f"{_kind(mode)}; it is neither read nor replaced. Received: {argument}={path!r}")


def _check_folder(path: str, directory: str) -> None:
    """Raise the error a write into ``directory`` would meet, naming the folder at fault."""
    parts = []
    head = directory
    while True:
        parts.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for folder in reversed(parts):
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"Cannot save to {path!r}: the folder {directory!r} does not exist "
                f"({folder!r} is missing).") from None
        except PermissionError:
            # Only reachable when an ancestor cannot be searched, which the loop reports first.
            raise PermissionError(
                errno.EACCES, f"Cannot save to {path!r}: the folder {folder!r} cannot be reached.") from None
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"Cannot save to {path!r}: {folder!r} is not a folder.")
        if not _access(folder, os.X_OK):
            raise PermissionError(
                errno.EACCES, f"Cannot save to {path!r}: the folder {folder!r} cannot be searched (no execute "
                "permission), so nothing inside it can be reached.")
    if not _access(directory, os.W_OK):
        raise PermissionError(errno.EACCES, f"Cannot save to {path!r}: the folder {directory!r} is not writable.")


def _target(path: str) -> tuple[str, os.stat_result | None]:
    """The file a write to ``path`` lands in (symbolic links followed) and its status if it exists.

    Raises the error a plain ``open(path, "wb")`` would meet, with a message naming the path.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        info: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        info = None
    except (PermissionError, NotADirectoryError):
        _check_folder(path, directory)  # names the folder at fault
        raise
    except OSError as error:  # a loop of symbolic links, a name too long, ...
        raise type(error)(error.errno, f"Cannot save to {path!r}: {error.strerror}.") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)
    _check_folder(path, directory)
    if info is not None and not _access(target, os.W_OK):
        shown = repr(path) if target == os.path.abspath(path) else f"{path!r} (a link to {target!r})"
        raise PermissionError(errno.EACCES, f"Cannot save to {shown}: the file is read-only; it was left as it is.")
    return target, info


def check_target(filepath: Any, overwrite: bool) -> str:
    """``filepath`` as a str, once a save to it is known to be possible.

    Refuses to replace an existing file when ``overwrite`` is False
    (``FileExistsError``), and raises the error a write would meet (see the module
    docstring) before anything is serialized.

    >>> check_target("new-file.keras", overwrite=False)
    'new-file.keras'
    """
    path = check_path(filepath)
    if not isinstance(overwrite, bool):
        raise TypeError(f"Invalid type for argument `overwrite`: expected a bool. Received: overwrite={overwrite!r}")
    # As Keras: a dangling symbolic link is no file yet, and the save creates its target.
    if not overwrite and os.path.exists(path):
        raise FileExistsError(errno.EEXIST, f"{path!r} exists and overwrite=False; nothing was written.")
    _target(path)
    return path


def _temporary_beside(target: str) -> tuple[int, str]:
    directory, name = os.path.split(target)
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            # 0o666: the kernel applies the umask (and any default ACL) exactly as for open(path, "wb").
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"Cannot create a temporary file beside {target!r}.")


@contextmanager
def atomic_write(path: str) -> Iterator[IO[bytes]]:
    """Yield a binary stream whose contents replace ``path`` only once fully written.

    The data goes to a temporary file beside ``path`` (beside its target, for a
    symbolic link), is flushed to disk, then renamed over it in one step. If anything
    fails before that, the temporary file is removed and an existing file is
    untouched. The file ends up with the mode a plain write gives: ``0o666 & ~umask``
    when new, its old mode when replaced.

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "data.bin")
    >>> with atomic_write(target) as stream:
    ...     _ = stream.write(b"complete")
    >>> open(target, "rb").read()
    b'complete'
    """
    target, existing = _target(check_path(path))
    handle, temporary = _temporary_beside(target)
    try:
        with os.fdopen(handle, "wb") as stream:
            if existing is not None:
                _take_over(stream.fileno(), existing)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise
    _sync_folder(os.path.dirname(target))


def _take_over(handle: int, existing: os.stat_result) -> None:
    """Give the new file the mode (and, where allowed, the owner) of the one it replaces, as a write in place keeps them."""
    if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:  # only privileged users may give a file away; anyone else keeps the file as their own
            os.fchown(handle, existing.st_uid, existing.st_gid)
        except OSError:
            pass
    if hasattr(os, "fchmod"):
        os.fchmod(handle, stat.S_IMODE(existing.st_mode))


def _sync_folder(directory: str) -> None:
    # Makes the rename itself durable; some file systems do not allow it, which costs only durability.
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def open_regular(filepath: Any, argument: str = "filepath") -> IO[bytes]:
    """Open ``filepath`` for reading, refusing anything but a regular file.

    A missing file is a ``FileNotFoundError``, a directory an ``IsADirectoryError``,
    and a FIFO, device or socket a ``ValueError``, each naming the path: such files
    are checked before they are opened (opening some devices has effects), and the
    opened file is checked again, so a swap in between is caught.

    >>> open_regular("/dev/zero")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `filepath`: expected a regular file, but '/dev/zero' is a character device; it is neither read nor replaced. Received: filepath='/dev/zero'
    """
    path = check_path(filepath, argument)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"No such file: {path!r}", path) from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode, argument)
    # O_NONBLOCK: should a FIFO be swapped in after the check, opening it must not wait for a writer.
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        opened = os.fstat(handle)
        if not stat.S_ISREG(opened.st_mode):
            raise _not_regular(path, opened.st_mode, argument)
        return os.fdopen(handle, "rb")
    except BaseException:
        os.close(handle)
        raise


def stream_size(stream: Any) -> int | None:
    """The size of a seekable binary stream (its position kept), or ``None`` if it has none.

    >>> import io
    >>> stream = io.BytesIO(b"12345")
    >>> _ = stream.seek(2)
    >>> stream_size(stream), stream.tell()
    (5, 2)
    """
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        pass
    try:
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return int(end)
    except (AttributeError, OSError, ValueError):
        return None


def read_member(archive: zipfile.ZipFile, name: str, source: str, size: int | None = None) -> bytes:
    """The bytes of member ``name``, with a clear error if it is missing, damaged or implausibly
    large: larger, stored, than the archive's ``size``, or expanding beyond what deflate can.

    >>> import io
    >>> stream = io.BytesIO()
    >>> with zipfile.ZipFile(stream, "w") as archive:
    ...     archive.writestr("config.json", "{}")
    >>> read_member(zipfile.ZipFile(stream), "config.json", "model.keras", size=len(stream.getvalue()))
    b'{}'
    >>> read_member(zipfile.ZipFile(stream), "model.weights.h5", "model.keras")
    Traceback (most recent call last):
    ...
    ValueError: 'model.keras' is not a complete .keras file: it has no 'model.weights.h5'. It holds ['config.json'].
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(
            f"{source!r} is not a complete .keras file: it has no {name!r}. It holds {archive.namelist()}."
        ) from None
    if size is not None and info.compress_size > size:
        raise ValueError(
            f"{source!r} is damaged: member {name!r} declares {info.compress_size} stored bytes, more than the "
            f"whole file ({size} bytes)."
        )
    if info.file_size > _SMALL_MEMBER and info.file_size > _MAX_EXPANSION * max(info.compress_size, 1):
        raise ValueError(
            f"{source!r}: member {name!r} declares {info.file_size} bytes but stores only {info.compress_size}; "
            "refusing to expand it (a damaged file or a decompression bomb)."
        )
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as error:
        raise ValueError(f"{source!r} is damaged: reading {name!r} failed ({error}).") from error


def parse_json(data: bytes | str, what: str) -> Any:
    """Parse JSON, with a ``ValueError`` naming ``what`` for text that is not JSON, not UTF-8,
    or nested deeper than ``MAX_JSON_DEPTH`` levels (which would otherwise end in a
    ``RecursionError``).

    >>> parse_json(b'{"a": [1, 2]}', "config.json")
    {'a': [1, 2]}
    >>> parse_json("[" * 1000 + "]" * 1000, "config.json")
    Traceback (most recent call last):
    ...
    ValueError: config.json is nested more than 500 levels deep; no genuine config is. Refusing to parse it.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = 0
    for token in _JSON_TOKENS.finditer(raw):
        symbol = token.group()
        if symbol in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(
                    f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; no genuine config is. "
                    "Refusing to parse it."
                )
        elif symbol in (b"]", b"}"):
            depth -= 1
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{what} is not valid JSON ({type(error).__name__}: {error}).") from error
