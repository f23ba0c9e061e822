"""``get_file``: a file from Keras's download cache, without any network access.

weightwise never downloads. ``get_file`` finds the file where Keras would have cached it
(``~/.keras/datasets/<fname>`` by default, or ``$KERAS_HOME``), checks its hash if one is
given, and extracts it if asked. A file that is not there is a ``FileNotFoundError`` that
names the URL and the path to put the file at.

>>> import tempfile, pathlib
>>> cache = tempfile.mkdtemp()
>>> _ = (pathlib.Path(cache) / "datasets").mkdir()
>>> _ = (pathlib.Path(cache) / "datasets" / "data.csv").write_text("1,2\\n")
>>> get_file(origin="https://example.com/data.csv", cache_dir=cache).endswith("data.csv")
True
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.parse
import zipfile
from typing import Any

from weightwise.arguments import echo, invalid

__all__ = ["get_file"]


def _keras_home() -> str:
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else tempfile.gettempdir(), ".keras")


def _hash(path: str, algorithm: str, file_hash: str) -> tuple[str, str]:
    """(the algorithm used, the file's hex digest): ``auto`` is sha256 for a 64-digit hash, else md5."""
    if algorithm not in ("auto", "sha256", "md5"):
        raise invalid("hash_algorithm", "one of 'auto', 'sha256', 'md5'", algorithm)
    name = "sha256" if algorithm == "sha256" or (algorithm == "auto" and len(file_hash) == 64) else "md5"
    hasher = hashlib.new(name)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            hasher.update(chunk)
    return name, hasher.hexdigest()


def _extract(archive: str, target: str, archive_format: Any) -> bool:
    """Extract ``archive`` into ``target`` if it is one of the formats allowed; whether it was."""
    formats = {"auto": ("tar", "zip"), "tar": ("tar",), "zip": ("zip",), None: ()}.get(archive_format)
    if formats is None:
        formats = tuple(archive_format) if isinstance(archive_format, (list, tuple)) else None
    if formats is None or not set(formats) <= {"tar", "zip"}:
        raise invalid("archive_format", "'auto', 'tar', 'zip', None or a list of 'tar' and 'zip'", archive_format)
    if "tar" in formats and tarfile.is_tarfile(archive):
        with tarfile.open(archive) as handle:
            # The "data" filter refuses members that would land outside `target` (links, absolute paths).
            handle.extractall(target, filter="data")
        return True
    if "zip" in formats and zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            root = os.path.realpath(target)
            for member in handle.namelist():
                if not os.path.realpath(os.path.join(target, member)).startswith(root + os.sep):
                    raise ValueError(f"Refusing to extract {archive!r}: its member {member!r} would land outside "
                                     f"{target!r}.")
            handle.extractall(target)
        return True
    return False


def get_file(
    fname: str | os.PathLike | None = None,
    origin: str | None = None,
    untar: bool = False,
    md5_hash: str | None = None,
    file_hash: str | None = None,
    cache_subdir: str = "datasets",
    hash_algorithm: str = "auto",
    extract: bool = False,
    archive_format: Any = "auto",
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
) -> str:
    """The path of the file Keras's ``get_file`` would download from ``origin``, found in the cache.

    The file is looked for at ``<cache_dir>/<cache_subdir>/<fname>`` (``cache_dir``
    defaults to ``$KERAS_HOME`` or ``~/.keras``; ``fname`` to the last part of the URL).
    With ``file_hash`` (or ``md5_hash``) the file must have that sha256 or md5 digest
    (``hash_algorithm``: ``"auto"`` picks sha256 for 64 hex digits). With ``extract``
    (or ``untar``) the archive is Keras's ``<fname>`` (or ``<fname>_archive``) and is
    extracted, as Keras names it, to the folder whose path is returned. Nothing is
    downloaded: a missing file, a hash mismatch or ``force_download=True`` raise an
    error naming the URL and where to place the file.

    >>> get_file("nothing.npz", origin="https://example.com/nothing.npz", cache_dir=tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: get_file: weightwise does not download files. ...
    """
    if not isinstance(origin, str) or not origin:
        raise invalid("origin", "the URL of the file (a str)", origin)
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    if file_hash is not None and not isinstance(file_hash, str):
        raise invalid("file_hash", "a hex digest (a str)", file_hash, error=TypeError)
    base = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None else _keras_home()
    folder = os.path.join(base, cache_subdir)
    given = os.fspath(fname) if fname is not None else None
    if given and os.sep in given:
        raise invalid("fname", "a file name without a folder (use `cache_dir` for the folder)", fname)
    name = given or os.path.basename(urllib.parse.urlsplit(origin).path)
    if not name:
        raise invalid("fname", f"a file name, since none can be read from origin={origin!r}", fname)
    unpack = bool(extract or untar)
    if unpack and given and "." in name:
        target = os.path.join(folder, name)
        extracted = os.path.join(folder, f"{name[: name.find('.')]}_extracted")
    elif unpack:
        target = os.path.join(folder, f"{name}_archive")
        extracted = os.path.join(folder, name)
    else:
        target = extracted = os.path.join(folder, name)

    def offline(reason: str) -> str:
        return (f"get_file: weightwise does not download files. {reason} Download {origin} yourself and save it as "
                f"{target!r} (or pass `cache_dir` pointing at where it is).")

    if force_download:
        raise FileNotFoundError(offline("`force_download=True` asks for a fresh download."))
    if not os.path.exists(target):
        if unpack and os.path.isdir(extracted):
            return extracted
        raise FileNotFoundError(offline("The file is not in the cache."))
    if file_hash is not None:
        algorithm, digest = _hash(target, hash_algorithm, file_hash)
        if digest != file_hash:
            raise ValueError(offline(f"The cached file's {algorithm} hash is {digest}, not file_hash={file_hash!r}: "
                                     "it is incomplete or outdated."))
    if unpack:
        if not _extract(target, extracted, "tar" if untar else archive_format):
            raise ValueError(f"Invalid value for argument `archive_format`: {target!r} is not an archive of the "
                             f"format(s) asked for. Received: archive_format={echo(archive_format)}")
        return extracted
    return target
