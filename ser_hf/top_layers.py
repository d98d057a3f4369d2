"""Phase 2 of training: the top encoder layers and the head, fine-tuned on cached inputs.

The frozen lower part of the encoder gives the same output for a clip at every epoch, so ser-hf runs it
once (`ser_hf.encoding.encode_corpus` keeps the input of the first trainable layer, ``hidden_state``, and
the statistics of the layers below it) and fine-tunes only what is above. `TopLayers` is that model: a
copy of the top ``n`` encoder layers (and the encoder's final layer norm where it follows them) under the
phase-1 head, computing exactly what the whole model computes from raw audio, so `export_top` puts its
weights back into the encoder and the saved model predicts from audio what it predicted from the cache.
`replay_check` verifies that on the actual backbone before any training.

`CachedClips` serves the cached rows to `transformers.Trainer`, and `CachedCollator` pads them into
batches, with SpecAugment-style time masking on the hidden states in training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import SerHfError
from .features import AudioCollator, min_input_samples
from .heads import StatsHead, WeightedLayerHead, export_stats_model, export_weighted_model
from .layer_stats import LayerStatsForAudioClassification, masked_mean_std
from .modeling import encoder_layers, encoder_of, is_whisper

#: Largest difference accepted between the replayed top layers and the encoder's own hidden states.
REPLAY_TOLERANCE = 1e-4


def _final_norm(model: nn.Module) -> nn.Module | None:
    encoder = encoder_of(model)
    stack = getattr(encoder, "encoder", encoder)
    norm = getattr(stack, "layer_norm", None)
    return norm if isinstance(norm, nn.Module) else None


class TopLayers(nn.Module):
    """Encoder layers ``first_layer`` and up, and the head, on cached inputs of layer ``first_layer``.

    ``forward(hidden_state, lower, positions, labels=None, allowed=None, weight=None)``: ``hidden_state``
    ``(batch, positions, hidden)`` padded, ``lower`` the pooled features of the frozen hidden states below
    (``(batch, first_layer, ...)``, the head's pooling), ``positions`` each clip's real positions. ``pooling``
    is the head's: ``"stats"`` (mean and std over the real frames, a `StatsHead`) or ``"window"`` (the mean
    over the model's whole input, a `WeightedLayerHead`).
    """

    def __init__(self, model: nn.Module, first_layer: int, head: nn.Module, *, norm_after: bool | None = None):
        super().__init__()
        self.whisper = is_whisper(model)
        self.config = model.config
        self.first_layer = int(first_layer)
        self.layers = copy.deepcopy(encoder_layers(model)[first_layer:])
        norm = _final_norm(model)
        if norm_after is None:
            norm_after = self.whisper
        self.final_norm = copy.deepcopy(norm) if norm_after and norm is not None else None
        self.head = copy.deepcopy(head)
        self.pooling = "stats" if isinstance(head, StatsHead) else "window"
        if not isinstance(head, (StatsHead, WeightedLayerHead)):
            raise TypeError(f"the head must be a StatsHead or a WeightedLayerHead, not {type(head).__name__}")

    def _mask(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        if self.whisper or bool((positions == hidden.shape[1]).all()):
            return None
        from transformers.masking_utils import create_bidirectional_mask

        real = torch.arange(hidden.shape[1], device=hidden.device)[None] < positions.to(hidden.device)[:, None]
        return create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=real)

    def hidden_states(self, hidden: torch.Tensor, positions: torch.Tensor) -> list[torch.Tensor]:
        """The input and every layer's output, as the encoder's ``hidden_states`` holds them."""
        mask = self._mask(hidden, positions)
        states = [hidden]
        extra: dict[str, Any] = {}
        for i, layer in enumerate(self.layers):
            out = layer(hidden, attention_mask=mask, **extra)
            if isinstance(out, tuple):
                hidden = out[0]
                if len(out) > 1 and isinstance(out[1], torch.Tensor) and out[1].dim() == 3:
                    extra["position_bias"] = out[1]  # WavLM's relative position bias, shared by the layers
            else:
                hidden = out
            if i == len(self.layers) - 1 and self.final_norm is not None:
                hidden = self.final_norm(hidden)
            states.append(hidden)
        return states

    def pooled(self, hidden: torch.Tensor, lower: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Every layer's pooled features (the frozen ones cached, the top ones computed)."""
        stacked = torch.stack(self.hidden_states(hidden, positions), dim=1)
        if self.pooling == "stats":
            top = masked_mean_std(stacked, positions)
        elif self.whisper:
            top = stacked.float().mean(dim=2)
        else:
            top = masked_mean_std(stacked, positions)[..., : stacked.shape[-1]]
        return torch.cat([lower.float(), top], dim=1)

    def forward(
        self,
        hidden_state: torch.Tensor,
        lower: torch.Tensor,
        positions: torch.Tensor,
        labels: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        logits = self.head(self.pooled(hidden_state, lower, positions)).float()
        loss = None
        if labels is not None:
            masked = logits if allowed is None else logits + torch.where(allowed, 0.0, -1e4)
            losses = nn.functional.cross_entropy(masked, labels, reduction="none")
            weight = torch.ones_like(losses) if weight is None else weight.float()
            loss = (losses * weight).sum() / weight.sum().clamp_min(1e-8)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def parameter_groups(self, learning_rate: float, head_learning_rate: float, layer_decay: float) -> list[dict]:
        """Head at ``head_learning_rate``; the final norm and the top layer at ``learning_rate``, each layer
        below at ``layer_decay`` times the one above."""
        groups = [{"params": [p for p in self.head.parameters() if p.requires_grad], "lr": head_learning_rate}]
        if self.final_norm is not None:
            groups.append({"params": list(self.final_norm.parameters()), "lr": learning_rate})
        for depth, layer in enumerate(reversed(self.layers)):
            groups.append({"params": list(layer.parameters()), "lr": learning_rate * layer_decay**depth})
        return [g for g in groups if g["params"]]

    def set_dropout(self, p: float) -> None:
        """Dropout ``p`` inside the trainable layers (their own dropout modules and rates)."""
        for module in self.layers.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            for name in ("dropout", "activation_dropout"):
                if isinstance(getattr(module, name, None), float):
                    setattr(module, name, p)


@torch.inference_mode()
def replay_check(model: nn.Module, feature_extractor: Any, first_layer: int) -> bool:
    """Whether `TopLayers` reproduces ``model``'s own hidden states from layer ``first_layer`` up (returns
    whether the final layer norm follows the layers); a `SerHfError` when it cannot, for this model type."""
    model.eval()
    rate = int(feature_extractor.sampling_rate)
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(int(rate * s)).astype(np.float32) for s in (1.0, 0.6)]
    share = getattr(feature_extractor, "return_attention_mask", False) or hasattr(feature_extractor, "n_samples")
    collator = AudioCollator(feature_extractor, min_samples=min_input_samples(model.config))
    batches = [collator.encode(clips)] if share else [collator.encode([c]) for c in clips]
    head = StatsHead(torch.zeros(1), torch.ones(1), torch.zeros(1, 1), torch.zeros(1))
    problems = []
    for norm_after in (is_whisper(model), not is_whisper(model)):
        top = TopLayers(model, first_layer, head, norm_after=norm_after).eval()
        worst = 0.0
        for batch in batches:
            outputs = encoder_of(model)(**batch, output_hidden_states=True)
            states = outputs.hidden_states
            positions = _positions(model, batch, states[0].shape[1])
            replayed = top.hidden_states(states[first_layer], positions)
            for mine, theirs in zip(replayed[1:], states[first_layer + 1 :]):
                for i, n in enumerate(positions.tolist()):
                    worst = max(worst, float((mine[i, :n] - theirs[i, :n]).abs().max()))
        if worst <= REPLAY_TOLERANCE:
            return norm_after
        problems.append(worst)
    raise SerHfError(
        f"fine-tuning the top layers on cached inputs is not supported for {model.config.model_type} encoders "
        f"(replaying layer {first_layer} and up differs from the encoder by {min(problems):.2g}); "
        "train the head alone (finetune_layers=0)"
    )


def _positions(model: nn.Module, batch: dict[str, torch.Tensor], total: int) -> torch.Tensor:
    if "attention_mask" in batch and not is_whisper(model):
        return model._get_feature_vector_attention_mask(total, batch["attention_mask"]).sum(-1)
    if is_whisper(model):
        return torch.full((batch["input_features"].shape[0],), total, dtype=torch.long)
    return torch.full((batch["input_values"].shape[0],), total, dtype=torch.long)


def export_top(top: TopLayers, model: nn.Module) -> nn.Module:
    """``model``'s encoder with the fine-tuned layers in it, under the head: a
    `LayerStatsForAudioClassification` (statistics head) or the plain ``*ForAudioClassification``."""
    if top.pooling == "stats":
        out = export_stats_model(top.head, model)
        encoder = out.encoder
    else:
        out = export_weighted_model(top.head, copy.deepcopy(model))
        encoder = encoder_of(out)
    layers = encoder_layers(out) if top.pooling != "stats" else _stats_layers(encoder)
    for i, layer in enumerate(top.layers):
        layers[top.first_layer + i].load_state_dict(layer.state_dict())
    if top.final_norm is not None:
        stack = getattr(encoder, "encoder", encoder)
        stack.layer_norm.load_state_dict(top.final_norm.state_dict())
    return out


def _stats_layers(encoder: nn.Module) -> nn.ModuleList:
    stack = getattr(encoder, "encoder", encoder)
    return stack.layers


@dataclass
class CachedClips(torch.utils.data.Dataset):
    """Rows of an encoded corpus as phase-2 examples (``hidden_state``, ``lower``, ``positions``, ``labels``,
    and ``allowed`` (the labels the clip's corpus annotates) / ``weight`` where given)."""

    hidden: Any
    lower: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    weights: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = int(self.rows[index])
        item = {
            "hidden_state": np.asarray(self.hidden[row]["hidden_state"], dtype=np.float32),
            "lower": self.lower[row],
            "positions": int(self.positions[row]),
            "labels": int(self.labels[row]),
        }
        if self.weights is not None:
            item["weight"] = float(self.weights[index])
        if self.masks is not None:
            item["allowed"] = self.masks[row]
        return item

    @property
    def lengths(self) -> list[int]:
        return [int(self.positions[r]) for r in self.rows]


@dataclass
class CachedCollator:
    """Pad cached rows into a batch; in training, zero ``time_mask_spans`` random spans covering
    ``time_mask_fraction`` of each clip's real positions (SpecAugment on hidden states)."""

    time_mask_fraction: float = 0.0
    time_mask_spans: int = 2
    training: bool = False

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(r["hidden_state"].shape[0] for r in rows)
        hidden = torch.zeros(len(rows), longest, rows[0]["hidden_state"].shape[1])
        for i, r in enumerate(rows):
            hidden[i, : r["hidden_state"].shape[0]] = torch.from_numpy(r["hidden_state"])
        positions = torch.tensor([r["positions"] for r in rows], dtype=torch.long)
        if self.training and self.time_mask_fraction > 0 and self.time_mask_spans > 0:
            for i, n in enumerate(positions.tolist()):
                width = max(1, int(n * self.time_mask_fraction / self.time_mask_spans))
                for _ in range(self.time_mask_spans):
                    start = int(torch.randint(0, max(1, n - width), ()).item())
                    hidden[i, start : start + width] = 0
        batch = {
            "hidden_state": hidden,
            "lower": torch.as_tensor(np.stack([r["lower"] for r in rows]), dtype=torch.float32),
            "positions": positions,
            "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
        }
        if "weight" in rows[0]:
            batch["weight"] = torch.tensor([r["weight"] for r in rows], dtype=torch.float32)
        if "allowed" in rows[0]:
            batch["allowed"] = torch.as_tensor(np.stack([r["allowed"] for r in rows]))
        return batch


@torch.inference_mode()
def predict_top(top: TopLayers, clips: CachedClips, batch_size: int = 32) -> np.ndarray:
    """Logits of ``top`` (on the device of its parameters) for cached rows, in row order."""
    top.eval()
    device = next(top.parameters()).device
    collate = CachedCollator()
    out = []
    for start in range(0, len(clips), batch_size):
        batch = collate([clips[i] for i in range(start, min(len(clips), start + batch_size))])
        inputs = {k: batch[k].to(device) for k in ("hidden_state", "lower", "positions")}
        out.append(top(**inputs).logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, top.head.classifier.out_features), dtype=np.float32)


__all__ = [
    "CachedClips",
    "CachedCollator",
    "LayerStatsForAudioClassification",
    "TopLayers",
    "export_top",
    "predict_top",
    "replay_check",
]
