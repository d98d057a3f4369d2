"""Dropout that costs less on a CPU: the same masks' distribution, drawn with fewer random numbers.

PyTorch's CPU dropout draws one random number per element (``bernoulli_``): on a 2-core CPU that is
about a sixth of a wav2vec2-base training step, more than all its attention matrix products. `fast_dropout`
draws 64 random bits per four elements and keeps an element when its 16 bits clear a threshold, so the
keep probability is ``1 - p`` rounded to a multiple of 2**-16 (at most 7.6e-6 off) and the survivors are
scaled by the exact inverse of that probability: the expectation is unchanged, as with ``nn.Dropout``.
It draws from torch's default generator, so `torch.manual_seed` (and `Trainer`'s seed) make it
reproducible.

`FastDropout` is a `TorchFunctionMode`: inside it, every ``F.dropout`` (``nn.Dropout`` modules included)
and every ``F.scaled_dot_product_attention`` with dropout on a CPU tensor takes this path; everything
else, including all CUDA tensors (whose dropout is already fused), is untouched. `SERTrainer` runs each
training step inside it (``--fast_dropout``), except with gradient checkpointing: the autograd engine
recomputes checkpointed layers outside the mode, with torch's own dropout, so their masks would differ
from the forward pass's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

#: Mask resolution: each element's keep decision reads this many random bits.
MASK_BITS = 16
_LEVELS = 1 << MASK_BITS


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """A boolean mask that keeps each element with probability ~``1 - p``, and the scale that keeps the mean."""
    dropped_levels = min(_LEVELS, max(0, round(p * _LEVELS)))
    keep_probability = 1.0 - dropped_levels / _LEVELS
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    bits = words.view(torch.int16)[:n].view(shape)  # uniform over [-2**15, 2**15)
    keep = bits >= dropped_levels - _LEVELS // 2
    return keep, (1.0 / keep_probability if keep_probability > 0 else 0.0)


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale``, saving only the boolean mask for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` with probability ``p`` (see the module docstring)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if p == 0.0:
        return x
    keep, scale = keep_mask(x.shape, p, x.device)
    return _MaskedScale.apply(x, keep, scale)


def _attention_with_fast_dropout(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention``'s reference (math) computation, its dropout drawn by `fast_dropout`.

    On a CPU, SDPA with dropout runs this same math path anyway (its fused kernels need ``dropout_p=0``).
    """
    scale = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeats = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeats, dim=-3), value.repeat_interleave(repeats, dim=-3)
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        length, source = query.shape[-2], key.shape[-2]
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = torch.softmax(scores, dim=-1)
    if attn_mask is not None or is_causal:  # a query that may attend to nothing gets zeros, as in SDPA, not NaN
        weights = weights.masked_fill(torch.isneginf(scores).all(dim=-1, keepdim=True), 0.0)
    weights = fast_dropout(weights, dropout_p)
    return torch.matmul(weights, value)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else default)


class FastDropout(TorchFunctionMode):
    """Within this mode, CPU dropout (``F.dropout`` and SDPA's ``dropout_p``) draws its masks with `fast_dropout`."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            x = args[0] if args else kwargs["input"]
            p = float(_argument(args, kwargs, 1, "p", 0.5))
            training = _argument(args, kwargs, 2, "training", True)
            inplace = _argument(args, kwargs, 3, "inplace", False)
            if training and not inplace and 0.0 < p < 1.0 and x.device.type == "cpu":
                return fast_dropout(x, p)
        elif func is F.scaled_dot_product_attention:
            query = args[0] if args else kwargs["query"]
            if float(kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)) > 0 and query.device.type == "cpu":
                return _attention_with_fast_dropout(*args, **kwargs)
        return func(*args, **kwargs)


def fast_dropout_pays(device: torch.device | str) -> bool:
    """Whether `FastDropout` speeds up training on ``device``: on a CPU (CUDA's dropout is already fused)."""
    return torch.device(device).type == "cpu"
