"""Following a conversation: one emotion per utterance, live or over a recording, adapted to the speaker.

`UtteranceStream` takes audio as it comes and cuts it at pauses (`ser_hf.vad`). Each utterance is
predicted once, on exactly its audio, as soon as the pause after it is heard: a `Segment` with
``final=True``. While the speaker talks on, a provisional label for the utterance so far comes every
``hop_seconds`` (``final=False``). An utterance longer than the model's window is cut into windows: with
a layer-statistics head their statistics are pooled exactly (the frame-weighted mean and variance of all
their real frames), otherwise their probabilities are averaged, weighted by duration. Pauses are not
segments: the gaps between utterances are the silences.

Speaker adaptation, for models trained to adapt (``recognizer.is_speaker_adaptive``): with
``adapt="online"`` the stream keeps a `SpeakerProfile` of the voice heard so far (each finished
utterance joins it) and maps every utterance onto that voice once ``min_seconds`` of speech were heard,
moving from the training speakers' average towards the speaker's own as evidence grows.
``adapt="recording"`` (`iter_utterances`, for a file known to hold one speaker) listens to the whole
recording first and labels every utterance with the voice estimated from all of it. ``adapt="auto"`` is
``"online"`` for models that adapt (it scored higher than no adaptation, see `AUTO_ADAPT`) and
``"unsupported"`` for the others, which predict without adapting and say so in every segment.

`summarize` weighs the utterances of a recording by their voiced time: "mostly X" only when X holds more
than half of it, else "mixed".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from . import audio
from .adaptation import SpeakerProfile
from .errors import InvalidSamplesError
from .timeline import Segment
from .vad import (
    DEFAULT_AGGRESSIVENESS,
    DEFAULT_MAX_UTTERANCE,
    DEFAULT_MIN_PAUSE,
    DEFAULT_MIN_UTTERANCE,
    DEFAULT_PADDING,
    SILENCE_THRESHOLD_DB,
    Utterance,
    UtteranceSegmenter,
)

#: ``adapt`` values: ``"auto"``, ``"online"``, ``"recording"`` (whole files only) or ``"off"``.
ADAPT_MODES = ("auto", "online", "recording", "off")
#: What ``adapt="auto"`` does for a model that adapts to speakers (bench/conversation.py chose it).
AUTO_ADAPT = "online"
#: The longest stretch of an utterance predicted at once by a model without a fixed window (seconds).
DEFAULT_UTTERANCE_WINDOW = 10.0
#: "mostly X" needs X to hold more than this share of the voiced time.
MAJORITY = 0.5


def resolve_adaptation(recognizer: Any, adapt: str) -> str:
    """The adaptation a timeline or stream does: ``"online"``, ``"recording"``, ``"off"``, or ``"unsupported"``
    (``adapt="auto"`` with a model that does not adapt). Asking a model that cannot adapt for ``"online"`` or
    ``"recording"`` raises `SerHfError`, saying why."""
    if adapt not in ADAPT_MODES:
        raise ValueError(f"adapt must be one of {ADAPT_MODES}, not {adapt!r}")
    if adapt == "auto":
        return AUTO_ADAPT if recognizer.is_speaker_adaptive else "unsupported"
    if adapt != "off":
        recognizer.speaker_profile()  # raises, with the reason, for a model that cannot adapt
    return adapt


@dataclass(frozen=True)
class HeardUtterance:
    """An utterance as heard, before it is labelled: its span and voiced time (seconds), and what its
    windows add up to (``statistics`` for a statistics head, else ``probabilities``)."""

    start: float
    end: float
    voiced: float
    statistics: np.ndarray | None = field(default=None, repr=False)
    probabilities: np.ndarray | None = field(default=None, repr=False)


def pool_windows(values: Sequence[np.ndarray], weights: Sequence[float], *, statistics: bool) -> np.ndarray:
    """One utterance from its windows: statistics ``(layers, 2 * hidden)`` pooled exactly over the windows'
    real frames (``weights``: frames per window), or probabilities averaged (``weights``: durations)."""
    if len(values) == 1:
        return np.asarray(values[0], dtype=np.float32)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    stacked = np.stack(values).astype(np.float64)
    if not statistics:
        return np.tensordot(w, stacked, axes=1).astype(np.float32)
    half = stacked.shape[-1] // 2
    means, spreads = stacked[..., :half], stacked[..., half:]
    mean = np.tensordot(w, means, axes=1)
    variance = np.tensordot(w, np.square(spreads) + np.square(means - mean), axes=1)
    return np.concatenate([mean, np.sqrt(np.maximum(variance, 1e-10))], axis=-1).astype(np.float32)


def label_utterance(
    recognizer: Any,
    heard: HeardUtterance,
    *,
    speaker: SpeakerProfile | None = None,
    adaptation: str = "off",
    final: bool = True,
) -> Segment:
    """The `Segment` for a heard utterance, mapped onto ``speaker`` where it is active."""
    if heard.statistics is not None:
        prediction = recognizer.classify_statistics(heard.statistics[None], speaker)[0]
    else:
        prediction = recognizer.prediction(heard.probabilities)
    adapted = speaker is not None and speaker.active
    return Segment(
        heard.start,
        heard.end,
        prediction.label,
        prediction.score,
        dict(prediction.scores),
        final=final,
        voiced=round(heard.voiced, 3),
        adaptation=adaptation,
        adapted=adapted,
        adapted_seconds=round(speaker.seconds, 2) if adapted else 0.0,
    )


class UtteranceStream:
    """Recognise emotion utterance by utterance in live audio: `push` chunks, get `Segment` s.

    ``sampling_rate`` is the rate of the pushed chunks (resampled on the fly to the model's rate).
    ``window_seconds``: the longest stretch of an utterance predicted at once (default: the model's window,
    or `DEFAULT_UTTERANCE_WINDOW`). ``hop_seconds``: how often a provisional label comes while the speaker
    talks on (``provisional=False``: none). ``adapt``: see the module docstring (``"recording"`` needs the
    whole recording: `iter_utterances`); ``speaker`` is the `SpeakerProfile` to keep (default: a fresh one
    with the library's settings). The rest sets the `UtteranceSegmenter`. Memory holds one window of audio,
    and the statistics of the windows of the utterance in progress.
    """

    def __init__(
        self,
        recognizer: Any,
        *,
        sampling_rate: int | None = None,
        window_seconds: float | None = None,
        hop_seconds: float = 1.0,
        adapt: str = "auto",
        speaker: SpeakerProfile | None = None,
        provisional: bool = True,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        min_pause: float = DEFAULT_MIN_PAUSE,
        padding: float = DEFAULT_PADDING,
        min_utterance: float = DEFAULT_MIN_UTTERANCE,
        max_utterance: float = DEFAULT_MAX_UTTERANCE,
        vad: str = "webrtc",
        aggressiveness: int = DEFAULT_AGGRESSIVENESS,
        batch_size: int = 8,
    ):
        if hop_seconds <= 0 or (window_seconds is not None and window_seconds <= 0):
            raise ValueError("window_seconds and hop_seconds must be positive")
        if adapt == "recording":
            raise ValueError("adapt='recording' needs the whole recording first: use predict_timeline on the file")
        self.recognizer = recognizer
        self.rate = recognizer.sampling_rate
        self.adaptation = resolve_adaptation(recognizer, adapt)
        self.speaker = speaker
        if self.adaptation == "online" and self.speaker is None:
            self.speaker = recognizer.speaker_profile()
        window = window_seconds or recognizer.window_seconds or DEFAULT_UTTERANCE_WINDOW
        self.window = max(1, round(window * self.rate))
        self.hop = max(1, round(hop_seconds * self.rate))
        self.provisional = provisional
        self.batch_size = batch_size
        self.statistics = bool(recognizer.has_statistics_head)
        self.segmenter = UtteranceSegmenter(
            self.rate,
            min_pause=min_pause,
            padding=padding,
            min_utterance=min_utterance,
            max_utterance=max_utterance,
            vad=vad,
            aggressiveness=aggressiveness,
            threshold_db=silence_threshold_db,
        )
        input_rate = sampling_rate or self.rate
        self._resampler = (
            None if input_rate == self.rate else soxr.ResampleStream(input_rate, self.rate, 1, dtype="float32")
        )
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._open = -1  # start of the utterance in progress whose windows are kept in _done
        self._done: list[tuple[np.ndarray, float]] = []  # its complete windows, measured
        self._next_provisional = 0

    # ------------------------------------------------------------------ public
    def push(self, chunk: np.ndarray) -> list[Segment]:
        """Add mono float samples; return the utterances that ended (final) and, while one is in progress,
        its provisional label when one is due."""
        heard, provisional = self._advance(self._samples(chunk))
        segments = [self.label(h) for h in heard]
        if provisional is not None:
            segments.append(self.label(provisional, final=False))
        return segments

    def flush(self) -> list[Segment]:
        """End of audio: the utterance in progress ends where the audio does."""
        return [self.label(h) for h in self.flush_utterances()]

    def push_utterances(self, chunk: np.ndarray) -> list[HeardUtterance]:
        """`push` without labelling: the utterances that ended, as heard (no provisional ones)."""
        return self._advance(self._samples(chunk), provisional=False)[0]

    def flush_utterances(self) -> list[HeardUtterance]:
        """`flush` without labelling."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._resampler = None
            heard, _ = self._advance(tail, provisional=False)
        else:
            heard = []
        ended = self.segmenter.flush()
        return heard + self._measure_ended(ended)

    def label(self, heard: HeardUtterance, *, final: bool = True) -> Segment:
        """The segment for an utterance; with online adaptation a final one first joins the speaker's voice."""
        if final and self.adaptation == "online" and heard.statistics is not None:
            self.speaker.add(heard.statistics[None], heard.voiced)
        speaker = self.speaker if self.adaptation == "online" else None
        return label_utterance(self.recognizer, heard, speaker=speaker, adaptation=self.adaptation, final=final)

    @property
    def speaking(self) -> bool:
        """Whether an utterance is in progress."""
        return self.segmenter.speaking

    @property
    def seconds(self) -> float:
        """Audio heard so far (seconds, at the model's rate)."""
        return self.segmenter.heard / self.rate

    def reset(self) -> None:
        """Start over for a new speaker: forget the voice heard so far (the audio position goes on)."""
        if self.speaker is not None:
            self.speaker.reset()

    def describe(self) -> dict[str, Any]:
        """The adaptation: its mode, whether it is on yet, and on how many seconds of speech."""
        info: dict[str, Any] = {"adaptation": self.adaptation}
        if self.speaker is not None:
            info.update(self.speaker.describe())
        return info

    # ----------------------------------------------------------------- inside
    def _samples(self, chunk: np.ndarray) -> np.ndarray:
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise InvalidSamplesError("<stream chunk>", "contains NaN or infinite samples")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        return samples

    def _advance(
        self, samples: np.ndarray, *, provisional: bool = True
    ) -> tuple[list[HeardUtterance], HeardUtterance | None]:
        self._buffer = np.concatenate([self._buffer, samples]) if self._buffer.size else samples.copy()
        ended = self.segmenter.push(samples)
        heard = self._measure_ended(ended)
        current = self.segmenter.current
        result = None
        if current is not None:
            if current.start != self._open:
                self._open, self._done = current.start, []
                self._next_provisional = current.start + self.hop
            jobs = self._complete_windows(current)
            due = provisional and self.provisional and self.segmenter.position >= self._next_provisional
            end = self.segmenter.position
            begin = current.start + len(self._done) * self.window + len(jobs) * self.window
            partial = due and end > begin
            windows = [self._audio(a, b) for a, b in jobs] + ([self._audio(begin, end)] if partial else [])
            measured = self._measure(windows)
            self._done += measured[: len(jobs)]
            if due:
                steps = (end - current.start) // self.hop + 1
                self._next_provisional = current.start + steps * self.hop
                pieces = self._done + measured[len(jobs) :]
                voiced = current.voiced / self.rate
                result = self._heard(current.start, end, voiced, pieces)
        elif not self.segmenter.speaking:
            self._open, self._done = -1, []
        self._trim()
        return heard, result

    def _complete_windows(self, current: Utterance) -> list[tuple[int, int]]:
        """The windows of the utterance in progress that are now complete and not yet measured."""
        jobs = []
        k = len(self._done)
        while current.start + (k + 1) * self.window <= current.end:
            jobs.append((current.start + k * self.window, current.start + (k + 1) * self.window))
            k += 1
        return jobs

    def _measure_ended(self, ended: list[Utterance]) -> list[HeardUtterance]:
        plans, jobs = [], []
        for utterance in ended:
            kept = self._done if utterance.start == self._open else []
            bounds = self._grid(utterance.start, utterance.end)[len(kept) :]
            plans.append((utterance, kept, len(jobs), len(bounds)))
            jobs += bounds
            if utterance.start == self._open:
                self._open, self._done = -1, []
        measured = self._measure([self._audio(a, b) for a, b in jobs])
        heard = [
            self._heard(u.start, u.end, u.voiced / self.rate, kept + measured[first : first + count])
            for u, kept, first, count in plans
        ]
        return heard

    def _grid(self, start: int, end: int) -> list[tuple[int, int]]:
        """An utterance's windows: `window` samples each from its start, the rest last."""
        return [(a, min(a + self.window, end)) for a in range(start, end, self.window)]

    def _audio(self, start: int, end: int) -> np.ndarray:
        return self._buffer[start - self._buffer_start : end - self._buffer_start]

    def _measure(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        if not windows:
            return []
        if self.statistics:
            stats, frames = self.recognizer.statistics_and_frames(windows, batch_size=self.batch_size)
            return [(s, float(f)) for s, f in zip(stats, frames)]
        labels = self.recognizer.labels
        predictions = self.recognizer.predict_waveforms(windows, batch_size=self.batch_size)
        return [
            (np.array([p.scores[label] for label in labels], dtype=np.float32), float(w.size))
            for p, w in zip(predictions, windows)
        ]

    def _heard(self, start: int, end: int, voiced: float, pieces: list[tuple[np.ndarray, float]]) -> HeardUtterance:
        pooled = pool_windows([v for v, _ in pieces], [w for _, w in pieces], statistics=self.statistics)
        kind = "statistics" if self.statistics else "probabilities"
        return HeardUtterance(start / self.rate, end / self.rate, voiced, **{kind: pooled})

    def _trim(self) -> None:
        """Keep only the audio a later window may need."""
        segmenter = self.segmenter
        if segmenter.speaking:
            keep = int(segmenter.open_start)
            if keep == self._open:
                keep += len(self._done) * self.window
        else:
            keep = max(segmenter.previous_end, segmenter.position - segmenter.padding)
        drop = keep - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:].copy()
            self._buffer_start += drop


def iter_utterances(
    recognizer: Any,
    source: str | os.PathLike | bytes | Iterable[np.ndarray],
    *,
    adapt: str = "auto",
    block_seconds: float = 30.0,
    **options: Any,
) -> Iterator[Segment]:
    """The final segment of each utterance of a file (read block by block) or an iterable of sample chunks
    at the model's rate. ``adapt="recording"``: two passes, the answer is the second (see the module
    docstring); the other options are `UtteranceStream`'s."""
    if isinstance(source, (str, os.PathLike, bytes)):
        blocks: Iterable[np.ndarray] = audio.iter_blocks(source, recognizer.sampling_rate, block_seconds=block_seconds)
    else:
        blocks = source
    if adapt != "recording":
        stream = UtteranceStream(recognizer, adapt=adapt, provisional=False, **options)
        for block in blocks:
            for heard in stream.push_utterances(block):
                yield stream.label(heard)
        for heard in stream.flush_utterances():
            yield stream.label(heard)
        return
    speaker = options.pop("speaker", None) or recognizer.speaker_profile()
    stream = UtteranceStream(recognizer, adapt="off", provisional=False, **options)
    heard = [h for block in blocks for h in stream.push_utterances(block)] + stream.flush_utterances()
    if heard:
        speaker.add(np.stack([h.statistics for h in heard]), [h.voiced for h in heard])
    for utterance in heard:
        yield label_utterance(recognizer, utterance, speaker=speaker, adaptation="recording")


# ------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class Summary:
    """A recording at a glance: each emotion's share of the voiced time (largest first), the probabilities
    averaged over the utterances weighted by voiced time, and how much speech that rests on."""

    shares: dict[str, float]
    scores: dict[str, float]
    voiced_seconds: float
    utterances: int

    @property
    def majority(self) -> str | None:
        """The emotion holding more than half of the voiced time, if one does."""
        top = next(iter(self.shares))
        return top if self.shares[top] > MAJORITY else None

    def describe(self, *, markdown: bool = False) -> str:
        """``"mostly angry (72 % of …)"`` or ``"mixed: angry 40 %, sad 35 %, … (of …)"``."""

        def name(label: str) -> str:
            return f"**{label}**" if markdown else label

        speech = f"{self.voiced_seconds:.1f} s of speech in {self.utterances} utterance{'s' * (self.utterances != 1)}"
        if self.majority is not None:
            return f"mostly {name(self.majority)} ({self.shares[self.majority]:.0%} of {speech})"
        parts = ", ".join(f"{name(label)} {share:.0%}" for label, share in self.shares.items() if share > 0)
        return f"mixed: {parts} (of {speech})"


def summarize(segments: Sequence[Segment]) -> Summary | None:
    """The `Summary` of a recording's final, voiced segments, each weighed by its voiced time (a window's
    length for fixed windows); ``None`` when there is no speech."""
    voiced = [s for s in segments if s.final and not s.silent and s.scores]
    if not voiced:
        return None
    weights = np.array([s.voiced if s.voiced is not None else s.end - s.start for s in voiced], dtype=np.float64)
    weights = np.maximum(weights, 1e-9)
    shares: dict[str, float] = {}
    for segment, weight in zip(voiced, weights):
        shares[segment.label] = shares.get(segment.label, 0.0) + float(weight)
    total = float(weights.sum())
    ordered = dict(sorted(((k, v / total) for k, v in shares.items()), key=lambda kv: -kv[1]))
    labels = list(voiced[0].scores)
    mean = np.average([[s.scores[label] for label in labels] for s in voiced], axis=0, weights=weights)
    scores = {label: float(p) for label, p in zip(labels, mean)}
    seconds = sum(s.voiced if s.voiced is not None else s.end - s.start for s in voiced)
    return Summary(ordered, scores, round(float(seconds), 2), len(voiced))


__all__ = [
    "ADAPT_MODES",
    "AUTO_ADAPT",
    "HeardUtterance",
    "Summary",
    "UtteranceStream",
    "iter_utterances",
    "label_utterance",
    "pool_windows",
    "resolve_adaptation",
    "summarize",
]
