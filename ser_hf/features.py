"""Decode a corpus once (cached through `datasets`), and collate padded batches for the model.

`prepare_audio` turns a corpus' ``audio`` column into float32 waveforms at the model's rate and
stores them in an Arrow cache file named by a fingerprint of the audio sources and the settings, so
every later epoch, fold and run reads memory-mapped samples instead of decoding again.
`AudioCollator` pads (and in training randomly crops) a list of waveforms into model inputs with the
model's own feature extractor.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from . import audio
from .corpora.base import audio_column, audio_name, read_column
from .errors import AudioError, AudioTooLongError, CorpusError
from .preparation import TRIM_THRESHOLD_DB, prepare_clip

logger = logging.getLogger(__name__)

#: Bump when decoding changes, so old caches are not reused.
DECODE_VERSION = "2"


@dataclass(frozen=True)
class SkippedClip:
    """A corpus file left out of training, and why."""

    path: str
    reason: str
    problem: str


@dataclass(frozen=True)
class DecodeSettings:
    """Everything that changes the decoded samples (and so the cache key)."""

    sampling_rate: int
    max_seconds: float | None = audio.DEFAULT_MAX_SECONDS
    trim_silence: bool = False
    trim_threshold_db: float = TRIM_THRESHOLD_DB
    loudness_db: float | None = None


def _source_fingerprint(dataset: Dataset, column: str) -> str:
    """Content identity of the audio sources: path, size and mtime of files, or the dataset's fingerprint."""
    cells = read_column(dataset, column)
    if any(isinstance(c, dict) and c.get("bytes") is not None for c in cells):
        return dataset._fingerprint
    stats = []
    for cell in cells:
        path = audio_name(cell)
        try:
            st = os.stat(path)
            stats.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((path, -1, -1))
    return Hasher.hash(stats)


def _corpus_problem(err: AudioError) -> str:
    """The problem as a training corpus sees it (a too-long clip is a limit to raise, not a recording to stream)."""
    if isinstance(err, AudioTooLongError) and err.seconds is not None and err.limit is not None:
        return (
            f"is {err.seconds:.0f} s long, over the {err.limit:.0f} s limit for one training clip "
            "(raise max_clip_seconds / --max_clip_seconds to keep it, or cut it into labelled utterances)"
        )
    return err.problem


def skip_report(skipped: Sequence[SkippedClip], total: int) -> dict[str, Any]:
    """What `prepare_audio` left out, as JSON-ready data: counts, then one entry per file."""
    return {
        "clips": total,
        "used": total - len(skipped),
        "skipped": len(skipped),
        "files": [{"path": s.path, "reason": s.reason, "problem": s.problem} for s in skipped],
    }


def _decode_batch(batch: dict[str, list[Any]], column: str, settings: DecodeSettings) -> dict[str, list[Any]]:
    waveforms, lengths, problems, reasons = [], [], [], []
    for cell in batch[column]:
        name = audio_name(cell) or "<bytes>"
        try:
            samples = audio.load_audio(cell, settings.sampling_rate, max_seconds=settings.max_seconds, name=name)
            samples = prepare_clip(
                samples,
                settings.sampling_rate,
                trim=settings.trim_silence,
                loudness_db=settings.loudness_db,
                threshold_db=settings.trim_threshold_db,
            )
            waveforms.append(samples)
            lengths.append(int(samples.size))
            problems.append("")
            reasons.append("")
        except AudioError as err:
            waveforms.append(np.zeros(0, dtype=np.float32))
            lengths.append(0)
            problems.append(_corpus_problem(err))
            reasons.append(err.reason)
    return {"waveform": waveforms, "length": lengths, "decode_problem": problems, "decode_reason": reasons}


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of a module's parameters and buffers (names and values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def extractor_settings(feature_extractor: Any) -> dict[str, Any]:
    """A feature extractor's settings, for cache keys (without the processor class it was saved with)."""
    settings = feature_extractor.to_dict()
    settings.pop("processor_class", None)
    return settings


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ser-hf keeps its Arrow caches: ``cache_dir``, else ``ser_hf`` in the datasets cache (created)."""
    root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / "ser_hf"
    root.mkdir(parents=True, exist_ok=True)
    return root


def is_cached(cache_file: Path) -> bool:
    """Whether a `map` onto ``cache_file`` will read it and run nothing."""
    return cache_file.exists() and datasets.is_caching_enabled()


def add_waveform_columns(
    decoded: Dataset, fn: Any, *, fn_kwargs: dict[str, Any], features: datasets.Features, cache_file: Path,
    desc: str, batch_size: int = 16,
) -> Dataset:  # fmt: skip
    """Columns computed by ``fn`` from ``decoded``'s waveforms, cached in ``cache_file``, joined beside them."""
    computed = decoded.select_columns(["waveform"]).map(
        fn,
        batched=True,
        batch_size=batch_size,
        fn_kwargs=fn_kwargs,
        remove_columns=["waveform"],
        features=features,
        cache_file_name=str(cache_file),
        new_fingerprint=cache_file.stem,
        desc=desc,
    )
    return datasets.concatenate_datasets([decoded, computed], axis=1)


def decoded_audio_key(
    corpus: Dataset,
    settings: DecodeSettings,
    skipped: Sequence[SkippedClip] = (),
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """A name for what `prepare_audio` made of ``corpus`` (its sources, the settings, the clips it skipped):
    the key of caches computed from the decoded audio."""
    key = decode_cache_path(corpus, settings, cache_dir).stem
    return Hasher.hash((key, [s.path for s in skipped])) if skipped else key


def decode_cache_path(dataset: Dataset, settings: DecodeSettings, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `prepare_audio` keeps the decoded samples for this corpus and these settings."""
    column = audio_column(dataset)
    key = Hasher.hash((DECODE_VERSION, _source_fingerprint(dataset, column), settings))
    return cache_folder(cache_dir) / f"decoded-{key}.arrow"


def prepare_audio(
    dataset: Dataset,
    sampling_rate: int,
    *,
    max_seconds: float | None = audio.DEFAULT_MAX_SECONDS,
    trim_silence: bool = False,
    loudness_db: float | None = None,
    strict: bool = False,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Dataset, list[SkippedClip]]:
    """Decode every clip once to mono float32 at ``sampling_rate`` (cached on disk, reused by later runs).

    Each clip is prepared as the model's `SERFeatureExtractor` prepares it at prediction: leading and
    trailing silence cut (``trim_silence``), then brought to ``loudness_db`` dBFS RMS (when given).
    Adds ``waveform`` and ``length`` (samples) columns. Unusable files (unreadable, empty, NaN,
    silent, longer than ``max_seconds``) are reported and left out, or raise a `CorpusError` when
    ``strict``. Returns the usable clips and the list of skipped ones (see `skip_report`).
    """
    settings = DecodeSettings(sampling_rate, max_seconds, trim_silence, loudness_db=loudness_db)
    column = audio_column(dataset)
    cache_file = decode_cache_path(dataset, settings, cache_dir)
    new_columns = datasets.Features(
        {
            "waveform": datasets.Sequence(datasets.Value("float32")),
            "length": datasets.Value("int64"),
            "decode_problem": datasets.Value("string"),
            "decode_reason": datasets.Value("string"),
        }
    )
    # Map over the audio column alone and drop it from the output, so `datasets` never re-encodes
    # Audio cells (that would need torchcodec); the new columns are joined back beside the corpus.
    waveforms = dataset.select_columns([column]).map(
        _decode_batch,
        batched=True,
        batch_size=16,
        fn_kwargs={"column": column, "settings": settings},
        remove_columns=[column],
        features=new_columns,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) >= 64 else None,
        cache_file_name=str(cache_file),
        new_fingerprint=cache_file.stem,
        desc="Decoding audio",
    )
    decoded = datasets.concatenate_datasets([dataset, waveforms], axis=1)
    problems = read_column(decoded, "decode_problem")
    bad_rows = [i for i, p in enumerate(problems) if p]
    skipped = [SkippedClip(audio_name(decoded[i][column]), decoded[i]["decode_reason"], problems[i]) for i in bad_rows]
    if skipped:
        listing = "\n".join(f"  {s.path}: [{s.reason}] {s.problem}" for s in skipped[:50])
        more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        summary = f"{len(skipped)} of {len(decoded)} clips are unusable:\n{listing}{more}"
        if strict:
            error = CorpusError(summary + "\n(strict mode; turn it off to skip these and train on the rest)")
            error.skipped = skipped
            raise error
        logger.warning("%s\nThey were skipped; training uses the other %d.", summary, len(decoded) - len(skipped))
        keep = sorted(set(range(len(decoded))) - set(bad_rows))
        decoded = decoded.select(keep)
        if len(decoded) == 0:
            raise CorpusError("no usable clips left after skipping the unusable ones")
    return decoded.remove_columns(["decode_problem", "decode_reason"]), skipped


def clip_lengths(dataset: Dataset, column: str = "length") -> list[int]:
    """The ``length`` column (samples per decoded clip) as a list of ints, read in one Arrow pass.

    Looking lengths up element by element in a formatted `Dataset` costs a row read each (seconds for
    a thousand clips); samplers that sort by length need the plain list.
    """
    return read_column(dataset, column)


def min_input_samples(config: Any) -> int:
    """The shortest input (in samples) a model's convolutional front end accepts (its receptive field)."""
    encoder = getattr(config, "encoder", None)
    if isinstance(encoder, dict):  # a LayerStatsForAudioClassification: the encoder's own config
        kernels, strides = encoder.get("conv_kernel"), encoder.get("conv_stride")
    else:
        kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if not kernels or not strides:
        return 1
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def is_fixed_window(feature_extractor: Any) -> bool:
    """Whether the feature extractor pads every input to one fixed window (Whisper does)."""
    return hasattr(feature_extractor, "nb_max_frames") and hasattr(feature_extractor, "n_samples")


def window_samples(feature_extractor: Any) -> int | None:
    """Samples in a fixed-window feature extractor's window (``None`` when inputs are padded to the longest)."""
    return int(feature_extractor.n_samples) if is_fixed_window(feature_extractor) else None


@dataclass
class AudioCollator:
    """Pad a list of ``{"waveform", "label"}`` rows into a model batch with the feature extractor.

    ``max_samples`` crops longer clips (keeping their start), and clips shorter than ``min_samples`` are
    zero-padded at the end. The attention mask is returned only when the feature extractor asks for one.
    """

    feature_extractor: Any
    max_samples: int | None = None
    min_samples: int = 1

    def crop(self, waveform: np.ndarray) -> np.ndarray:
        if self.max_samples is not None and waveform.shape[0] > self.max_samples:
            waveform = waveform[: self.max_samples]
        if waveform.shape[0] < self.min_samples:
            waveform = np.pad(waveform, (0, self.min_samples - waveform.shape[0]))
        return waveform

    def encode(self, waveforms: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs for a list of waveforms at the feature extractor's rate."""
        fe = self.feature_extractor
        kwargs: dict[str, Any] = {
            "sampling_rate": fe.sampling_rate,
            "return_tensors": "pt",
            "return_attention_mask": bool(getattr(fe, "return_attention_mask", False)),
        }
        if not is_fixed_window(fe):
            kwargs["padding"] = "longest"
        return dict(fe([self.crop(np.asarray(w, dtype=np.float32)) for w in waveforms], **kwargs))

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.encode([row["waveform"] for row in rows])
        if "label" in rows[0]:
            batch["labels"] = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        return batch
