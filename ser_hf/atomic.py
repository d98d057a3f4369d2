"""Atomic saves: a model folder is either the old one or the new one, never half-written.

`atomic_directory` stages the new files in a hidden sibling folder. Everything in the target that
is not part of a model (checkpoint folders, metrics, logs) is hard-linked into the staged folder,
which then takes the target's place in one atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``).
A process killed at any point leaves the complete old folder or the complete new one.

Where the exchange is unavailable (other systems, some network file systems) the swap takes two
renames, and a kill between them leaves the old folder under a hidden name that the next save or
load puts back (`recover`). Where hard links are unavailable, files are moved in one by one with
``config.json`` (`COMMIT_FILE`) removed first and written last, so a half-merged folder is refused
as "an interrupted save" instead of loading a mix.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Written last and removed first when a save has to merge into a folder file by file: a model
#: folder without it is not a model.
COMMIT_FILE = "config.json"
#: Files that belong to a saved model: replaced as a set, never carried over from the old model
#: (a stale ``model.safetensors`` beside new shards would be loaded instead of them).
MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "*.bin.index.json",
    "README.md",
    "confusion_matrix.png",  # the model card's figure (ser_hf.model_card.CONFUSION_PNG)
)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system or file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(a), None, os.fspath(b))


def is_model_file(relative: str) -> bool:
    """Whether a top-level file name belongs to a saved model (see `MODEL_FILE_PATTERNS`)."""
    return "/" not in relative and any(fnmatch.fnmatch(relative, pattern) for pattern in MODEL_FILE_PATTERNS)


# ----------------------------------------------------------------------------- leftovers
def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _leftover_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}\.(partial|old)-(.+)-(\d+)-[A-Za-z0-9_]+")


def _is_dead(host: str, pid: int) -> bool:
    """Whether the process that owned a leftover is gone (only knowable for this host)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def recover(target: str | os.PathLike, *, clean: bool = True) -> Path | None:
    """Clean up after saves into ``target`` that were killed; returns the restored folder, if any.

    A missing ``target`` with an old copy left between the two renames of a fallback swap gets that
    copy back. With ``clean``, leftover folders of dead processes (on this host) are deleted.
    """
    target = Path(target).absolute()
    if not target.parent.is_dir():
        return None
    pattern = _leftover_pattern(target)
    restored = None
    leftovers = []
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and _is_dead(match.group(2), int(match.group(3))):
            leftovers.append((match.group(1), path))
    olds = sorted((p for kind, p in leftovers if kind == "old"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        os.rename(olds[-1], target)
        restored = target
        olds = olds[:-1]
    for kind, path in leftovers if clean else ():
        if kind == "partial" or path in olds:
            shutil.rmtree(path, ignore_errors=True)
    return restored


# ----------------------------------------------------------------------------- the save
def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
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


def _umask() -> int:
    try:  # reading it from /proc avoids the process-wide os.umask(0) window
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _keep_others(target: Path, staged: Path) -> bool:
    """Hard-link what ``target`` holds besides the model into ``staged``; False if hard links fail."""
    for dirpath, dirnames, filenames in os.walk(target):
        relative_dir = Path(dirpath).relative_to(target)
        for name in dirnames + filenames:
            source = Path(dirpath, name)
            relative = (relative_dir / name).as_posix()
            destination = staged / relative
            if destination.exists() or destination.is_symlink() or is_model_file(relative):
                continue
            if source.is_symlink():
                os.symlink(os.readlink(source), destination)
            elif source.is_dir():
                destination.mkdir()
                shutil.copystat(source, destination)
            else:
                try:
                    os.link(source, destination)
                except OSError as err:
                    if err.errno in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                        return False
                    raise
        dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
    return True


def _swap_in(staged: Path, target: Path) -> None:
    """Put ``staged`` in ``target``'s place: one exchange, or two renames where exchange is unsupported."""
    if not target.exists():
        os.rename(staged, target)
    elif exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # the old folder, now under the staging name
    else:
        old = _move_aside(target)  # a kill before the next rename leaves `old`, which `recover` puts back
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)


def _move_aside(target: Path) -> Path:
    """Rename ``target`` to a hidden name that `recover` recognises; returns that name."""
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{_owner()}-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    return old


def _merge_in(staged: Path, target: Path) -> None:
    """Move staged files into ``target`` one by one, with `COMMIT_FILE` as the commit point."""
    (target / COMMIT_FILE).unlink(missing_ok=True)
    _fsync_dir(target)
    for path in target.iterdir():
        if path.is_file() and is_model_file(path.name) and not (staged / path.name).exists():
            path.unlink()
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

    The model files written to the staging folder replace the old model's files as a set (see
    `MODEL_FILE_PATTERNS`); everything else ``target`` holds (checkpoints, metrics, logs) is kept.
    On an exception the staging folder is deleted and ``target`` is left as it was.
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder; cannot save a model there")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{_owner()}-", dir=target.parent))
    try:
        yield staged
        os.chmod(staged, 0o777 & ~_umask())  # mkdtemp makes it private; a model folder is not
        _fsync_tree(staged)
        if target.is_dir() and not _keep_others(target, staged):
            _merge_in(staged, target)
        else:
            _fsync_dir(staged)
            _swap_in(staged, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON through a temporary file and a rename: never a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
