"""The library's exceptions: one base class, and messages that name the input and the problem."""

from __future__ import annotations


class SerHfError(Exception):
    """Base class of every error ser-hf raises on purpose."""


class AudioError(SerHfError, ValueError):
    """An audio input that cannot be used; ``source`` names it (a path, ``<bytes>``, ``<array>``...)."""

    reason = "unusable audio"

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class UnreadableAudioError(AudioError):
    """Missing, unreadable or not audio at all."""

    reason = "unreadable"


class EmptyAudioError(AudioError):
    """No samples (a zero-length file or an empty array)."""

    reason = "empty"


class InvalidSamplesError(AudioError):
    """NaN or infinite samples, a wrong dtype or a wrong shape."""

    reason = "invalid samples"


class SilentAudioError(AudioError):
    """Digital silence: nothing to recognise."""

    reason = "silent"


class AudioTooLongError(AudioError):
    """Longer than the limit set for loading a whole clip into memory (``seconds`` over ``limit``)."""

    reason = "too long"

    def __init__(self, source: str, problem: str, *, seconds: float | None = None, limit: float | None = None):
        super().__init__(source, problem)
        self.seconds = seconds
        self.limit = limit


class CorpusError(SerHfError):
    """A corpus that cannot be loaded as asked (wrong layout, names off the scheme, no usable files)."""


class LabelMapError(SerHfError, ValueError):
    """A label map (``id2label``/``label2id``) that does not fit the model or the data."""
