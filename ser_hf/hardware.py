"""What the machine can do fast: native bf16 arithmetic, checked rather than assumed."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: CPU features that give native bf16 dot products (oneDNN runs bf16 matmuls on them at a multiple of fp32's rate).
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (torch's own CPU probe, else /proc/cpuinfo; empty when neither is readable)."""
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is not None:
        try:
            return frozenset(name for name, present in probe().items() if present is True)
        except Exception:  # a private API: fall back to the kernel's view
            logger.debug("torch CPU capability probe failed", exc_info=True)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products natively (AMX-BF16 or AVX512-BF16), not by emulation."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_CPU_FLAGS)


def default_device() -> torch.device:
    """Where ser-hf computes by default: the CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: str | torch.device | None = None) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (default: CUDA when available, else the CPU)."""
    kind = torch.device(device).type if device is not None else default_device().type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if kind == "cpu":
        return cpu_has_native_bf16()
    return False
