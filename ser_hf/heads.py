"""The heads ser-hf fits on cached encoder features (phase 1 of training, the probe), and speaker normalisation.

- `StatsHead`: the mean and standard deviation of every layer over the clip's real frames, standardised,
  then one linear classifier, fitted to convergence by full-batch L-BFGS (multinomial logistic regression;
  the L2 strength chosen on validation speakers, then refitted with them: `select_stats_head`). It is the
  head of `ser_hf.layer_stats.LayerStatsForAudioClassification`.
- `WeightedLayerHead`: transformers' own head (softmax weights over layers → projector → classifier), fitted
  with AdamW on the mean over the model's whole input (`select_weighted_head`); it exports into a plain
  ``*ForAudioClassification`` checkpoint.
- `SpeakerNormalizer`: each speaker's statistics mapped onto the training speakers' average voice (their
  mean and spread per feature). The statistics head is trained on every clip twice, as heard and so
  normalised, so one model predicts from a single clip and, once it has heard a speaker, better still.

Rows are weighted so that every class, and every corpus of a multi-corpus set, counts equally
(`balance_weights`); with a label mask, a clip's loss ignores the labels its corpus never annotates.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .evaluation import unweighted_average_recall
from .layer_stats import LayerStatsForAudioClassification

#: L2 strengths the validation speakers choose from (strongest first is how they are fitted).
DEFAULT_L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: A speaker's spread is never taken below this share of the reference spread (few or identical clips).
MIN_SPREAD_RATIO = 0.2
#: How many clips' worth of weight the training speakers' average keeps in a speaker's blended estimate.
DEFAULT_PRIOR_CLIPS = 2.0


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run small models on ``n`` threads (more threads only add synchronisation cost to tiny matrices)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def predict_head(head: nn.Module, pooled: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Logits of ``head`` for pooled layer matrices."""
    head.eval()
    x = torch.as_tensor(np.asarray(pooled), dtype=torch.float32)
    with torch.inference_mode():
        return torch.cat([head(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def balance_weights(labels: np.ndarray, num_labels: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Per-row weights (mean 1) under which every label, and every group (corpus), weighs the same.

    Within a group each present label gets an equal share of the group's weight; groups weigh equally.
    """
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), dtype=int) if groups is None else np.asarray(groups)
    weights = np.zeros(len(labels), dtype=np.float64)
    names = list(dict.fromkeys(groups.tolist()))
    for group in names:
        in_group = groups == group
        present = np.unique(labels[in_group])
        for label in present:
            cell = in_group & (labels == label)
            weights[cell] = 1.0 / (len(names) * len(present) * cell.sum())
    return (weights * len(labels) / weights.sum()).astype(np.float32)


def label_masks(corpora: np.ndarray, label_sets: dict[str, Sequence[int]] | None, num_labels: int) -> np.ndarray | None:
    """``(rows, labels)`` booleans: the labels each row's corpus annotates (``None``: every label everywhere)."""
    if not label_sets:
        return None
    mask = np.zeros((len(corpora), num_labels), dtype=bool)
    for corpus, labels in label_sets.items():
        mask[np.ix_(np.asarray(corpora) == corpus, list(labels))] = True
    mask[~mask.any(axis=1)] = True
    return mask


# ----------------------------------------------------------------------------------- speaker normalisation
@dataclass
class SpeakerNormalizer:
    """Map a speaker's statistics onto the reference voice: ``(x - mean_s) / spread_s * spread + mean``.

    ``mean`` and ``spread`` (flattened statistics) are the training speakers' averages of their own means
    and standard deviations. A speaker heard in ``n`` clips is estimated with the reference blended in as
    ``prior_clips`` clips' worth of evidence, so a speaker heard little moves the clips little.
    """

    mean: np.ndarray
    spread: np.ndarray
    prior_clips: float = DEFAULT_PRIOR_CLIPS

    @classmethod
    def fit(cls, x: np.ndarray, speakers: np.ndarray, prior_clips: float = DEFAULT_PRIOR_CLIPS) -> SpeakerNormalizer:
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        means, spreads = [], []
        for speaker in dict.fromkeys(np.asarray(speakers).tolist()):
            rows = flat[np.asarray(speakers) == speaker]
            if len(rows) >= 2:
                means.append(rows.mean(axis=0))
                spreads.append(rows.std(axis=0))
        if not means:
            raise ValueError("speaker normalisation needs at least one speaker with two clips or more")
        spread = np.mean(spreads, axis=0)
        return cls(np.mean(means, axis=0).astype(np.float32), np.maximum(spread, 1e-6).astype(np.float32), prior_clips)

    def estimate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A speaker's (mean, spread) from their clips' statistics, blended with the reference."""
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return blend_speaker(
            flat.sum(axis=0), np.square(flat).sum(axis=0), len(flat), self.mean, self.spread, self.prior_clips
        )

    def apply(self, x: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
        shape = x.shape
        flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return ((flat - mean) / spread * self.spread + self.mean).reshape(shape).astype(np.float32)

    def normalize(self, x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
        """Every row mapped with its own speaker's estimate (from all of that speaker's rows in ``x``)."""
        out = np.empty_like(np.asarray(x, dtype=np.float32))
        speakers = np.asarray(speakers)
        for speaker in dict.fromkeys(speakers.tolist()):
            rows = speakers == speaker
            out[rows] = self.apply(x[rows], *self.estimate(x[rows]))
        return out


def blend_speaker(
    total: np.ndarray,
    total_squares: np.ndarray,
    count: float,
    mean: np.ndarray,
    spread: np.ndarray,
    prior_clips: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A speaker's (mean, spread) from running sums over ``count`` clips, with the reference (``mean``,
    ``spread``) counted as ``prior_clips`` clips; the spread never below `MIN_SPREAD_RATIO` of the reference."""
    mean = np.asarray(mean, dtype=np.float64)
    reference_square = np.square(np.asarray(spread, dtype=np.float64)) + np.square(mean)
    n = float(count) + float(prior_clips)
    if n <= 0:
        return mean.astype(np.float32), np.asarray(spread, dtype=np.float32)
    blended_mean = (np.asarray(total, dtype=np.float64) + prior_clips * mean) / n
    blended_square = (np.asarray(total_squares, dtype=np.float64) + prior_clips * reference_square) / n
    blended_spread = np.sqrt(np.maximum(blended_square - np.square(blended_mean), 0.0))
    blended_spread = np.maximum(blended_spread, MIN_SPREAD_RATIO * np.asarray(spread, dtype=np.float64))
    return blended_mean.astype(np.float32), blended_spread.astype(np.float32)


# ----------------------------------------------------------------------------------------- statistics head
class StatsHead(nn.Module):
    """Standardise the flattened ``(layers, 2 * hidden)`` statistics of a clip, then one linear classifier.

    The head of `ser_hf.layer_stats.LayerStatsForAudioClassification`, on cached statistics; ``speakers``
    (a `SpeakerNormalizer`) is set when it was trained to adapt to speakers.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten().clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten().clone())
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(torch.as_tensor(weight))
            self.classifier.bias.copy_(torch.as_tensor(bias))
        self.speakers: SpeakerNormalizer | None = None

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.classifier((statistics.flatten(1) - self.mean) / self.std)


@dataclass
class StatsHeadConfig:
    """How `select_stats_head` fits the statistics head, and which L2 strengths validation chooses from."""

    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    #: Used when there are no validation speakers to choose with.
    l2: float = 1e-2
    max_iter: int = 300
    #: Train on every clip as heard and normalised to its speaker (a model that adapts; see the module doc).
    speaker_adaptive: bool = True
    prior_clips: float = DEFAULT_PRIOR_CLIPS


@dataclass
class HeadFit:
    """A fitted head, what validation chose, and the validation UA of each choice."""

    head: nn.Module
    chosen: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    @property
    def validation_ua(self) -> float | None:
        return max(self.history) if self.history else None


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
    sample_weight: torch.Tensor,
    label_mask: torch.Tensor | None,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> StatsHead:
    """Weighted mean cross-entropy (over each row's allowed labels) + ``l2 * |W|²``, minimised by full-batch
    L-BFGS from ``init`` (full-space weight and bias; zeros by default)."""
    z = data.coordinates
    if init is None:
        weight, bias = torch.zeros(num_labels, z.shape[1]), torch.zeros(num_labels)
    else:
        weight, bias = data.to_coordinates(init[0].float()), init[1].float().clone()
    weight, bias = weight.clone().requires_grad_(True), bias.requires_grad_(True)
    offset = None if label_mask is None else torch.where(label_mask, 0.0, -1e4)
    normaliser = sample_weight.sum()
    with torch_threads(1):
        optimizer = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-6, tolerance_change=1e-9,
        )  # fmt: skip

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = z @ weight.T + bias
            if offset is not None:
                logits = logits + offset
            losses = nn.functional.cross_entropy(logits, y, reduction="none")
            loss = (losses * sample_weight).sum() / normaliser + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return data.head(weight.detach(), bias.detach())


def fit_stats_head(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray,
    num_labels: int,
    l2: float,
    *,
    sample_weight: np.ndarray | None = None,
    label_mask: np.ndarray | None = None,
    max_iter: int = 300,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> StatsHead:
    """Fit a `StatsHead` on statistics ``(clips, layers, 2 * hidden)``: multinomial logistic regression.

    Minimises the weighted mean cross-entropy plus ``l2 * |W|²`` on standardised features to convergence
    with full-batch L-BFGS (deterministic; a second or two for a thousand clips). ``sample_weight`` defaults
    to `balance_weights` over the labels.
    """
    y_tensor = torch.as_tensor(np.asarray(y), dtype=torch.long)
    weights = balance_weights(np.asarray(y), num_labels) if sample_weight is None else sample_weight
    return _logistic_regression(
        _Standardised.of(x), y_tensor, num_labels, l2,
        sample_weight=torch.as_tensor(np.asarray(weights), dtype=torch.float32),
        label_mask=None if label_mask is None else torch.as_tensor(np.asarray(label_mask)),
        max_iter=max_iter, init=init,
    )  # fmt: skip


@dataclass
class ProbeData:
    """What the probe fits on: statistics, labels, speakers, and per-row weights and label masks."""

    x: np.ndarray
    y: np.ndarray
    speakers: np.ndarray
    num_labels: int
    groups: np.ndarray | None = None
    masks: np.ndarray | None = None

    def training_rows(
        self, rows: np.ndarray, config: StatsHeadConfig
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, SpeakerNormalizer | None]:
        """(x, y, weights, masks, speaker normaliser) for fitting on ``rows``: with speaker adaptation every
        row twice, as heard and normalised to its speaker."""
        x, y = self.x[rows], self.y[rows]
        groups = None if self.groups is None else self.groups[rows]
        masks = None if self.masks is None else self.masks[rows]
        weights = balance_weights(y, self.num_labels, groups)
        if not config.speaker_adaptive:
            return x, y, weights, masks, None
        normalizer = SpeakerNormalizer.fit(x, self.speakers[rows], config.prior_clips)
        normalised = normalizer.normalize(x, self.speakers[rows])
        both_masks = None if masks is None else np.concatenate([masks, masks])
        return (
            np.concatenate([x, normalised]),
            np.concatenate([y, y]),
            np.concatenate([weights, weights]),
            both_masks,
            normalizer,
        )


def select_stats_head(
    data: ProbeData,
    fit_rows: np.ndarray,
    valid_rows: np.ndarray,
    config: StatsHeadConfig,
    *,
    refit: bool = True,
    refit_rows: np.ndarray | None = None,
) -> HeadFit:
    """Choose the L2 strength on the validation rows (as heard, one clip at a time), then refit with it on
    ``refit_rows`` (default: fitting + validation rows; ``refit=False``: keep the head fitted on the fitting
    rows alone).

    The grid is fitted from the strongest L2 down, each fit starting from the last (the same optima,
    sooner); the refit starts from the chosen fit.
    """
    x, y, weights, masks, normalizer = data.training_rows(fit_rows, config)
    common = {"sample_weight": weights, "label_mask": masks, "max_iter": config.max_iter}
    if len(valid_rows) == 0:
        head = fit_stats_head(x, y, data.num_labels, config.l2, **common)
        head.speakers = normalizer
        return HeadFit(head, {"l2": config.l2})
    standardised = _Standardised.of(x)
    labels = torch.as_tensor(y, dtype=torch.long)
    tensors = {
        "sample_weight": torch.as_tensor(weights, dtype=torch.float32),
        "label_mask": None if masks is None else torch.as_tensor(masks),
        "max_iter": config.max_iter,
    }
    trials: dict[float, StatsHead] = {}
    previous = None
    for l2 in sorted(config.l2_grid, reverse=True):
        trials[l2] = _logistic_regression(standardised, labels, data.num_labels, l2, init=previous, **tensors)
        previous = (trials[l2].classifier.weight.detach(), trials[l2].classifier.bias.detach())
    scores = []
    for l2 in config.l2_grid:
        predicted = predict_head(trials[l2], data.x[valid_rows]).argmax(-1)
        scores.append(float(unweighted_average_recall(predicted, data.y[valid_rows], data.num_labels)))
    best = config.l2_grid[int(np.argmax(scores))]
    chosen = HeadFit(trials[best], {"l2": best}, scores)
    chosen.head.speakers = normalizer
    if not refit:
        return chosen
    rows = np.concatenate([fit_rows, valid_rows]) if refit_rows is None else refit_rows
    return refit_stats_head(chosen, data, rows, config)


def refit_stats_head(chosen: HeadFit, data: ProbeData, rows: np.ndarray, config: StatsHeadConfig) -> HeadFit:
    """The chosen head fitted again on ``rows`` with the L2 strength it chose, starting from its weights."""
    x, y, weights, masks, normalizer = data.training_rows(rows, config)
    start = (chosen.head.classifier.weight.detach(), chosen.head.classifier.bias.detach())
    head = fit_stats_head(
        x, y, data.num_labels, chosen.chosen["l2"], sample_weight=weights, label_mask=masks,
        max_iter=config.max_iter, init=start,
    )  # fmt: skip
    head.speakers = normalizer
    return HeadFit(head, dict(chosen.chosen), list(chosen.history))


# ------------------------------------------------------------------------------------ weighted-layer head
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
class WeightedHeadConfig:
    """How `train_weighted_head` fits the weighted-layer head (AdamW, warm-up then cosine decay)."""

    proj_size: int = 32
    epochs: int = 30
    #: Epoch counts the validation speakers choose from.
    epoch_grid: tuple[int, ...] = (10, 30, 60)
    learning_rate: float = 5e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    standardize: str = "layers"
    seed: int = 0


@dataclass
class FeatureNormalizer:
    """Normalisation of pooled layer matrices that folds exactly into a `WeightedLayerHead`.

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


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to zero."""
    warmup = max(1, int(total_steps * warmup_fraction))
    total = max(1, total_steps)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_weighted_head(
    x: np.ndarray,
    y: np.ndarray,
    num_labels: int,
    config: WeightedHeadConfig | None = None,
    *,
    sample_weight: np.ndarray | None = None,
    label_mask: np.ndarray | None = None,
) -> WeightedLayerHead:
    """Fit a `WeightedLayerHead` on pooled layer matrices ``(clips, layers + 1, hidden)`` for
    ``config.epochs`` epochs; returned folded onto raw (unnormalised) features."""
    config = config or WeightedHeadConfig()
    with torch_threads(1):
        generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        features = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
        weights = torch.as_tensor(
            balance_weights(np.asarray(y), num_labels) if sample_weight is None else sample_weight, dtype=torch.float32
        )
        offset = None if label_mask is None else torch.where(torch.as_tensor(np.asarray(label_mask)), 0.0, -1e4)
        normalizer = FeatureNormalizer.fit(features, config.standardize)
        features = normalizer(features)
        head = WeightedLayerHead(features.shape[1], features.shape[2], config.proj_size, num_labels)
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        schedule = warmup_cosine(optimizer, config.epochs * math.ceil(len(features) / config.batch_size))
        for _ in range(config.epochs):
            head.train()
            order = torch.randperm(len(features), generator=generator)
            for start in range(0, len(features), config.batch_size):
                rows = order[start : start + config.batch_size]
                logits = head(features[rows])
                if offset is not None:
                    logits = logits + offset[rows]
                losses = nn.functional.cross_entropy(logits, labels[rows], reduction="none")
                loss = (losses * weights[rows]).sum() / weights[rows].sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        return normalizer.fold(head)


def select_weighted_head(
    data: ProbeData,
    fit_rows: np.ndarray,
    valid_rows: np.ndarray,
    config: WeightedHeadConfig,
    *,
    refit: bool = True,
    refit_rows: np.ndarray | None = None,
) -> HeadFit:
    """Choose the number of epochs among ``config.epoch_grid`` on the validation rows, then fit with it on
    ``refit_rows`` (default: fitting + validation rows; ``refit=False``: keep the fit on the fitting rows)."""

    def fit(rows: np.ndarray, epochs: int) -> WeightedLayerHead:
        groups = None if data.groups is None else data.groups[rows]
        weights = balance_weights(data.y[rows], data.num_labels, groups)
        masks = None if data.masks is None else data.masks[rows]
        trial = WeightedHeadConfig(**{**config.__dict__, "epochs": epochs})
        return train_weighted_head(data.x[rows], data.y[rows], data.num_labels, trial, sample_weight=weights,
                                   label_mask=masks)  # fmt: skip

    if len(valid_rows) == 0:
        return HeadFit(fit(fit_rows, config.epochs), {"epochs": config.epochs})
    trials = {epochs: fit(fit_rows, epochs) for epochs in config.epoch_grid}
    scores = [
        float(
            unweighted_average_recall(
                predict_head(trials[e], data.x[valid_rows]).argmax(-1), data.y[valid_rows], data.num_labels
            )
        )
        for e in config.epoch_grid
    ]
    best = config.epoch_grid[int(np.argmax(scores))]
    rows = np.concatenate([fit_rows, valid_rows]) if refit_rows is None else refit_rows
    head = fit(rows, best) if refit else trials[best]
    return HeadFit(head, {"epochs": best}, scores)


# ------------------------------------------------------------------------------------------------- export
def export_stats_model(head: StatsHead, model: nn.Module) -> LayerStatsForAudioClassification:
    """``model``'s encoder (copied) under ``head``, as a `LayerStatsForAudioClassification`.

    ``model`` is the backbone that produced the cached statistics (its Whisper window included); the result
    predicts from raw audio what ``head`` predicted from them, and adapts to speakers when ``head`` was
    trained to (``head.speakers``).
    """
    from .modeling import encoder_of

    config = model.config
    adaptive = head.speakers is not None
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
        out.set_reference_speaker(torch.as_tensor(head.speakers.mean), torch.as_tensor(head.speakers.spread))
    return out.eval()


def export_weighted_model(head: WeightedLayerHead, model: nn.Module) -> nn.Module:
    """Copy a fitted weighted-layer head into a standard audio-classification model (built with
    ``use_weighted_layer_sum=True``, a projector of the head's size and the encoder that made the features)."""
    if not getattr(model.config, "use_weighted_layer_sum", False):
        raise ValueError("the model must be built with use_weighted_layer_sum=True")
    if tuple(model.layer_weights.shape) != tuple(head.layer_weights.shape):
        raise ValueError(
            f"the head weighs {head.layer_weights.numel()} layers, the model has {model.layer_weights.numel()}"
        )
    if model.projector.out_features != head.projector.out_features:
        model.projector = copy.deepcopy(head.projector)
        model.classifier = copy.deepcopy(head.classifier)
        model.config.classifier_proj_size = head.projector.out_features
    with torch.no_grad():
        model.layer_weights.copy_(head.layer_weights)
        model.projector.load_state_dict(head.projector.state_dict())
        model.classifier.load_state_dict(head.classifier.state_dict())
    return model.eval()


__all__ = [
    "DEFAULT_L2_GRID",
    "FeatureNormalizer",
    "HeadFit",
    "ProbeData",
    "SpeakerNormalizer",
    "StatsHead",
    "StatsHeadConfig",
    "WeightedHeadConfig",
    "WeightedLayerHead",
    "balance_weights",
    "blend_speaker",
    "export_stats_model",
    "export_weighted_model",
    "fit_stats_head",
    "label_masks",
    "predict_head",
    "refit_stats_head",
    "select_stats_head",
    "select_weighted_head",
    "torch_threads",
    "train_weighted_head",
    "warmup_cosine",
]
