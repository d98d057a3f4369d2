"""Emotion over time in fixed windows, and the `Segment` every timeline is made of.

`EmotionStream` (``segmentation="windows"``) takes audio chunks as they come (a microphone callback, file
blocks) and returns one `Segment` per hop as soon as its window is complete, so latency is at most one
window. `iter_timeline` feeds a file to such a stream block by block (never the whole file in memory) and
`iter_smooth` averages the probabilities across neighbouring windows. The default timelines follow
utterances instead (`ser_hf.conversation`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import soxr

from . import audio
from .errors import InvalidSamplesError
from .vad import SILENCE_THRESHOLD_DB

#: Label given to windows too quiet to carry speech.
SILENCE = "silence"


class _Predictor(Protocol):
    labels: list[str]

    @property
    def sampling_rate(self) -> int: ...

    def predict_waveforms(self, waveforms: Sequence[np.ndarray], *, batch_size: int = 8) -> list[Any]: ...


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording, an utterance or a fixed window: its span (seconds) and its emotion.

    ``final`` is False for the provisional label of an utterance still in progress; ``voiced`` is an
    utterance's speech time (seconds; ``None`` for windows). ``adaptation`` says how the timeline adapts to
    the speaker (``"online"``, ``"recording"``, ``"off"``, or ``"unsupported"`` by the model); ``adapted``
    whether this segment was mapped onto the speaker's voice, estimated from ``adapted_seconds`` of speech.
    Windows quieter than the silence threshold get ``label="silence"``, ``silent=True`` and no scores.
    """

    start: float
    end: float
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict, repr=False)
    silent: bool = False
    final: bool = True
    voiced: float | None = None
    adaptation: str = "off"
    adapted: bool = False
    adapted_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "label": self.label,
            "score": self.score,
            "scores": dict(self.scores),
            "silent": self.silent,
            "final": self.final,
            "voiced": self.voiced,
            "adaptation": self.adaptation,
            "adapted": self.adapted,
            "adapted_seconds": self.adapted_seconds,
        }


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


class EmotionStream:
    """Recognise emotion in live audio: push chunks, get a `Segment` per hop once its window is full.

    ``sampling_rate`` is the rate of the pushed chunks (resampled on the fly to the model's rate).
    Memory holds at most one window plus the last chunk. Call `flush` at the end to cover the tail.
    """

    def __init__(
        self,
        recognizer: _Predictor,
        *,
        window_seconds: float = 3.0,
        hop_seconds: float = 1.0,
        sampling_rate: int | None = None,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        batch_size: int = 8,
    ):
        if window_seconds <= 0 or hop_seconds <= 0:
            raise ValueError("window_seconds and hop_seconds must be positive")
        self.recognizer = recognizer
        self.rate = recognizer.sampling_rate
        self.window = max(1, round(window_seconds * self.rate))
        self.hop = max(1, round(hop_seconds * self.rate))
        self.silence_threshold_db = silence_threshold_db
        self.batch_size = batch_size
        input_rate = sampling_rate or self.rate
        self._resampler = (
            None if input_rate == self.rate else soxr.ResampleStream(input_rate, self.rate, 1, dtype="float32")
        )
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._next_start = 0  # absolute sample index where the next window starts
        self._total = 0  # samples received so far (at the model's rate)
        self._emitted_end = 0

    def push(self, chunk: np.ndarray) -> list[Segment]:
        """Add mono float samples; return the segments whose windows are now complete."""
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise InvalidSamplesError("<stream chunk>", "contains NaN or infinite samples")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        self._buffer = np.concatenate([self._buffer, samples])
        self._total += samples.size
        starts = []
        while self._next_start + self.window <= self._total:
            starts.append(self._next_start)
            self._next_start += self.hop
        return self._emit(starts)

    def flush(self) -> list[Segment]:
        """End of audio: cover the samples after the last full window (or a clip shorter than a window)."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._buffer = np.concatenate([self._buffer, tail])
            self._total += tail.size
            self._resampler = None
        if self._total == 0 or self._emitted_end >= self._total:
            return []
        start = max(0, self._total - self.window)
        return self._emit([start])

    def _emit(self, starts: list[int]) -> list[Segment]:
        if not starts:
            return []
        windows = [self._buffer[s - self._buffer_start : s - self._buffer_start + self.window] for s in starts]
        segments = self._classify(starts, windows)
        self._emitted_end = max(self._emitted_end, starts[-1] + windows[-1].size)
        # keep the last window too: `flush` may need it for the tail after the last full window
        keep_from = min(self._next_start, max(0, self._total - self.window)) - self._buffer_start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:].copy()
            self._buffer_start += keep_from
        return segments

    def _classify(self, starts: list[int], windows: list[np.ndarray]) -> list[Segment]:
        silent = [self.silence_threshold_db is not None and rms_dbfs(w) < self.silence_threshold_db for w in windows]
        voiced = [w for w, quiet in zip(windows, silent) if not quiet]
        predictions = iter(self.recognizer.predict_waveforms(voiced, batch_size=self.batch_size) if voiced else [])
        segments = []
        for start, window, quiet in zip(starts, windows, silent):
            begin, end = start / self.rate, (start + window.size) / self.rate
            if quiet:
                segments.append(Segment(begin, end, SILENCE, 0.0, {}, silent=True))
            else:
                p = next(predictions)
                segments.append(Segment(begin, end, p.label, p.score, dict(p.scores)))
        return segments


def _smoothed(segment: Segment, around: Sequence[Segment]) -> Segment:
    if segment.silent:
        return segment
    voiced = [s for s in around if not s.silent]
    labels = list(segment.scores)
    mean = np.mean([[s.scores[label] for label in labels] for s in voiced], axis=0)
    top = int(np.argmax(mean))
    scores = {label: float(v) for label, v in zip(labels, mean)}
    return replace(segment, label=labels[top], score=float(mean[top]), scores=scores)


def iter_smooth(segments: Iterable[Segment], width: int) -> Iterator[Segment]:
    """`smooth` over a stream: each segment comes out once the ``width // 2`` after it have arrived."""
    if width <= 1:
        yield from segments
        return
    half = width // 2
    recent: deque[Segment] = deque()  # the segments from index `next_out - half` on
    first = 0  # index of recent[0]
    next_out = 0
    for index, segment in enumerate(segments):
        recent.append(segment)
        while next_out + half <= index:
            yield _smoothed(recent[next_out - first], list(recent)[max(0, next_out - half - first) :])
            next_out += 1
            while first < next_out - half:
                recent.popleft()
                first += 1
    while next_out < first + len(recent):
        yield _smoothed(recent[next_out - first], list(recent)[max(0, next_out - half - first) :])
        next_out += 1


def smooth(segments: Sequence[Segment], width: int) -> list[Segment]:
    """Average each voiced segment's probabilities with its ``width // 2`` neighbours on each side (silence skipped)."""
    return list(iter_smooth(segments, width))


def iter_timeline(
    recognizer: _Predictor,
    source: str | os.PathLike | Iterable[np.ndarray],
    *,
    window_seconds: float = 3.0,
    hop_seconds: float = 1.0,
    silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
    batch_size: int = 8,
    block_seconds: float = 30.0,
) -> Iterator[Segment]:
    """Yield segments for a file of any length (read block by block) or an iterable of sample chunks."""
    stream = EmotionStream(
        recognizer,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        silence_threshold_db=silence_threshold_db,
        batch_size=batch_size,
    )
    if isinstance(source, (str, os.PathLike, bytes)):
        block_seconds = max(block_seconds, window_seconds)
        blocks: Iterable[np.ndarray] = audio.iter_blocks(source, recognizer.sampling_rate, block_seconds=block_seconds)
    else:
        blocks = source
    for block in blocks:
        yield from stream.push(block)
    yield from stream.flush()


def timeline(
    recognizer: _Predictor,
    source: str | os.PathLike | Iterable[np.ndarray],
    *,
    window_seconds: float = 3.0,
    hop_seconds: float = 1.0,
    smoothing: int = 1,
    silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
    batch_size: int = 8,
) -> list[Segment]:
    """All segments of a recording, optionally smoothed over ``smoothing`` neighbouring windows."""
    segments = iter_smooth(
        iter_timeline(
            recognizer,
            source,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            silence_threshold_db=silence_threshold_db,
            batch_size=batch_size,
        ),
        smoothing,
    )
    return list(segments)
