"""Paths that may be local or remote (gs://, s3://, memory://...).

Everything that touches data goes through fsspec here, never bare `open`, so a
work directory or a dataset can live on cloud storage. Remote protocols need
their fsspec backend installed (`pip install 'birdclef[gcs]'` for gs://).
"""
from __future__ import annotations

import errno
import json
import os
import posixpath
from typing import Iterable

import fsspec


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *[str(p) for p in parts])
    return os.path.join(base, *[str(p) for p in parts])


def _fs(path: str):
    fs, p = fsspec.core.url_to_fs(str(path))
    return fs, p


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def size(path: str) -> int:
    fs, p = _fs(path)
    return int(fs.size(p))


def makedirs(path: str) -> None:
    fs, p = _fs(path)
    fs.makedirs(p, exist_ok=True)


def remove(path: str) -> None:
    fs, p = _fs(path)
    fs.rm(p)


def remove_tree(path: str) -> None:
    """Delete a directory and everything in it, if it exists."""
    fs, p = _fs(path)
    if fs.exists(p):
        fs.rm(p, recursive=True)


def rename(src: str, dst: str) -> None:
    """Move a file within one filesystem (a rename on local disk, copy + delete on object stores)."""
    fs, s = _fs(src)
    fs.mv(s, _fs(dst)[1])


def open_file(path: str, mode: str = "rb", **kw):
    """Open a local or remote file (a context manager)."""
    return fsspec.open(str(path), mode, **kw)


def read_text(path: str) -> str:
    with open_file(path, "r", encoding="utf-8") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file so that a reader (or a rerun after a crash or a full disk) never finds half of
    it: a temp file beside it, then a rename (local disk); object stores publish a whole object on
    close anyway. On failure the temp file is removed and the old file, if any, is left as it was."""
    if is_remote(path):
        parent = dirname(path)
        if parent:
            makedirs(parent)
        with open_file(path, "wb") as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise_naming(e, path)
        raise


def raise_naming(e: OSError, path: str):
    """Raise the error of a write to `path` (call it in the except clause): a full disk fails the write
    with an error that names no file, raised again naming `path`, as the user needs to know which disk
    filled up; any other error unchanged."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and not e.filename:
        raise OSError(e.errno, e.strerror, path) from e
    raise e


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _strict(v):
    """NaN (an undefined metric) -> None, recursively."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v


def write_json(path: str, obj) -> None:
    """Strict JSON for tools outside Python: an undefined value (NaN, e.g. precision with
    no detections) is written as null, never as the non-standard NaN."""
    import json

    write_text(path, json.dumps(_strict(obj), indent=2, allow_nan=False))


def write_text_atomic(path: str, text: str) -> None:
    """Every write_text is atomic now (see write_bytes); kept for the callers that say so."""
    write_text(path, text)


def read_json(path: str):
    """The JSON in `path`, or None when the file is missing, empty or cut short (a bookkeeping file
    left half-written by an older version or a crash): the caller redoes what it recorded."""
    if not exists(path):
        return None
    try:
        return json.loads(read_text(path))
    except (ValueError, UnicodeDecodeError):
        return None


def dirname(path: str) -> str:
    return posixpath.dirname(path) if is_remote(path) else os.path.dirname(path)


def basename(path: str) -> str:
    return posixpath.basename(str(path).rstrip("/"))


def glob(pattern: str) -> list[str]:
    """Sorted matches, with the protocol kept for remote paths."""
    fs, p = _fs(pattern)
    found = sorted(fs.glob(p))
    if is_remote(pattern):
        proto = str(pattern).split("://", 1)[0]
        return [f"{proto}://{f}" if "://" not in f else f for f in found]
    return found


def list_files(root: str, suffixes: Iterable[str]) -> list[str]:
    """All files under root (recursively) whose name ends with one of suffixes."""
    suffixes = tuple(s.lower() for s in suffixes)
    fs, p = _fs(root)
    if not fs.isdir(p):
        return []
    out = [f for f in fs.find(p) if f.lower().endswith(suffixes)]
    if is_remote(root):
        proto = str(root).split("://", 1)[0]
        out = [f"{proto}://{f}" for f in out]
    return sorted(out)


def read_jsonl(pattern: str) -> list[dict]:
    """Every JSON object of every file matching `pattern` (one object per line; e.g. Beam shards)."""
    rows = []
    for p in glob(pattern):
        rows += [json.loads(line) for line in read_text(p).splitlines() if line.strip()]
    return rows


def absolute(path: str) -> str:
    """A local path made absolute (the same file from any working folder); a remote URL as it is."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def relpath(path: str, root: str) -> str:
    """`path` relative to `root`, with '/' separators (local or remote)."""
    if is_remote(path):
        return str(path)[len(str(root).rstrip("/")) + 1:]
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")
