"""Encode a corpus once: the statistics of every encoder layer per clip, cached, for every fold and later run.

Speech encoders are expensive and the heads ser-hf trains on them are cheap. `encode_corpus` decodes the
corpus (`ser_hf.features.prepare_audio`), loads the pretrained encoder (`ser_hf.modeling.load_backbone`),
runs it once per clip and keeps, for every hidden layer, statistics over time:

- ``pooled_speech`` / ``pooled_std``: the mean and standard deviation over the clip's real frames, what
  `ser_hf.layer_stats.LayerStatsForAudioClassification` pools (the statistics head's input);
- ``pooled_window``: the mean over the model's whole input, what transformers' standard heads pool (the
  weighted-layer head's input; Whisper pads every clip to its window, padding included);
- with ``keep_layer=k``, ``hidden_state``: the input of encoder layer ``k`` whole, ``(positions, hidden)``,
  for fine-tuning the layers above it on cached inputs (`ser_hf.top_layers`).

The result is cached through `datasets` in an Arrow file keyed by the decoded audio, the encoder's
weights and config, and the feature extractor, so the same model on the same audio is encoded once, ever.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn

from .augment import AUGMENT_VERSION
from .features import (
    AudioCollator,
    DecodeSettings,
    SkippedClip,
    add_waveform_columns,
    cache_folder,
    decoded_audio_key,
    extractor_settings,
    is_cached,
    is_fixed_window,
    min_input_samples,
    prepare_audio,
    weights_digest,
    window_samples,
)
from .hardware import default_device
from .layer_stats import masked_mean_std
from .modeling import (
    WHISPER_POSITIONS_PER_SECOND,
    encoder_layers,
    encoder_of,
    is_whisper,
    load_backbone,
    shorten_whisper_window,
    whisper_window_seconds,
)
from .splits import speaker_key

logger = logging.getLogger(__name__)

#: Bump when feature extraction changes, so old caches are not reused.
FEATURES_VERSION = "3"
#: What a cached corpus holds per clip (see the module docstring).
POOLED_COLUMNS = ("pooled_window", "pooled_speech", "pooled_std")


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


def clips_share_batches(feature_extractor: Any) -> bool:
    """Whether clips can share a batch without changing each other's features (a mask or a fixed window).

    wav2vec2-base-style extractors give no attention mask, and zero padding shifts those models' outputs.
    """
    return is_fixed_window(feature_extractor) or bool(getattr(feature_extractor, "return_attention_mask", False))


@torch.inference_mode()
def _pool_batch(
    batch: dict[str, list[Any]], model: nn.Module, collator: AudioCollator, keep_layer: int | None
) -> dict[str, list[Any]]:
    waveforms = [np.asarray(w, dtype=np.float32) for w in batch["waveform"]]
    device = next(model.parameters()).device
    inputs = {name: tensor.to(device) for name, tensor in collator.encode(waveforms).items()}
    outputs = encoder_of(model)(**inputs, output_hidden_states=True)
    hidden = torch.stack(outputs.hidden_states, dim=1).float().cpu()  # (batch, layers + 1, positions, hidden)
    positions = hidden.shape[2]
    if "attention_mask" in inputs and not is_whisper(model):
        lengths = model._get_feature_vector_attention_mask(positions, inputs["attention_mask"]).sum(-1).cpu()
    else:
        window = collator.max_samples
        lengths = torch.tensor(
            [
                speech_positions(model, collator.feature_extractor, min(w.shape[0], window or w.shape[0]), positions)
                for w in waveforms
            ]
        )
    if is_whisper(model):  # the standard head averages the whole window, padding included
        window_means = list(hidden.mean(dim=2).numpy())
    else:
        window_means = list(masked_mean_std(hidden, lengths)[..., : hidden.shape[-1]].numpy())
    speech, spread = masked_mean_std(hidden, lengths).chunk(2, dim=-1)
    out = {"pooled_window": window_means, "pooled_speech": list(speech.numpy()), "pooled_std": list(spread.numpy())}
    out["positions"] = [int(n) for n in lengths]
    if keep_layer is not None:
        kept = hidden[:, keep_layer]
        out["hidden_state"] = [
            kept[i, : (positions if is_whisper(model) else int(n))].numpy() for i, n in enumerate(lengths)
        ]
    return out


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
    """``decoded`` with the pooled columns (``(layers + 1, hidden)`` float32 per clip), ``positions`` (the
    clip's real encoder positions) and, with ``keep_layer``, ``hidden_state``.

    ``decoded`` comes from `ser_hf.features.prepare_audio`; ``audio_key`` names its decoded audio. The
    encoder runs on ``device`` (default: the GPU when there is one); the model is back on the CPU afterwards.
    """
    model.eval()
    key = Hasher.hash((FEATURES_VERSION, audio_key, encoder_fingerprint(model, feature_extractor), keep_layer))
    suffix = "" if keep_layer is None else f"-h{keep_layer}"
    cache_file = cache_folder(cache_dir) / f"layers{suffix}-{key}.arrow"
    collator = AudioCollator(
        feature_extractor, max_samples=window_samples(feature_extractor), min_samples=min_input_samples(model.config)
    )
    hidden = model.config.d_model if is_whisper(model) else model.config.hidden_size
    layers = len(encoder_layers(model)) + 1
    matrix = datasets.Array2D(shape=(layers, hidden), dtype="float32")
    features = datasets.Features({name: matrix for name in POOLED_COLUMNS})
    features["positions"] = datasets.Value("int64")
    if keep_layer is not None:
        rows = int(model.config.max_source_positions) if is_whisper(model) else None
        features["hidden_state"] = datasets.Array2D(shape=(rows, hidden), dtype="float32")
    encoder = model if is_cached(cache_file) else model.to(device or default_device())
    try:
        return add_waveform_columns(
            decoded,
            _pool_batch,
            fn_kwargs={"model": encoder, "collator": collator, "keep_layer": keep_layer},
            features=features,
            cache_file=cache_file,
            desc="Encoding (every layer, once)",
            batch_size=batch_size if clips_share_batches(feature_extractor) else 1,
        )
    finally:
        model.to("cpu")


@dataclass
class EncodedCorpus:
    """A corpus decoded and encoded once: its usable clips and what the heads and top layers train on.

    ``statistics`` ``(clips, layers + 1, 2 * hidden)`` are the raw per-layer means then standard deviations
    over each clip's real frames; ``window_means`` ``(clips, layers + 1, hidden)`` the standard heads' pooling.
    ``model`` is the backbone (a transformers ``*ForAudioClassification`` with a weighted-layer head) whose
    encoder produced them, with its Whisper window fitted; ``feature_extractor`` its `SERFeatureExtractor`.
    """

    dataset: Dataset
    statistics: np.ndarray
    window_means: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    corpora: np.ndarray
    positions: np.ndarray
    label_names: list[str]
    model: nn.Module
    feature_extractor: Any
    skipped: list[SkippedClip] = field(default_factory=list)
    keep_layer: int | None = None
    #: For each row, the row it is an augmented copy of (``-1`` for the corpus' own clips).
    augment_of: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_original(self) -> np.ndarray:
        """Which rows are the corpus' own clips (not augmented copies)."""
        return np.ones(len(self), dtype=bool) if self.augment_of is None else self.augment_of < 0

    def with_copies(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` and the augmented copies of them (training rows: copies train, they never evaluate)."""
        if self.augment_of is None:
            return np.asarray(rows)
        copies = np.flatnonzero(np.isin(self.augment_of, rows))
        return np.concatenate([np.asarray(rows), copies])

    def hidden_states(self) -> Dataset:
        """The cached ``hidden_state`` column (numpy-formatted; indexable by row lists)."""
        if "hidden_state" not in self.dataset.column_names:
            raise ValueError("this corpus was encoded without keeping a layer's input (keep_layer)")
        return self.dataset.with_format("numpy", columns=["hidden_state"])


def _augment_batch(
    batch: dict[str, list[Any]], indices: list[int], rate: int, copy: int, loudness_db: float | None
) -> dict[str, list[Any]]:
    from .augment import augment_clip
    from .preparation import normalize_loudness

    waveforms = []
    for index, waveform in zip(indices, batch["waveform"]):
        samples = augment_clip(np.asarray(waveform, dtype=np.float32), rate, np.random.default_rng((copy, index)))
        waveforms.append(normalize_loudness(samples, loudness_db) if loudness_db is not None else samples)
    return {"waveform": waveforms, "length": [w.size for w in waveforms], "augment_of": list(indices)}


def add_augmented_copies(
    decoded: Dataset,
    copies: int,
    rate: int,
    loudness_db: float | None,
    audio_key: str,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """``decoded`` followed by ``copies`` augmented copies of every row (cached), with an ``augment_of`` column
    (the original row of each copy; ``-1`` for the originals)."""
    from .augment import AUGMENT_VERSION

    others = [c for c in decoded.column_names if c not in ("waveform", "length")]
    features = datasets.Features(
        {
            "waveform": datasets.Sequence(datasets.Value("float32")),
            "length": datasets.Value("int64"),
            "augment_of": datasets.Value("int64"),
        }
    )
    parts = [decoded.add_column("augment_of", [-1] * len(decoded))]
    for copy in range(1, copies + 1):
        key = Hasher.hash((AUGMENT_VERSION, audio_key, copy, loudness_db))
        cache_file = cache_folder(cache_dir) / f"augmented-{key}.arrow"
        waves = decoded.select_columns(["waveform"]).map(
            _augment_batch, batched=True, batch_size=16, with_indices=True, remove_columns=["waveform"],
            fn_kwargs={"rate": rate, "copy": copy, "loudness_db": loudness_db}, features=features,
            cache_file_name=str(cache_file), new_fingerprint=cache_file.stem,
            desc=f"Augmenting (copy {copy} of {copies})",
        )  # fmt: skip
        parts.append(datasets.concatenate_datasets([decoded.select_columns(others), waves], axis=1))
    return datasets.concatenate_datasets(parts)


def _column(dataset: Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy", columns=[name])[name])


def encode_corpus(
    corpus: Dataset,
    model_name_or_path: str,
    *,
    trim_silence: bool = True,
    loudness_db: float | None = None,
    window_seconds: int | None = None,
    keep_layer_from_top: int | None = None,
    augment: int = 0,
    proj_size: int = 256,
    batch_size: int = 16,
    max_clip_seconds: float | None = None,
    strict_audio: bool = False,
    speaker_column: str = "speaker",
    cache_dir: str | os.PathLike | None = None,
    decode_cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    device: str | torch.device | None = None,
    hub_kwargs: dict[str, Any] | None = None,
    main_process_first: Any = None,
) -> EncodedCorpus:
    """Decode (cached), load the encoder, fit a Whisper window, then encode every clip once (cached).

    A Whisper window fits the corpus' longest prepared clip unless ``window_seconds`` is given.
    ``keep_layer_from_top=n`` also keeps the input of the top ``n`` encoder layers (``-1``: all of them).
    ``augment=n`` adds ``n`` augmented copies of every clip (`ser_hf.augment`; rows marked by ``augment_of``).
    ``main_process_first`` (e.g. ``TrainingArguments.main_process_first``) lets the main process of a
    multi-process run decode and encode first; the others then read its caches.
    """
    from contextlib import nullcontext

    from .feature_extraction import SERFeatureExtractor

    first = main_process_first or (lambda desc: nullcontext())
    label_names = list(corpus.features["label"].names)
    model, base_extractor = load_backbone(
        model_name_or_path, label_names, classifier_proj_size=proj_size, **(hub_kwargs or {})
    )
    feature_extractor = SERFeatureExtractor(base_extractor, trim=trim_silence, loudness_db=loudness_db)
    rate = int(feature_extractor.sampling_rate)
    max_seconds = max_clip_seconds if max_clip_seconds is not None else DecodeSettings(rate).max_seconds
    with first("decoding audio"):
        decoded, skipped = prepare_audio(
            corpus, rate, trim_silence=trim_silence, loudness_db=loudness_db, max_seconds=max_seconds,
            strict=strict_audio, num_proc=num_proc, cache_dir=decode_cache_dir,
        )  # fmt: skip
    settings = DecodeSettings(rate, max_seconds, trim_silence, loudness_db=loudness_db)
    audio_key = decoded_audio_key(corpus, settings, skipped, decode_cache_dir)
    if augment:
        with first("augmenting audio"):
            decoded = add_augmented_copies(decoded, augment, rate, loudness_db, audio_key, decode_cache_dir)
        audio_key = Hasher.hash((audio_key, "augmented", augment, AUGMENT_VERSION))
    if is_whisper(model):
        seconds = window_seconds or whisper_window_seconds(max(_column(decoded, "length")) / rate)
        shorten_whisper_window(model, feature_extractor, seconds)
        feature_extractor.return_attention_mask = True  # tells the statistics head the real frames
    keep_layer = None
    if keep_layer_from_top:
        depth = len(encoder_layers(model))
        keep_layer_from_top = depth if keep_layer_from_top == -1 else keep_layer_from_top
        if not 1 <= keep_layer_from_top <= depth:
            raise ValueError(f"the encoder has {depth} layers; cannot fine-tune the top {keep_layer_from_top}")
        keep_layer = depth - keep_layer_from_top
    with first("encoding every clip"):
        encoded = layer_features(
            decoded, model, feature_extractor, audio_key=audio_key, batch_size=batch_size,
            cache_dir=cache_dir, keep_layer=keep_layer, device=device,
        )  # fmt: skip
    if speaker_column not in encoded.column_names:
        from .errors import CorpusError

        raise CorpusError(f"no speaker column {speaker_column!r} among {encoded.column_names}")
    from .corpora.base import read_column

    speakers = np.asarray([speaker_key(s) for s in read_column(encoded, speaker_column)])
    corpora = (
        np.asarray(read_column(encoded, "corpus"), dtype=object)
        if "corpus" in encoded.column_names
        else np.full(len(speakers), "", dtype=object)
    )
    statistics = np.concatenate([_column(encoded, "pooled_speech"), _column(encoded, "pooled_std")], axis=-1)
    return EncodedCorpus(
        dataset=encoded,
        statistics=statistics,
        window_means=_column(encoded, "pooled_window"),
        labels=np.asarray(read_column(encoded, "label"), dtype=np.int64),
        speakers=speakers,
        corpora=corpora,
        positions=np.asarray(read_column(encoded, "positions"), dtype=np.int64),
        label_names=label_names,
        model=model,
        feature_extractor=feature_extractor,
        skipped=skipped,
        keep_layer=keep_layer,
        augment_of=np.asarray(read_column(encoded, "augment_of"), dtype=np.int64) if augment else None,
    )


__all__ = [
    "POOLED_COLUMNS",
    "EncodedCorpus",
    "clips_share_batches",
    "encode_corpus",
    "encoder_fingerprint",
    "layer_features",
    "speech_positions",
]
