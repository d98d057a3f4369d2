"""Adapting to the speaker being heard: running statistics of their voice, blended with the training voices.

A speaker-adaptive `ser_hf.layer_stats.LayerStatsForAudioClassification` maps a clip's statistics from the
speaker's mean and spread onto the training speakers' average voice. `SpeakerProfile` estimates that mean and
spread from what has been heard so far: it keeps running sums of the statistics of the speaker's utterances,
counts the training speakers' average as ``prior_clips`` utterances of evidence, and switches the mapping on
once ``min_seconds`` of speech have been heard. One profile per speaker (per visitor on the web page); `reset`
starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .heads import DEFAULT_PRIOR_CLIPS, blend_speaker

#: Speech heard before a profile maps anything (seconds; bench/conversation.py chose it).
DEFAULT_MIN_SECONDS = 4.0


@dataclass
class SpeakerProfile:
    """Running estimate of one speaker's voice (flattened statistics), for a model's reference voice.

    ``reference_mean`` / ``reference_spread`` are the model's (``LayerStatsForAudioClassification``'s
    ``reference_mean`` and ``reference_spread`` buffers).
    """

    reference_mean: np.ndarray
    reference_spread: np.ndarray
    prior_clips: float = DEFAULT_PRIOR_CLIPS
    min_seconds: float = DEFAULT_MIN_SECONDS
    clips: int = 0
    seconds: float = 0.0
    _sum: np.ndarray | None = field(default=None, repr=False)
    _squares: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def for_model(cls, model: Any, **kwargs: Any) -> SpeakerProfile:
        """A fresh profile for a speaker-adaptive model."""
        mean = model.reference_mean.detach().cpu().numpy().astype(np.float64)
        spread = model.reference_spread.detach().cpu().numpy().astype(np.float64)
        return cls(mean, spread, **kwargs)

    def add(self, statistics: np.ndarray, seconds: float | np.ndarray) -> None:
        """Add utterances' statistics ``(clips, ...)`` and their speech durations (seconds, one or per clip)."""
        flat = np.asarray(statistics, dtype=np.float64).reshape(len(statistics), -1)
        if flat.shape[1] != self.reference_mean.size:
            raise ValueError(f"expected {self.reference_mean.size} statistics per clip, got {flat.shape[1]}")
        if self._sum is None:
            self._sum = np.zeros_like(self.reference_mean)
            self._squares = np.zeros_like(self.reference_mean)
        self._sum += flat.sum(axis=0)
        self._squares += np.square(flat).sum(axis=0)
        self.clips += len(flat)
        self.seconds += float(np.sum(seconds))

    @property
    def active(self) -> bool:
        """Whether enough speech has been heard to map clips (`min_seconds`)."""
        return self.clips > 0 and self.seconds >= self.min_seconds

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """The speaker's (mean, spread): the reference until `active`, then blended with what was heard."""
        if not self.active or self._sum is None:
            return self.reference_mean.astype(np.float32), self.reference_spread.astype(np.float32)
        return blend_speaker(
            self._sum, self._squares, self.clips, self.reference_mean, self.reference_spread, self.prior_clips
        )

    def reset(self) -> None:
        """Forget the speaker."""
        self.clips, self.seconds, self._sum, self._squares = 0, 0.0, None, None

    def describe(self) -> dict[str, Any]:
        """What a timeline or page says about the adaptation: on or off, and on how much speech."""
        return {"adapted": self.active, "speech_seconds": round(self.seconds, 2), "utterances": self.clips}


__all__ = ["DEFAULT_MIN_SECONDS", "SpeakerProfile"]
