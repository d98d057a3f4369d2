"""Atomic saves: a model folder is either the old one, the new one, or absent; never half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Written last and removed first when a save has to merge into a folder that holds other things
#: (e.g. a training output folder with checkpoints): a model folder without it is not a model.
COMMIT_FILE = "config.json"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _swap_in(staged: Path, target: Path) -> None:
    """Replace ``target`` by ``staged`` with renames (the old folder survives until the new one is in)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, target)


def _merge_in(staged: Path, target: Path) -> None:
    """Move staged files into a folder that holds other things, with `COMMIT_FILE` as the commit point."""
    (target / COMMIT_FILE).unlink(missing_ok=True)
    _fsync_dir(target)
    for path in sorted(staged.rglob("*")):
        relative = path.relative_to(staged)
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
        elif relative.as_posix() != COMMIT_FILE:
            os.replace(path, target / relative)
    _fsync_dir(target)
    if (staged / COMMIT_FILE).exists():
        os.replace(staged / COMMIT_FILE, target / COMMIT_FILE)
    shutil.rmtree(staged, ignore_errors=True)


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it becomes ``target`` atomically.

    A folder that holds only files is swapped whole by renames. A folder that also holds
    sub-folders (a training output folder with ``checkpoint-*``) is merged file by file, with
    ``config.json`` removed first and written last. On an exception the staging folder is deleted
    and ``target`` is left as it was.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staged
        _fsync_tree(staged)
        holds_folders = target.is_dir() and any(p.is_dir() for p in target.iterdir())
        if holds_folders:
            _merge_in(staged, target)
        else:
            _swap_in(staged, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
