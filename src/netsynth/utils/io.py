"""Atomic writes: a reader never sees a half-written output file.

Everything netsynth writes goes to a temporary name in the destination's folder and is renamed into
place only when complete (`os.replace` is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from netsynth.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _follow_umask(tmp_path, 0o666)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _follow_umask(path: Path, mode: int) -> None:
    """Give a finished temporary the permissions a plain `open` would have (mkstemp/mkdtemp use 0600/0700,
    which left exported pcaps unreadable to the tcpreplay user and reports unreadable to colleagues)."""
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~mask)


def check_replaceable_dir(path: str | os.PathLike, marker: str) -> None:
    """Refuse an output folder that exists but is not a previous output (it has no `marker` file).

    Why: replacing a folder is how an output is updated atomically, and a typo in `-o` (a data folder,
    an existing file) must not delete the user's data.
    """
    dest = Path(path)
    if not dest.exists():
        return
    if not dest.is_dir():
        raise InputError(f"{dest}: exists and is a file; choose another output folder")
    if any(dest.iterdir()) and not (dest / marker).exists():
        raise InputError(f"{dest}: exists, is not empty and has no {marker}; choose another output folder "
                         "or remove it")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds.

    With `marker`, an existing `path` is replaced only if it is empty or holds that file (see
    `check_replaceable_dir`); the check runs before the block, so no work is wasted.
    """
    if marker is not None:
        check_replaceable_dir(path, marker)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _follow_umask(tmp, 0o777)
        for child in tmp.rglob("*"):
            _follow_umask(child, 0o777 if child.is_dir() else 0o666)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
