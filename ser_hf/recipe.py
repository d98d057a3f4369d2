"""ser-hf's fine-tuning recipe: linear probe first, then the top encoder layers, fine-tuned on cached inputs.

Fine-tuning a whole speech encoder on a thousand clips over-fits and costs hours on a CPU. The
recipe (``strategy="finetune"``, ``--recipe ser-hf``):

1. trims silence and fits the Whisper window to the clips (`ser_hf.frozen.encode_corpus`);
2. runs the frozen lower encoder once per clip and caches the input of the first trainable layer
   (through `datasets`, reused by every fold and run), with the statistics of the lower layers;
3. fits the statistics head on the frozen features (a linear probe: `ser_hf.frozen.select_stats_head`,
   its L2 strength chosen on the validation speakers);
4. fine-tunes the top ``trainable_layers`` layers and the head from there, with layer-wise learning
   rates, dropout and SpecAugment-style time masking on the cached hidden states, class-weighted loss,
   and keeps the epoch (0 = the probe alone) with the best UA on validation speakers drawn from the
   training speakers;
5. refits the probe (with the chosen L2) and runs that many epochs again on all the fold's training
   speakers, validation speakers included, as the frozen path refits its head (``refit=False``: keep
   the model fitted without them).

The frozen lower layers are exactly the cached computation and the statistics are pooled over the real
frames as `ser_hf.layer_stats.LayerStatsForAudioClassification` pools them, so the saved model predicts
from raw audio what the trained model predicted from the cache.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from .evaluation import unweighted_average_recall
from .frozen import (
    FoldOutcome,
    PreparedCorpus,
    StatsHead,
    StatsHeadConfig,
    encode_corpus,
    export_stats_model,
    refit_stats_head,
    select_stats_head,
    speech_positions,
    use_real_frames,
    warmup_cosine,
)
from .hardware import default_device
from .layer_stats import masked_mean_std

logger = logging.getLogger(__name__)


@dataclass
class RecipeConfig:
    """Hyper-parameters of the recipe (defaults chosen on validation actors of training folds only)."""

    trainable_layers: int = 1
    epochs: int = 3
    batch_size: int = 16
    head_learning_rate: float = 1e-4
    encoder_learning_rate: float = 2e-5
    layer_decay: float = 0.7
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    dropout: float = 0.1
    time_mask_fraction: float = 0.15
    time_mask_spans: int = 2
    class_weighted: bool = True
    bf16: bool = False
    seed: int = 0
    refit: bool = True  # after choosing on validation speakers, train again on them too
    probe: StatsHeadConfig = field(default_factory=StatsHeadConfig)


class TopLayersClassifier(nn.Module):
    """The top encoder layers of a Whisper classifier plus the statistics head, on cached inputs.

    ``forward(hidden, lower, lengths)``: ``hidden`` is the cached input of the first trainable layer
    ``(batch, positions, d)``; ``lower`` the statistics of the frozen hidden states below it
    ``(batch, k, 2 * d)``; ``lengths`` the clips' real positions. Same computation as
    `ser_hf.layer_stats.LayerStatsForAudioClassification` on the whole encoder.
    """

    def __init__(self, model: nn.Module, first_layer: int, head: StatsHead):
        super().__init__()
        encoder = model.encoder
        self.first_layer = first_layer
        self.layers = copy.deepcopy(encoder.layers[first_layer:])
        self.layer_norm = copy.deepcopy(encoder.layer_norm)
        self.head = copy.deepcopy(head)

    def forward(self, hidden: torch.Tensor, lower: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states = [hidden]
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            if i == len(self.layers) - 1:
                hidden = self.layer_norm(hidden)
            states.append(hidden)
        top = masked_mean_std(torch.stack(states, dim=1), lengths)
        return self.head(torch.cat([lower.float(), top], dim=1))

    def export(self, model: nn.Module) -> nn.Module:
        """``model``'s encoder with these layers in it, under this head (a LayerStatsForAudioClassification)."""
        out = export_stats_model(self.head, model)
        encoder = out.encoder
        for i, layer in enumerate(self.layers):
            encoder.layers[self.first_layer + i].load_state_dict(layer.state_dict())
        encoder.layer_norm.load_state_dict(self.layer_norm.state_dict())
        return out


def _set_dropout(module: nn.Module, p: float) -> None:
    for layer in module.layers:
        layer.dropout = p
        layer.activation_dropout = p


def _time_mask(hidden: torch.Tensor, fraction: float, spans: int, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style time masking on hidden states: ``spans`` random spans per clip set to zero."""
    if fraction <= 0 or spans <= 0:
        return hidden
    batch, positions, _ = hidden.shape
    width = max(1, int(positions * fraction / spans))
    keep = torch.ones(batch, positions, 1, dtype=hidden.dtype)
    starts = torch.randint(0, max(1, positions - width), (batch, spans), generator=generator)
    for b in range(batch):
        for s in starts[b].tolist():
            keep[b, s : s + width] = 0
    return hidden * keep


def _parameter_groups(top: TopLayersClassifier, config: RecipeConfig) -> list[dict[str, Any]]:
    """Head at ``head_learning_rate``; layer ``i`` from the top at ``encoder_learning_rate * layer_decay**i``."""
    groups = [{"params": list(top.head.parameters()), "lr": config.head_learning_rate}]
    groups.append({"params": list(top.layer_norm.parameters()), "lr": config.encoder_learning_rate})
    for depth, layer in enumerate(reversed(top.layers)):
        groups.append(
            {"params": list(layer.parameters()), "lr": config.encoder_learning_rate * config.layer_decay**depth}
        )
    return groups


@torch.inference_mode()
def predict_top(
    top: TopLayersClassifier, hidden: np.ndarray, lower: np.ndarray, lengths: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """Logits of ``top`` (computed on the device its parameters are on) for cached inputs."""
    top.eval()
    device = next(top.parameters()).device
    out = []
    for i in range(0, len(hidden), batch_size):
        h = torch.as_tensor(np.asarray(hidden[i : i + batch_size]), dtype=torch.float32, device=device)
        p = torch.as_tensor(np.asarray(lower[i : i + batch_size]), dtype=torch.float32, device=device)
        n = torch.as_tensor(np.asarray(lengths[i : i + batch_size]), dtype=torch.long)
        out.append(top(h, p, n).float().cpu())
    return torch.cat(out).numpy()


def clip_positions(prepared: PreparedCorpus) -> np.ndarray:
    """Each clip's real positions in the (Whisper) encoder's window, as the statistics head counts them."""
    fe, model = prepared.feature_extractor, prepared.model
    positions, window = int(model.config.max_source_positions), int(fe.n_samples)
    lengths = prepared.dataset["length"]
    return np.array([speech_positions(model, fe, min(int(n), window), positions) for n in lengths])


@dataclass
class RecipeFit:
    top: TopLayersClassifier
    epoch: int
    history: list[float]
    probe_validation_ua: float | None
    probe_choice: dict[str, Any] = field(default_factory=dict)


def fine_tune_top(
    model: nn.Module,
    hidden: Any,
    pooled: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    fit_rows: np.ndarray,
    valid_rows: np.ndarray,
    num_labels: int,
    config: RecipeConfig,
    *,
    progress: Any = None,
    device: str | torch.device | None = None,
) -> RecipeFit:
    """Linear probe on ``pooled`` then fine-tune the top layers on the cached ``hidden`` states.

    ``hidden`` is indexable by row (a numpy-formatted `datasets` column or an array) with each clip's
    input of the first trainable layer; ``pooled`` holds every clip's layer statistics ``(layers + 1,
    2 * d)`` and ``lengths`` its real positions. The probe's L2 strength and the epoch are chosen on
    ``valid_rows``; with ``config.refit`` the probe and that many epochs are then run again on the fitting
    and validation rows together. The layers train on ``device`` (default: the GPU when there is one);
    the returned model is on the CPU.
    """
    device = torch.device(device) if device is not None else default_device()
    k = len(model.encoder.layers) - config.trainable_layers
    if not 0 <= k < len(model.encoder.layers):
        raise ValueError(f"trainable_layers must be 1..{len(model.encoder.layers)}, not {config.trainable_layers}")
    lower = pooled[:, :k]

    def start_from(head: StatsHead) -> TopLayersClassifier:
        top = TopLayersClassifier(model, k, head).to(device)
        _set_dropout(top, config.dropout)
        for parameter in top.parameters():
            parameter.requires_grad_(True)
        return top

    def validate(top: TopLayersClassifier) -> float:
        logits = predict_top(top, hidden_rows(hidden, valid_rows), lower[valid_rows], lengths[valid_rows])
        return unweighted_average_recall(logits.argmax(-1), labels[valid_rows], num_labels)

    def train(top: TopLayersClassifier, rows_to_fit: np.ndarray, epochs: int, after_epoch: Any = None) -> None:
        """``epochs`` epochs over ``rows_to_fit`` on the schedule of ``config.epochs`` (same seed every run),
        the loss weighted by the classes of ``rows_to_fit``."""
        counts = np.bincount(labels[rows_to_fit], minlength=num_labels).astype(np.float32)
        balance = counts.sum() / np.maximum(counts, 1) / num_labels
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(balance, device=device) if config.class_weighted else None)
        generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(_parameter_groups(top, config), weight_decay=config.weight_decay)
        steps = math.ceil(len(rows_to_fit) / config.batch_size) * config.epochs
        schedule = warmup_cosine(optimizer, steps, config.warmup_fraction)
        for epoch in range(1, epochs + 1):
            top.train()
            order = torch.randperm(len(rows_to_fit), generator=generator).numpy()
            for start in range(0, len(order), config.batch_size):
                rows = np.sort(rows_to_fit[order[start : start + config.batch_size]])
                h = torch.as_tensor(hidden_rows(hidden, rows), dtype=torch.float32)
                h = _time_mask(h, config.time_mask_fraction, config.time_mask_spans, generator).to(device)
                p = torch.as_tensor(lower[rows], dtype=torch.float32, device=device)
                y = torch.as_tensor(labels[rows], dtype=torch.long, device=device)
                n = torch.as_tensor(lengths[rows], dtype=torch.long)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    logits = top(h, p, n)
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(top.parameters(), 1.0)
                optimizer.step()
                schedule.step()
            if after_epoch is not None:
                after_epoch(epoch)

    # the validation speakers choose the probe's L2 strength but stay out of it: they choose the epoch next
    probe = select_stats_head(pooled, labels, fit_rows, valid_rows, num_labels, config.probe, refit=False)
    top = start_from(probe.head)
    history: list[float] = []
    best: dict[str, Any] = {"ua": -1.0, "epoch": 0, "state": None}

    def keep_best(epoch: int) -> None:
        ua = validate(top)
        history.append(ua)
        if epoch and progress:
            progress(f"  epoch {epoch}/{config.epochs}: validation UA {100 * ua:.1f}")
        if ua > best["ua"]:
            best.update(ua=ua, epoch=epoch, state=copy.deepcopy(top.state_dict()))

    if len(valid_rows) == 0:
        train(top, fit_rows, config.epochs)
        best_epoch = config.epochs
    else:
        keep_best(0)  # epoch 0: the linear probe alone
        train(top, fit_rows, config.epochs, keep_best)
        best_epoch = best["epoch"]
        if config.refit:
            rows = np.concatenate([fit_rows, valid_rows])
            # the frozen path's head exactly (same warm start): where the probe is kept, the recipe's is it
            top = start_from(refit_stats_head(probe, pooled, labels, rows, num_labels, config.probe).head)
            if best_epoch:
                if progress:
                    progress(f"  refit on fitting + validation speakers: probe, then {best_epoch} epoch(s)")
                train(top, rows, best_epoch)
        else:
            top.load_state_dict(best["state"])
    top.eval().to("cpu")
    probe_ua = max(probe.history) if probe.history else None
    return RecipeFit(top, best_epoch, history, probe_ua, probe.chosen)


def hidden_rows(hidden: Any, rows: np.ndarray) -> np.ndarray:
    """Rows of a cached hidden-state column (numpy-formatted `datasets` column or array) as one array."""
    if isinstance(hidden, np.ndarray):
        return hidden[rows]
    return np.asarray(hidden[[int(r) for r in rows]]["hidden_state"])


class RecipeStrategy:
    """ser-hf's fine-tuning recipe as a cross-validation strategy (see the module docstring)."""

    name = "finetune"

    def __init__(
        self,
        model_name_or_path: str,
        *,
        recipe: RecipeConfig | dict[str, Any] | None = None,
        trim_silence: bool = True,
        window_seconds: int | None = None,
        batch_size: int = 16,
        cache_dir: str | os.PathLike | None = None,
        decode_cache_dir: str | os.PathLike | None = None,
        num_proc: int | None = None,
        progress: Any = None,
        device: str | None = None,
        **overrides: Any,
    ):
        self.model_name_or_path = model_name_or_path
        self.config = recipe if isinstance(recipe, RecipeConfig) else RecipeConfig(**{**(recipe or {}), **overrides})
        self.trim_silence, self.window_seconds = trim_silence, window_seconds
        self.batch_size, self.cache_dir, self.decode_cache_dir, self.num_proc = (
            batch_size,
            cache_dir,
            decode_cache_dir,
            num_proc,
        )
        self.progress, self.device = progress, device

    @property
    def refits_on_validation(self) -> bool:
        """Whether the final model is trained again with the validation speakers once they have chosen."""
        return self.config.refit

    def settings(self) -> dict[str, Any]:
        recipe = {k: v for k, v in self.config.__dict__.items() if k != "probe"}
        return {
            "device": str(self.device or default_device()),
            "trim_silence": self.trim_silence,
            "window_seconds": self.window_seconds,
            "recipe": recipe,
            "probe": dict(self.config.probe.__dict__),
        }

    def prepare(self, corpus: Dataset, *, speaker_column: str = "speaker") -> PreparedCorpus:
        prepared = encode_corpus(
            corpus,
            self.model_name_or_path,
            proj_size=256,  # the unused standard head's; the statistics head has no projector
            pooling="stats",
            trainable_top_layers=self.config.trainable_layers,
            trim_silence=self.trim_silence,
            window_seconds=self.window_seconds,
            batch_size=self.batch_size,
            cache_dir=self.cache_dir,
            decode_cache_dir=self.decode_cache_dir,
            num_proc=self.num_proc,
            device=self.device,
        )
        self.window_seconds = int(prepared.feature_extractor.chunk_length)
        use_real_frames(prepared.feature_extractor)
        return prepared

    def run_fold(
        self, prepared: PreparedCorpus, fit_rows: np.ndarray, valid_rows: np.ndarray, test_rows: np.ndarray, **_: Any
    ) -> FoldOutcome:
        hidden = prepared.dataset.with_format("numpy", columns=["hidden_state"])
        lengths = clip_positions(prepared)
        fitted = fine_tune_top(
            prepared.model,
            hidden,
            prepared.features,
            lengths,
            prepared.labels,
            fit_rows,
            valid_rows,
            len(prepared.label_names),
            self.config,
            progress=self.progress,
            device=self.device,
        )
        k = fitted.top.first_layer
        logits = predict_top(
            fitted.top, hidden_rows(hidden, test_rows), prepared.features[test_rows, :k], lengths[test_rows]
        )
        info = {
            **fitted.probe_choice,
            "epoch": fitted.epoch,
            "validation_ua": max(fitted.history) if fitted.history else None,
            "probe_validation_ua": fitted.probe_validation_ua,
            "validation_history": [round(v, 4) for v in fitted.history],
        }
        return FoldOutcome(logits, info, fitted.top)

    def export(self, prepared: PreparedCorpus, top: TopLayersClassifier) -> nn.Module:
        """A `LayerStatsForAudioClassification` carrying the fine-tuned layers and the head."""
        return top.export(prepared.model)
