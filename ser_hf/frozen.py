"""The frozen-encoder fast path: pooled hidden states of every layer, cached once; a light head on top.

Speech encoders are expensive and their heads are cheap. `layer_features` runs the encoder once per
clip and keeps, for every hidden layer, the mean over time (a ``(layers + 1, hidden)`` matrix per clip),
cached through `datasets` in an Arrow file keyed by the encoder's weights, the feature extractor and the
decoded audio, so every fold, epoch and later run reuses it. `train_head` fits `WeightedLayerHead`
(softmax weights over layers → linear projector → linear classifier) on those matrices in seconds.

The head is exactly the head of transformers' ``*ForAudioClassification`` /
``*ForSequenceClassification`` with ``use_weighted_layer_sum=True``: the projector is linear, so mean
pooling commutes with it. `export_model` copies the head into such a standard model, which then predicts
from raw audio exactly what the head predicted from the cached features (`EmotionRecognizer` and
`pipeline("audio-classification")` load it unchanged).

Pooling: the standard Whisper head averages **every** position of its fixed input window (padding
included; it takes no mask), so ser-hf trains the Whisper head on that same window average
(``pooling="window"``) and fits the window tightly to the clips (silence trimmed, window shortened)
so the padding stays small. ``pooling="speech"`` (the clip's own frames only) is cached too, for
measurement; a model saved from it would not reproduce the head (see `export_model`).
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
from .modeling import WHISPER_POSITIONS_PER_SECOND, is_whisper

logger = logging.getLogger(__name__)

#: Bump when feature extraction changes, so old caches are not reused.
FEATURES_VERSION = "1"
#: Pooling choices: over the model's whole input (what the standard head does) or the clip's frames only.
POOLINGS = ("window", "speech")


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
    window, speech = [], []
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
        speech.append(hidden[i, :, :n].mean(dim=1).float().numpy())
    out = {"pooled_window": window, "pooled_speech": speech}
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
    """Add ``pooled_window`` and ``pooled_speech`` (``(layers + 1, hidden)`` float32 per clip) to ``decoded``.

    ``decoded`` comes from `ser_hf.features.prepare_audio`; ``audio_key`` identifies its decoded audio
    (e.g. the decode cache file name). The result is cached in an Arrow file keyed by ``audio_key``
    and `encoder_fingerprint`, so the same model on the same audio is encoded once, ever.
    ``pooled_window`` is pooled the way the standard head pools at inference (clip by clip), and
    ``pooled_speech`` over the clip's own frames only. With ``keep_layer=k`` (fixed-window models), the
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
    features = datasets.Features({"pooled_window": matrix, "pooled_speech": matrix})
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
    """A trained head, the epoch it was taken from, and the validation UA per epoch."""

    head: WeightedLayerHead
    epoch: int
    history: list[float]


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
    """The ``(clips, layers + 1, hidden)`` array of one pooling from a `layer_features` dataset."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    return np.asarray(dataset.with_format("numpy", columns=[f"pooled_{pooling}"])[f"pooled_{pooling}"])


def labels_of(dataset: Dataset, column: str = "label") -> np.ndarray:
    return np.asarray(dataset[column], dtype=np.int64)


__all__: Sequence[str] = (
    "HeadConfig",
    "HeadFit",
    "WeightedLayerHead",
    "encode_corpus",
    "encoder_fingerprint",
    "export_model",
    "layer_features",
    "predict_head",
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
    """Frozen encoder, cached pooled layers, `WeightedLayerHead` per fold (chosen on validation speakers).

    Model selection per fold, on its validation speakers only (drawn from its training speakers):
    ``selection="refit"`` (default) fits a head for each epoch count in ``epoch_grid`` on the training
    speakers minus the validation speakers, keeps the count with the best validation UA, and fits the
    final head with it on all the fold's training speakers; ``selection="best_epoch"`` fits once and keeps
    the epoch with the best validation UA (the validation speakers never train the head).
    """

    name = "frozen"

    def __init__(
        self,
        model_name_or_path: str,
        *,
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
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.model_name_or_path = model_name_or_path
        self.head = head if isinstance(head, HeadConfig) else HeadConfig(**(head or {}))
        self.pooling, self.trim_silence, self.window_seconds = pooling, trim_silence, window_seconds
        if selection not in ("refit", "best_epoch"):
            raise ValueError(f"selection must be 'refit' or 'best_epoch', not {selection!r}")
        self.selection, self.epoch_grid, self.batch_size = selection, tuple(int(e) for e in epoch_grid), batch_size
        self.cache_dir, self.decode_cache_dir, self.num_proc = cache_dir, decode_cache_dir, num_proc
        self.device = device

    def settings(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "trim_silence": self.trim_silence,
            "window_seconds": self.window_seconds,
            "device": str(self.device or default_device()),
            "selection": self.selection,
            "epoch_grid": list(self.epoch_grid) if self.selection == "refit" else None,
            "head": dict(self.head.__dict__),
        }

    def prepare(self, corpus: Dataset) -> PreparedCorpus:
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
        return prepared

    def fit(self, prepared: PreparedCorpus, fit_rows: np.ndarray, valid_rows: np.ndarray) -> HeadFit:
        x, y = prepared.features, prepared.labels
        n = len(prepared.label_names)
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
        return FoldOutcome(logits, {"epoch": fitted.epoch, "validation_ua": best}, fitted.head)

    def export(self, prepared: PreparedCorpus, head: WeightedLayerHead) -> nn.Module:
        """A standard ``*ForAudioClassification`` model (copy of the prepared backbone) carrying ``head``."""
        if self.pooling != "window":
            logger.warning(
                "the head was trained on speech-only pooling; the standard model pools over its whole input "
                "window, so its predictions will differ from the head's"
            )
        return export_model(head, copy.deepcopy(prepared.model))
