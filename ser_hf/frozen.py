"""The frozen-encoder fast path: pooled hidden states of every layer, cached once; a light head on top.

Speech encoders are expensive and their heads are cheap. `layer_features` runs the encoder once per
clip and keeps, for every hidden layer, statistics over time (``(layers + 1, hidden)`` matrices per clip):
the mean over the whole input (``pooled_window``), and the mean and standard deviation over the clip's
real frames (``pooled_speech``, ``pooled_std``), cached through `datasets` in an Arrow file keyed by the
encoder's weights, the feature extractor and the decoded audio, so every fold, epoch and later run reuses it.

Two heads (``FrozenStrategy(head_type=...)``):

- ``"stats"`` (default): `StatsHead`, the mean and std of every layer over the real frames, standardised,
  then one linear classifier, fitted to convergence (L-BFGS, L2 strength chosen on validation speakers).
  `export_stats_model` puts it on the encoder as a `ser_hf.layer_stats.LayerStatsForAudioClassification`,
  which predicts from raw audio exactly what the head predicted from the cache; transformers loads it
  through the Auto classes once ser-hf is imported, or anywhere with ``trust_remote_code=True``.
- ``"weighted"``: `WeightedLayerHead` (softmax weights over layers → linear projector → linear classifier),
  exactly the head of transformers' ``*ForAudioClassification`` with ``use_weighted_layer_sum=True``
  (mean pooling commutes with the linear projector); `export_model` copies it into such a plain
  transformers model. The standard Whisper head averages **every** position of its fixed window (padding
  included; it takes no mask), so this head is trained on that same window average (``pooling="window"``),
  with the window fitted tightly to the clips. It scores less (RAVDESS, Whisper tiny.en: 70.7 against
  76.4 UA) but needs no custom code.

Speaker adaptation (``FrozenStrategy(speaker_adaptive=True)``, statistics head only): every clip's statistics
are centred on the mean of its speaker's clips (unlabelled) before the head sees them, so the head learns
how an emotion moves a voice away from its own average rather than what the voice is. Cross-validated
this way, the test speakers' unlabelled clips centre their own features: a different protocol from the
per-clip one (reported as such), matching a deployment that hears some speech of a speaker first and
calls `LayerStatsForAudioClassification.adapt_to_speaker` (``EmotionRecognizer.adapt_to_speaker``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn

from .evaluation import unweighted_average_recall
from .features import (
    AudioCollator,
    add_waveform_columns,
    cache_folder,
    extractor_settings,
    is_cached,
    min_input_samples,
    weights_digest,
)
from .hardware import default_device
from .layer_stats import LayerStatsForAudioClassification, masked_mean_std
from .modeling import WHISPER_POSITIONS_PER_SECOND, is_whisper
from .splits import speaker_key

logger = logging.getLogger(__name__)

#: Bump when feature extraction changes, so old caches are not reused.
FEATURES_VERSION = "2"
#: Pooling choices: the mean over the model's whole input (what the standard head does), the mean over the
#: clip's frames only, or the mean and standard deviation over the clip's frames (the statistics head's input).
POOLINGS = ("window", "speech", "stats")
#: The frozen path's heads: `StatsHead` (saved as LayerStatsForAudioClassification) or `WeightedLayerHead`.
HEAD_TYPES = ("stats", "weighted")
#: How reports describe speaker adaptation: it changes the protocol, so it is spelled out.
SPEAKER_ADAPTIVE_NOTE = (
    "each clip's statistics centred on the mean of its speaker's clips (unlabelled; test speakers' own clips "
    "for test speakers)"
)


def encoder_of(model: nn.Module) -> nn.Module:
    """The speech encoder inside a ``*ForAudioClassification`` / ``*ForSequenceClassification`` model."""
    if is_whisper(model):
        return model.encoder
    return getattr(model, model.base_model_prefix)


def encoder_fingerprint(model: nn.Module, feature_extractor: Any) -> str:
    """Identity of everything that shapes the hidden states: encoder weights, config, feature extractor."""
    config = {k: v for k, v in model.config.to_dict().items() if k not in {"id2label", "label2id", "architectures"}}
    for key in (
        "num_labels",
        "classifier_proj_size",
        "use_weighted_layer_sum",
        "_name_or_path",
        "transformers_version",
    ):
        config.pop(key, None)
    return Hasher.hash((weights_digest(encoder_of(model)), config, extractor_settings(feature_extractor)))


def speech_positions(model: nn.Module, feature_extractor: Any, samples: int, window_positions: int) -> int:
    """How many encoder positions hold a clip of ``samples`` (the rest of a Whisper window is padding)."""
    if is_whisper(model):
        seconds = samples / feature_extractor.sampling_rate
        return max(1, min(window_positions, math.ceil(seconds * WHISPER_POSITIONS_PER_SECOND)))
    lengths = model._get_feat_extract_output_lengths(torch.tensor(samples))
    return max(1, min(window_positions, int(lengths)))


@torch.inference_mode()
def _pool_batch(
    batch: dict[str, list[Any]], model: nn.Module, collator: AudioCollator, keep_layer: int | None
) -> dict[str, list[Any]]:
    waveforms = [np.asarray(w, dtype=np.float32) for w in batch["waveform"]]
    device = next(model.parameters()).device
    inputs = {name: tensor.to(device) for name, tensor in collator.encode(waveforms).items()}
    outputs = encoder_of(model)(**inputs, output_hidden_states=True)
    hidden = torch.stack(outputs.hidden_states, dim=1).cpu()  # (batch, layers + 1, positions, hidden)
    positions = hidden.shape[2]
    window, lengths = [], []
    if "attention_mask" in inputs and not is_whisper(model):
        mask = model._get_feature_vector_attention_mask(positions, inputs["attention_mask"]).cpu()
    else:
        mask = None
    for i, wave in enumerate(waveforms):
        if mask is not None:
            n = int(mask[i].sum())
            model_view = hidden[i, :, :n].mean(dim=1)
        else:
            model_view = hidden[i].mean(dim=1)
            n = speech_positions(
                model, collator.feature_extractor, min(wave.shape[0], collator.max_samples or wave.shape[0]), positions
            )
        window.append(model_view.float().numpy())
        lengths.append(n)
    speech, spread = masked_mean_std(hidden, torch.tensor(lengths)).chunk(2, dim=-1)
    out = {"pooled_window": window, "pooled_speech": list(speech.numpy()), "pooled_std": list(spread.numpy())}
    if keep_layer is not None:
        out["hidden_state"] = [h.float().numpy() for h in hidden[:, keep_layer]]
    return out


def _batches_for(model: nn.Module, feature_extractor: Any) -> str:
    """Whether clips can share a batch without changing each other's features."""
    from .features import is_fixed_window

    if is_fixed_window(feature_extractor) or getattr(feature_extractor, "return_attention_mask", False):
        return "any"
    return "alone"  # wav2vec2-base style: zero padding shifts the outputs (no mask, group norm over time)


def layer_features(
    decoded: Dataset,
    model: nn.Module,
    feature_extractor: Any,
    *,
    audio_key: str,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    keep_layer: int | None = None,
    device: str | torch.device | None = None,
) -> Dataset:
    """Add ``pooled_window``, ``pooled_speech`` and ``pooled_std`` (``(layers + 1, hidden)`` float32 per clip).

    ``decoded`` comes from `ser_hf.features.prepare_audio`; ``audio_key`` identifies its decoded audio
    (e.g. the decode cache file name). The result is cached in an Arrow file keyed by ``audio_key``
    and `encoder_fingerprint`, so the same model on the same audio is encoded once, ever.
    ``pooled_window`` is pooled the way the standard head pools at inference (clip by clip), and
    ``pooled_speech`` / ``pooled_std`` (mean / standard deviation) over the clip's own frames only.
    With ``keep_layer=k`` (fixed-window models), the
    hidden state ``k`` (the input of encoder layer ``k``) is kept whole as ``hidden_state``
    ``(positions, hidden)``, for fine-tuning the layers above it (`ser_hf.recipe`). The encoder runs on
    ``device`` (default: the GPU when there is one) and the model is back on the CPU afterwards.
    """
    model.eval()
    key = Hasher.hash((FEATURES_VERSION, audio_key, encoder_fingerprint(model, feature_extractor), keep_layer))
    cache_file = cache_folder(cache_dir) / (
        f"layers-{key}.arrow" if keep_layer is None else f"layers{keep_layer}-{key}.arrow"
    )
    from .features import window_samples

    collator = AudioCollator(
        feature_extractor, max_samples=window_samples(feature_extractor), min_samples=min_input_samples(model.config)
    )
    alone = _batches_for(model, feature_extractor) == "alone"
    with torch.inference_mode():
        probe = collator.encode([np.zeros(int(feature_extractor.sampling_rate), np.float32)])
        layers = len(encoder_of(model)(**probe, output_hidden_states=True).hidden_states)
    hidden = model.config.d_model if is_whisper(model) else model.config.hidden_size
    matrix = datasets.Array2D(shape=(layers, hidden), dtype="float32")
    features = datasets.Features({"pooled_window": matrix, "pooled_speech": matrix, "pooled_std": matrix})
    if keep_layer is not None:
        if not is_whisper(model):
            raise ValueError("keep_layer needs a fixed-window encoder (Whisper): other encoders' lengths vary")
        positions = int(model.config.max_source_positions)
        features["hidden_state"] = datasets.Array2D(shape=(positions, hidden), dtype="float32")
    encoder = model if is_cached(cache_file) else model.to(device or default_device())
    try:
        return add_waveform_columns(
            decoded,
            _pool_batch,
            fn_kwargs={"model": encoder, "collator": collator, "keep_layer": keep_layer},
            features=features,
            cache_file=cache_file,
            desc="Encoding (all layers, once)",
            batch_size=1 if alone else batch_size,
        )
    finally:
        model.to("cpu")


class WeightedLayerHead(nn.Module):
    """Softmax weights over layers → linear projector → linear classifier, on pooled layer matrices.

    The same computation as the head of transformers' audio-classification models with
    ``use_weighted_layer_sum=True`` (mean pooling commutes with the linear projector).
    """

    def __init__(self, layers: int, hidden: int, proj_size: int, num_labels: int):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.ones(layers) / layers)
        self.projector = nn.Linear(hidden, proj_size)
        self.classifier = nn.Linear(proj_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=-1)
        mixed = (pooled * weights.view(1, -1, 1)).sum(dim=1)
        return self.classifier(self.projector(mixed))


@dataclass
class HeadConfig:
    """How `train_head` fits the head (defaults chosen on validation actors of training folds only)."""

    proj_size: int = 32
    epochs: int = 30
    learning_rate: float = 5e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    dropout: float = 0.0
    class_weighted: bool = True
    standardize: str = "layers"
    seed: int = 0


@dataclass
class HeadFit:
    """A trained head, the epoch it was taken from (if any), the validation UA per trial, what was chosen."""

    head: nn.Module
    epoch: int | None
    history: list[float]
    chosen: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureNormalizer:
    """Normalisation of pooled layer matrices that folds exactly into a standard head.

    Each layer ``l`` is centred (per feature, ``layer_mean[l]``) and divided by one scalar
    (``layer_scale[l]``, its RMS), then every feature is standardised (``mean``, ``std``, shared by the
    layers). A per-layer *scalar* can be moved into the softmax layer weights and the rest into the
    projector, because the softmax weights sum to one; see `fold`.
    """

    layer_mean: torch.Tensor  # (layers, hidden)
    layer_scale: torch.Tensor  # (layers,)
    mean: torch.Tensor  # (hidden,)
    std: torch.Tensor  # (hidden,)

    @classmethod
    def fit(cls, x: torch.Tensor, mode: str = "layers") -> FeatureNormalizer:
        layers, hidden = x.shape[1], x.shape[2]
        layer_mean, layer_scale = torch.zeros(layers, hidden), torch.ones(layers)
        if mode == "layers":
            layer_mean = x.mean(dim=0)
            layer_scale = (x - layer_mean).pow(2).mean(dim=(0, 2)).sqrt().clamp_min(1e-6)
        elif mode not in ("shared", "none"):
            raise ValueError(f"standardize must be 'layers', 'shared' or 'none', not {mode!r}")
        mean, std = torch.zeros(hidden), torch.ones(hidden)
        if mode != "none":
            z = ((x - layer_mean) / layer_scale.view(1, -1, 1)).reshape(-1, hidden)
            mean, std = z.mean(dim=0), z.std(dim=0).clamp_min(1e-5)
        return cls(layer_mean, layer_scale, mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.layer_mean) / self.layer_scale.view(1, -1, 1) - self.mean) / self.std

    def fold(self, head: WeightedLayerHead) -> WeightedLayerHead:
        """A head on raw features that computes exactly what ``head`` computes on normalised ones."""
        folded = copy.deepcopy(head)
        with torch.no_grad():
            w = torch.softmax(head.layer_weights, dim=0)
            scaled = w / self.layer_scale
            c = scaled.sum()
            folded.layer_weights.copy_(torch.log(scaled / c))
            offset = (w.view(-1, 1) * self.layer_mean / self.layer_scale.view(-1, 1)).sum(dim=0) + self.mean
            weight = head.projector.weight / self.std.view(1, -1)
            folded.projector.weight.copy_(weight * c)
            folded.projector.bias.copy_(head.projector.bias - weight @ offset)
        return folded


def predict_head(head: nn.Module, pooled: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Logits of ``head`` for pooled layer matrices."""
    head.eval()
    x = torch.as_tensor(np.asarray(pooled), dtype=torch.float32)
    with torch.inference_mode():
        return torch.cat([head(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to zero."""
    warmup = max(1, int(total_steps * warmup_fraction))
    total = max(1, total_steps)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run small models on ``n`` threads (more threads only add synchronisation cost to tiny matrices)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_labels: int,
    config: HeadConfig | None = None,
    *,
    valid_x: np.ndarray | None = None,
    valid_y: np.ndarray | None = None,
) -> HeadFit:
    """Fit a `WeightedLayerHead` on pooled layer matrices ``(clips, layers + 1, hidden)``.

    With validation data, the epoch with the best validation UA is kept; without, the last epoch.
    """
    with torch_threads(1):
        return _train_head(train_x, train_y, num_labels, config or HeadConfig(), valid_x, valid_y)


def _train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_labels: int,
    config: HeadConfig,
    valid_x: np.ndarray | None,
    valid_y: np.ndarray | None,
) -> HeadFit:
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    normalizer = FeatureNormalizer.fit(x, config.standardize)
    x = normalizer(x)
    head = WeightedLayerHead(x.shape[1], x.shape[2], config.proj_size, num_labels)
    dropout = nn.Dropout(config.dropout)
    counts = torch.bincount(y, minlength=num_labels).float()
    weights = (counts.sum() / counts.clamp_min(1) / num_labels) if config.class_weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.epochs * math.ceil(len(x) / config.batch_size))
    best_state, best_ua, best_epoch, history = None, -1.0, config.epochs, []
    vx = None if valid_x is None else normalizer(torch.as_tensor(np.asarray(valid_x), dtype=torch.float32))
    for epoch in range(1, config.epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = loss_fn(head(dropout(x[rows])), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if vx is not None:
            ua = unweighted_average_recall(predict_head(head, vx).argmax(-1), np.asarray(valid_y), num_labels)
            history.append(float(ua))
            if ua > best_ua:
                best_ua, best_epoch, best_state = ua, epoch, copy.deepcopy(head.state_dict())
    if best_state is not None:
        head.load_state_dict(best_state)
    return HeadFit(normalizer.fold(head), best_epoch, history)


# ------------------------------------------------------------------------------- the statistics head
@dataclass
class StatsHeadConfig:
    """How `fit_stats_head` is fitted, and which L2 strengths the validation speakers choose from."""

    l2_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    #: Used when there are no validation speakers to choose with.
    l2: float = 1e-2
    class_weighted: bool = True
    max_iter: int = 300


class StatsHead(nn.Module):
    """Standardise the flattened ``(layers, 2 * hidden)`` statistics of a clip, then one linear classifier.

    The head of `ser_hf.layer_stats.LayerStatsForAudioClassification`, on cached statistics.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten().clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten().clone())
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)

        #: Set for a head fitted on speaker-centred statistics: the training speakers' average statistics,
        #: the un-adapted default of the saved model (`export_stats_model`).
        self.speaker_reference: torch.Tensor | None = None

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.classifier((statistics.flatten(1) - self.mean) / self.std)


@dataclass
class _Standardised:
    """Statistics standardised per feature, in coordinates of their rows' span when features outnumber
    clips (``z == coordinates @ basis.T``, orthonormal ``basis``): the L2 optimum of a linear model lies
    in that span, so solving there gives the same weights from at most as many dimensions as clips."""

    mean: torch.Tensor
    std: torch.Tensor
    coordinates: torch.Tensor
    basis: torch.Tensor | None

    @classmethod
    def of(cls, x: np.ndarray | torch.Tensor) -> _Standardised:
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32).flatten(1)
        mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-5)
        z = (x - mean) / std
        if z.shape[1] <= z.shape[0]:
            return cls(mean, std, z, None)
        gram = z.double() @ z.double().T
        values, vectors = torch.linalg.eigh(gram)
        keep = values > values.max() * 1e-10
        root = values[keep].sqrt()
        basis = (z.double().T @ vectors[:, keep]) / root
        return cls(mean, std, (vectors[:, keep] * root).float(), basis.float())

    def to_coordinates(self, weight: torch.Tensor) -> torch.Tensor:
        return weight if self.basis is None else weight @ self.basis

    def head(self, weight: torch.Tensor, bias: torch.Tensor) -> StatsHead:
        full = weight if self.basis is None else weight @ self.basis.T
        return StatsHead(self.mean, self.std, full, bias)


def _logistic_regression(
    data: _Standardised,
    y: torch.Tensor,
    num_labels: int,
    l2: float,
    *,
    class_weighted: bool,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> StatsHead:
    """Class-weighted mean cross-entropy + ``l2 * |W|²``, minimised by full-batch L-BFGS from ``init``
    (full-space weight and bias; zeros by default)."""
    z = data.coordinates
    counts = torch.bincount(y, minlength=num_labels).float()
    weights = counts.sum() / counts.clamp_min(1) / num_labels if class_weighted else None
    if init is None:
        weight, bias = torch.zeros(num_labels, z.shape[1]), torch.zeros(num_labels)
    else:
        weight, bias = data.to_coordinates(init[0].float()), init[1].float().clone()
    weight, bias = weight.clone().requires_grad_(True), bias.requires_grad_(True)
    with torch_threads(1):
        optimizer = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-6, tolerance_change=1e-9,
        )  # fmt: skip

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(z @ weight.T + bias, y, weight=weights) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return data.head(weight.detach(), bias.detach())


def fit_stats_head(
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray,
    num_labels: int,
    l2: float,
    *,
    class_weighted: bool = True,
    max_iter: int = 300,
) -> StatsHead:
    """Fit a `StatsHead` on statistics ``(clips, layers, 2 * hidden)``: multinomial logistic regression.

    Minimises the (class-weighted) mean cross-entropy plus ``l2 * |W|²`` on standardised features to
    convergence with full-batch L-BFGS (deterministic; a second or two for a thousand clips).
    """
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    return _logistic_regression(
        _Standardised.of(train_x), y, num_labels, l2, class_weighted=class_weighted, max_iter=max_iter
    )


def select_stats_head(
    x: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    valid_rows: np.ndarray,
    num_labels: int,
    config: StatsHeadConfig,
    *,
    refit: bool = True,
) -> HeadFit:
    """Choose the L2 strength on the validation rows, then refit with it on fitting + validation rows
    (``refit=False``: keep the head fitted on the fitting rows alone).

    The grid is fitted from the strongest L2 down, each fit starting from the last (the same optima,
    sooner); the refit starts from the chosen fit.
    """
    options = {"class_weighted": config.class_weighted, "max_iter": config.max_iter}
    if len(valid_rows) == 0:
        return HeadFit(
            fit_stats_head(x[fit_rows], y[fit_rows], num_labels, config.l2, **options), None, [], {"l2": config.l2}
        )
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    data = _Standardised.of(x[fit_rows])
    trials: dict[float, StatsHead] = {}
    previous = None
    for l2 in sorted(config.l2_grid, reverse=True):
        trials[l2] = _logistic_regression(data, labels[fit_rows], num_labels, l2, init=previous, **options)
        previous = (trials[l2].classifier.weight.detach(), trials[l2].classifier.bias.detach())
    scores = []
    for l2 in config.l2_grid:
        predicted = predict_head(trials[l2], x[valid_rows]).argmax(-1)
        scores.append(float(unweighted_average_recall(predicted, y[valid_rows], num_labels)))
    best = config.l2_grid[int(np.argmax(scores))]
    chosen = HeadFit(trials[best], None, scores, {"l2": best})
    if not refit:
        return chosen
    return refit_stats_head(chosen, x, y, np.concatenate([fit_rows, valid_rows]), num_labels, config)


def refit_stats_head(
    chosen: HeadFit, x: np.ndarray, y: np.ndarray, rows: np.ndarray, num_labels: int, config: StatsHeadConfig
) -> HeadFit:
    """The head of `select_stats_head` (``refit=False``) fitted again on ``rows`` with the L2 strength it
    chose, starting from its weights."""
    start = (chosen.head.classifier.weight.detach(), chosen.head.classifier.bias.detach())
    labels = torch.as_tensor(np.asarray(y)[rows], dtype=torch.long)
    head = _logistic_regression(
        _Standardised.of(x[rows]), labels, num_labels, chosen.chosen["l2"], init=start,
        class_weighted=config.class_weighted, max_iter=config.max_iter,
    )  # fmt: skip
    return HeadFit(head, None, chosen.history, dict(chosen.chosen))


def export_stats_model(head: StatsHead, model: nn.Module) -> LayerStatsForAudioClassification:
    """``model``'s encoder (copied) under ``head``, as a `LayerStatsForAudioClassification`.

    ``model`` is the backbone that produced the cached statistics (its Whisper window included); the
    result predicts from raw audio what ``head`` predicted from them.
    """
    config = model.config
    adaptive = head.speaker_reference is not None
    out = LayerStatsForAudioClassification.from_encoder(
        encoder_of(model), config, id2label=dict(config.id2label), label2id=dict(config.label2id),
        speaker_adaptive=adaptive,
    )  # fmt: skip
    if out.classifier.in_features != head.classifier.in_features:
        raise ValueError(
            f"the head takes {head.classifier.in_features} statistics, the model gives {out.classifier.in_features}"
        )
    out.set_head(head.mean, head.std, head.classifier.weight, head.classifier.bias)
    if adaptive:
        out.set_reference_speaker(head.speaker_reference)
    return out.eval()


def export_model(head: WeightedLayerHead, model: nn.Module) -> nn.Module:
    """Copy a trained head into a standard audio-classification model (``use_weighted_layer_sum=True``).

    ``model`` must have been built with ``use_weighted_layer_sum=True``, ``classifier_proj_size`` equal to
    the head's projector size, and the same encoder (and Whisper window) that produced the features.
    """
    if not getattr(model.config, "use_weighted_layer_sum", False):
        raise ValueError("export_model needs a model built with use_weighted_layer_sum=True")
    if tuple(model.layer_weights.shape) != tuple(head.layer_weights.shape):
        raise ValueError(
            f"the head weighs {head.layer_weights.numel()} layers, the model has {model.layer_weights.numel()}"
        )
    with torch.no_grad():
        model.layer_weights.copy_(head.layer_weights)
        model.projector.load_state_dict(head.projector.state_dict())
        model.classifier.load_state_dict(head.classifier.state_dict())
    return model


def stack_pooled(dataset: Dataset, pooling: str = "window") -> np.ndarray:
    """The ``(clips, layers + 1, hidden)`` array of one pooling from a `layer_features` dataset
    (``(clips, layers + 1, 2 * hidden)`` for ``"stats"``)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    if pooling == "stats":  # (clips, layers + 1, 2 * hidden): the means, then the standard deviations
        return np.concatenate([_column(dataset, "pooled_speech"), _column(dataset, "pooled_std")], axis=-1)
    return _column(dataset, f"pooled_{pooling}")


def _column(dataset: Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy", columns=[name])[name])


def labels_of(dataset: Dataset, column: str = "label") -> np.ndarray:
    return np.asarray(dataset[column], dtype=np.int64)


def center_by_speaker(x: np.ndarray, speakers: Sequence[object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each row of ``x`` minus the mean of its speaker's rows; also returns speaker → that mean."""
    keys = np.asarray([speaker_key(s) for s in speakers])
    if len(keys) != len(x):
        raise ValueError(f"{len(keys)} speakers for {len(x)} rows")
    centred = np.empty_like(x)
    means = {}
    for key in dict.fromkeys(keys):
        rows = keys == key
        means[key] = x[rows].mean(axis=0)
        centred[rows] = x[rows] - means[key]
    return centred, means


__all__: Sequence[str] = (
    "HeadConfig",
    "HeadFit",
    "StatsHead",
    "StatsHeadConfig",
    "WeightedLayerHead",
    "center_by_speaker",
    "encode_corpus",
    "encoder_fingerprint",
    "export_model",
    "export_stats_model",
    "fit_stats_head",
    "layer_features",
    "predict_head",
    "refit_stats_head",
    "select_stats_head",
    "stack_pooled",
    "train_head",
)


# ------------------------------------------------------------------------------------------ strategy
@dataclass
class PreparedCorpus:
    """A corpus encoded once: the usable rows (with labels and speakers) and their pooled layer matrices."""

    dataset: Dataset
    features: np.ndarray
    labels: np.ndarray
    model: nn.Module
    feature_extractor: Any
    label_names: list[str]
    skipped: list[Any] = field(default_factory=list)
    #: With speaker adaptation: each row's speaker key, and each speaker's mean raw statistics
    #: (``features`` then holds the centred statistics).
    speakers: np.ndarray | None = None
    speaker_means: dict[str, np.ndarray] | None = None


@dataclass
class FoldOutcome:
    """What a strategy returns for one fold: test logits (rows in test order) and what it chose."""

    logits: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None


def prepare_encoder(
    corpus: Dataset,
    model_name_or_path: str,
    *,
    trim_silence: bool = True,
    window_seconds: int | None = None,
    proj_size: int = 256,
    decode_cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> tuple[Dataset, str, nn.Module, Any, list[Any]]:
    """Decode the corpus (cached), build the backbone with a weighted-layer head, fit a Whisper window.

    Returns the decoded rows, a key naming the decoded audio, the model, its feature extractor and the
    skipped clips. A Whisper window fits the corpus' longest clip (after silence trimming) unless
    ``window_seconds`` is given; clips longer than the window are cut to it.
    """
    from .features import DecodeSettings, decoded_audio_key, prepare_audio
    from .modeling import load_backbone, shorten_whisper_window, whisper_window_seconds

    label_names = list(corpus.features["label"].names)
    model, feature_extractor = load_backbone(
        model_name_or_path, label_names, use_weighted_layer_sum=True, new_head=True, classifier_proj_size=proj_size
    )
    rate = int(feature_extractor.sampling_rate)
    decoded, skipped = prepare_audio(
        corpus, rate, trim_silence=trim_silence, cache_dir=decode_cache_dir, num_proc=num_proc
    )
    audio_key = decoded_audio_key(corpus, DecodeSettings(rate, trim_silence=trim_silence), skipped, decode_cache_dir)
    if is_whisper(model):
        seconds = window_seconds or whisper_window_seconds(max(decoded["length"]) / rate)
        shorten_whisper_window(model, feature_extractor, seconds)
    return decoded, audio_key, model, feature_extractor, skipped


def encode_corpus(
    corpus: Dataset,
    model_name_or_path: str,
    *,
    proj_size: int,
    pooling: str = "window",
    trainable_top_layers: int | None = None,
    trim_silence: bool = True,
    window_seconds: int | None = None,
    batch_size: int = 16,
    cache_dir: str | os.PathLike | None = None,
    decode_cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    device: str | None = None,
) -> PreparedCorpus:
    """`prepare_encoder`, then `layer_features` (cached): the corpus ready for heads, fold after fold.

    With ``trainable_top_layers=n`` (fixed-window encoders only) the input of the top ``n`` layers is
    kept too, for fine-tuning them on cached inputs (`ser_hf.recipe`).
    """
    decoded, audio_key, model, extractor, skipped = prepare_encoder(
        corpus,
        model_name_or_path,
        trim_silence=trim_silence,
        window_seconds=window_seconds,
        proj_size=proj_size,
        decode_cache_dir=decode_cache_dir,
        num_proc=num_proc,
    )
    keep_layer = None
    if trainable_top_layers is not None:
        if not is_whisper(model):
            raise ValueError(
                f"fine-tuning on cached inputs keeps the input of the top layers of a fixed-window (Whisper) "
                f"encoder; {model.config.model_type} is not one: use strategy='frozen' or `ser-hf train`"
            )
        keep_layer = len(model.encoder.layers) - trainable_top_layers
    encoded = layer_features(
        decoded,
        model,
        extractor,
        audio_key=audio_key,
        batch_size=batch_size,
        cache_dir=cache_dir,
        keep_layer=keep_layer,
        device=device,
    )
    return PreparedCorpus(
        dataset=encoded,
        features=stack_pooled(encoded, pooling),
        labels=labels_of(encoded),
        model=model,
        feature_extractor=extractor,
        label_names=list(corpus.features["label"].names),
        skipped=skipped,
    )


class FrozenStrategy:
    """Frozen encoder, cached pooled layers, a light head per fold (chosen on validation speakers).

    ``head_type="stats"`` (default) fits a `StatsHead` on the mean and std of every layer over the real
    frames, its L2 strength chosen among ``stats_head.l2_grid`` on the validation speakers, and refits it on
    all the fold's training speakers; it saves as a `LayerStatsForAudioClassification`.
    ``head_type="weighted"`` fits a `WeightedLayerHead` on ``pooling`` and saves a plain transformers
    ``*ForAudioClassification``. Its model selection, on the validation speakers only:
    ``selection="refit"`` (default) fits a head for each epoch count in ``epoch_grid`` on the training
    speakers minus the validation speakers, keeps the count with the best validation UA, and fits the
    final head with it on all the fold's training speakers; ``selection="best_epoch"`` fits once and keeps
    the epoch with the best validation UA (the validation speakers never train the head).
    ``speaker_adaptive=True`` (statistics head) centres every clip on its speaker's mean first (see the
    module docstring); the saved model then adapts to a speaker through ``adapt_to_speaker``.
    """

    name = "frozen"

    def __init__(
        self,
        model_name_or_path: str,
        *,
        head_type: str = "stats",
        stats_head: StatsHeadConfig | dict[str, Any] | None = None,
        head: HeadConfig | dict[str, Any] | None = None,
        pooling: str = "window",
        trim_silence: bool = True,
        window_seconds: int | None = None,
        selection: str = "refit",
        epoch_grid: Sequence[int] = (10, 30, 60),
        batch_size: int = 16,
        cache_dir: str | os.PathLike | None = None,
        decode_cache_dir: str | os.PathLike | None = None,
        num_proc: int | None = None,
        device: str | None = None,
        speaker_adaptive: bool = False,
    ):
        if head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, not {head_type!r}")
        if speaker_adaptive and head_type != "stats":
            raise ValueError("speaker_adaptive needs the statistics head (head_type='stats')")
        self.speaker_adaptive = bool(speaker_adaptive)
        if pooling not in POOLINGS[:2]:
            raise ValueError(f"pooling must be one of {POOLINGS[:2]} (the weighted head's), not {pooling!r}")
        self.model_name_or_path, self.head_type = model_name_or_path, head_type
        self.stats_head = (
            stats_head if isinstance(stats_head, StatsHeadConfig) else StatsHeadConfig(**(stats_head or {}))
        )
        self.head = head if isinstance(head, HeadConfig) else HeadConfig(**(head or {}))
        self.pooling = "stats" if head_type == "stats" else pooling
        self.trim_silence, self.window_seconds = trim_silence, window_seconds
        if selection not in ("refit", "best_epoch"):
            raise ValueError(f"selection must be 'refit' or 'best_epoch', not {selection!r}")
        self.selection, self.epoch_grid, self.batch_size = selection, tuple(int(e) for e in epoch_grid), batch_size
        self.cache_dir, self.decode_cache_dir, self.num_proc = cache_dir, decode_cache_dir, num_proc
        self.device = device

    @property
    def refits_on_validation(self) -> bool:
        """Whether the final head is fitted again with the validation speakers once they have chosen."""
        return self.head_type == "stats" or self.selection == "refit"

    def settings(self) -> dict[str, Any]:
        common = {
            "head_type": self.head_type,
            "pooling": self.pooling,
            "trim_silence": self.trim_silence,
            "window_seconds": self.window_seconds,
            "device": str(self.device or default_device()),
        }
        if self.head_type == "stats":
            adaptive = {"speaker_adaptive": SPEAKER_ADAPTIVE_NOTE} if self.speaker_adaptive else {}
            return {**common, **adaptive, "stats_head": dataclasses.asdict(self.stats_head)}
        return {
            **common,
            "selection": self.selection,
            "epoch_grid": list(self.epoch_grid) if self.selection == "refit" else None,
            "head": dict(self.head.__dict__),
        }

    def prepare(self, corpus: Dataset, *, speaker_column: str = "speaker") -> PreparedCorpus:
        prepared = encode_corpus(
            corpus,
            self.model_name_or_path,
            proj_size=self.head.proj_size,
            pooling=self.pooling,
            trim_silence=self.trim_silence,
            window_seconds=self.window_seconds,
            batch_size=self.batch_size,
            cache_dir=self.cache_dir,
            decode_cache_dir=self.decode_cache_dir,
            num_proc=self.num_proc,
            device=self.device,
        )
        if is_whisper(prepared.model):
            self.window_seconds = int(prepared.feature_extractor.chunk_length)
            if self.head_type == "stats":
                use_real_frames(prepared.feature_extractor)
        if self.speaker_adaptive:
            if speaker_column not in prepared.dataset.column_names:
                raise ValueError(f"speaker_adaptive needs a speaker column; {speaker_column!r} is not one")
            speakers = prepared.dataset[speaker_column]
            prepared.features, prepared.speaker_means = center_by_speaker(prepared.features, speakers)
            prepared.speakers = np.asarray([speaker_key(s) for s in speakers])
        return prepared

    def fit(self, prepared: PreparedCorpus, fit_rows: np.ndarray, valid_rows: np.ndarray) -> HeadFit:
        x, y = prepared.features, prepared.labels
        n = len(prepared.label_names)
        if self.head_type == "stats":
            fitted = select_stats_head(x, y, fit_rows, valid_rows, n, self.stats_head)
            if prepared.speaker_means is not None and prepared.speakers is not None:
                trained = dict.fromkeys(prepared.speakers[np.concatenate([fit_rows, valid_rows])])
                reference = np.mean([prepared.speaker_means[k] for k in trained], axis=0)
                fitted.head.speaker_reference = torch.as_tensor(reference, dtype=torch.float32)
            return fitted
        if len(valid_rows) == 0:
            return train_head(x[fit_rows], y[fit_rows], n, self.head)
        if self.selection == "best_epoch":
            return train_head(x[fit_rows], y[fit_rows], n, self.head, valid_x=x[valid_rows], valid_y=y[valid_rows])
        scores = []
        for epochs in self.epoch_grid:
            trial = train_head(x[fit_rows], y[fit_rows], n, dataclasses.replace(self.head, epochs=epochs))
            predicted = predict_head(trial.head, x[valid_rows]).argmax(-1)
            scores.append(unweighted_average_recall(predicted, y[valid_rows], n))
        best = self.epoch_grid[int(np.argmax(scores))]
        rows = np.concatenate([fit_rows, valid_rows])
        final = train_head(x[rows], y[rows], n, dataclasses.replace(self.head, epochs=best))
        return HeadFit(final.head, best, [float(v) for v in scores])

    def run_fold(
        self, prepared: PreparedCorpus, fit_rows: np.ndarray, valid_rows: np.ndarray, test_rows: np.ndarray, **_: Any
    ) -> FoldOutcome:
        fitted = self.fit(prepared, fit_rows, valid_rows)
        logits = predict_head(fitted.head, prepared.features[test_rows])
        best = max(fitted.history) if fitted.history else None
        return FoldOutcome(logits, {"epoch": fitted.epoch, "validation_ua": best, **fitted.chosen}, fitted.head)

    def export(self, prepared: PreparedCorpus, head: nn.Module) -> nn.Module:
        """The model to save: a `LayerStatsForAudioClassification` (stats head) or a copy of the prepared
        standard ``*ForAudioClassification`` backbone carrying the weighted head."""
        if self.head_type == "stats":
            return export_stats_model(head, prepared.model)
        if self.pooling != "window":
            logger.warning(
                "the head was trained on speech-only pooling; the standard model pools over its whole input "
                "window, so its predictions will differ from the head's"
            )
        return export_model(head, copy.deepcopy(prepared.model))


def use_real_frames(feature_extractor: Any) -> None:
    """Have a Whisper feature extractor return the attention mask that tells a statistics head the real frames
    (saved with the model, so `pipeline` passes it too). The encoder itself ignores the mask."""
    feature_extractor.return_attention_mask = True
