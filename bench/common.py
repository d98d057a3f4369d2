"""What every benchmark prints first and needs: the date, the machine, the versions, the command; real data
found or a clean skip; Markdown tables."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path


def environment(extra: Sequence[str] = ()) -> str:
    """One paragraph: when, on what, with which versions (``extra``: more packages), and the command that printed
    the figures."""
    import torch

    if torch.cuda.is_available():
        device = f"GPU {torch.cuda.get_device_name(0)}"
    else:
        model = ""
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        device = f"CPU, {os.cpu_count()} cores{f' ({model})' if model else ''}, {torch.get_num_threads()} torch threads"
    versions = []
    for name in ("ser-hf", "torch", "transformers", "datasets", *extra):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    load = ""
    if hasattr(os, "getloadavg"):
        load = f"; load average {os.getloadavg()[0]:.1f} at the start"
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    return (
        f"{datetime.date.today().isoformat()}; {device}{load}; Python {platform.python_version()}, "
        f"{', '.join(versions)}\ncommand: {command}"
    )


def missing(*paths: str | os.PathLike) -> str | None:
    """A message naming the first path that does not exist (real data and weights live in ../shared)."""
    for path in paths:
        if not Path(path).exists():
            return f"skipped: {path} not found (real data and weights live in ../shared)"
    return None


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def target(text: str, met: bool) -> str:
    return f"  [{'met' if met else 'NOT met'}] {text}"
