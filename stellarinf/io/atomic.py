"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash mid-write leaves the previous content intact (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path in the target's directory; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files; give the result the permissions a normal open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(path: str | os.PathLike, obj, indent: int = 2) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


@contextlib.contextmanager
def atomic_file_set(paths, *, stale=()):
    """Write several files as one set: yield ``{path: temporary path}`` (temporaries beside their targets);
    on success remove every existing member of the set and every path in ``stale`` (e.g. files of an older
    set that this one does not rewrite), then rename each temporary into place.

    Why: files written one after another by :func:`atomic_path` are each whole, but a kill between them
    leaves a new ``.nc`` beside the previous run's summaries. Here the old set is gone before any new member
    appears, so a kill leaves the old set, part of the new one, or the new one: never a mix. On failure the
    temporaries are removed and the old set is untouched. Temporaries are named ``.<name>.<random>.set.tmp``,
    so :func:`remove_stale_temporaries` can clean up after a kill.
    """
    paths = [Path(p) for p in paths]
    tmps = {}
    try:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".set.tmp", dir=p.parent)
            os.close(fd)
            tmps[p] = Path(tmp)
        yield dict(tmps)
        umask = os.umask(0)
        os.umask(umask)
        for tmp in tmps.values():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~umask)
        for old in [*paths, *map(Path, stale)]:
            if old.exists():
                old.unlink()
        for p, tmp in tmps.items():
            os.replace(tmp, p)
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries a killed :func:`atomic_file_set` / :func:`atomic_path` left for ``path``; returns them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    gone = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone
