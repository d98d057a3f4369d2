"""Audio input: decode (soundfile) → mono → resample (soxr) → float32, with clear errors.

Everything that turns user audio into samples goes through this module: files of any format
libsndfile reads (wav, flac, ogg, ...), bytes, file objects, numpy arrays, torch tensors and the
``{"array", "sampling_rate"}`` / ``{"path", "bytes"}`` dicts that `datasets` produces. No FFmpeg,
no torchcodec.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .errors import (
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    InvalidSamplesError,
    SilentAudioError,
    UnreadableAudioError,
)
from .preparation import normalize_loudness, trim_silence  # noqa: F401  (re-exported)

AudioInput = str | os.PathLike | bytes | bytearray | BinaryIO | np.ndarray | Mapping[str, Any] | Any

#: Longest clip loaded whole into memory by default (seconds); longer audio goes through `iter_blocks`.
DEFAULT_MAX_SECONDS = 600.0
#: A clip whose peak stays below this (about -80 dBFS, 3 LSB of 16-bit audio) is digital silence.
SILENCE_PEAK = 1e-4
#: Sampling rates outside this range are taken for a corrupt header (or a wrong ``sampling_rate`` argument).
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1_000, 1_000_000
_INT_SCALES = {np.dtype(np.int8): 2**7, np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31}
#: What soundfile and libsndfile raise on files they cannot use.
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, TypeError, ValueError, OSError, EOFError, OverflowError)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, before any decoding."""

    sampling_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def describe(source: Any) -> str:
    """A short human name for an audio input, used in every error message."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source) or "<empty path>"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Mapping):
        path = source.get("path")
        return str(path) if path else f"<dict with keys {sorted(source)}>"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"<{type(source).__name__} shape={tuple(shape)} dtype={getattr(source, 'dtype', '?')}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"


class _SafeSeekFile:
    """A file object for soundfile's virtual I/O whose failed seeks return instead of raising.

    libsndfile seeks to negative offsets in some corrupt files; a Python exception inside that
    callback would only be printed ("Exception ignored"), so a failed seek stays where it was instead.
    """

    def __init__(self, file: Any):
        self._file = file
        self.name = getattr(file, "name", None)

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._file.seek(offset, whence)
        except (ValueError, OSError):
            return -1

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def readinto(self, buffer: Any) -> int:
        readinto = getattr(self._file, "readinto", None)
        if readinto is None:
            raise AttributeError("readinto")  # soundfile falls back to read()
        return readinto(buffer)


def _open_target(source: Any, name: str) -> Any:
    """What `soundfile` should open for this source (a path or a file object)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise UnreadableAudioError(name, "no such file")
        if os.path.isdir(path):
            raise UnreadableAudioError(name, "is a directory, not an audio file")
        if os.path.getsize(path) == 0:
            raise EmptyAudioError(name, "is an empty file (0 bytes)")
        return path
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise EmptyAudioError(name, "is empty (0 bytes)")
        return _SafeSeekFile(io.BytesIO(bytes(source)))
    if hasattr(source, "read") and hasattr(source, "seek") and hasattr(source, "tell"):
        return _SafeSeekFile(source)
    if hasattr(source, "read"):
        raise UnreadableAudioError(name, "file objects must be seekable; read it into bytes first")
    raise UnreadableAudioError(name, f"unsupported input type {type(source).__name__}")


def _soundfile_problem(err: Exception) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return f"not readable as audio ({text})"


def check_sampling_rate(rate: Any, name: str) -> int:
    """The rate as an int, or an `InvalidSamplesError` when it is not a plausible audio sampling rate."""
    try:
        value = int(rate)
    except (TypeError, ValueError, OverflowError):
        raise InvalidSamplesError(name, f"sampling rate {rate!r} is not a number") from None
    if value != rate or not MIN_SAMPLING_RATE <= value <= MAX_SAMPLING_RATE:
        raise InvalidSamplesError(
            name,
            f"sampling rate {rate!r} Hz is outside {MIN_SAMPLING_RATE}-{MAX_SAMPLING_RATE} Hz "
            "(a corrupt header, or a wrong sampling_rate argument)",
        )
    return value


def audio_info(source: Any, *, name: str | None = None) -> AudioInfo:
    """Read a file's header (rate, channels, length) without decoding its samples."""
    name = name or describe(source)
    target = _open_target(source, name)
    try:
        with sf.SoundFile(target) as f:
            return AudioInfo(int(f.samplerate), int(f.channels), int(f.frames), str(f.format), str(f.subtype))
    except _DECODE_ERRORS as err:
        raise UnreadableAudioError(name, _soundfile_problem(err)) from err


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` block."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample with soxr (high quality); a no-op when the rates match."""
    if orig_rate == target_rate:
        return samples
    return soxr.resample(samples, orig_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()  # bfloat16 and float8 have no numpy dtype
    return tensor.numpy()


def _array_samples(source: Any, name: str) -> np.ndarray:
    """A 1-D float32 copy of an array-like input, or an `InvalidSamplesError`."""
    try:
        if hasattr(source, "detach"):  # torch.Tensor without importing torch here
            source = _tensor_to_numpy(source)
        array = np.asarray(source)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InvalidSamplesError(name, f"not an array of samples ({err})") from err
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: reported below
        if array.dtype.kind == "f":
            samples = array.astype(np.float32, copy=False)
        elif array.dtype in _INT_SCALES:
            samples = array.astype(np.float32) / _INT_SCALES[array.dtype]
        elif array.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
            samples = (array.astype(np.float32) - 128.0) / 128.0
        else:
            raise InvalidSamplesError(
                name, f"unsupported sample dtype {array.dtype}; use float32, or int16/int32/uint8 PCM"
            )
    if samples.ndim != 1:
        raise InvalidSamplesError(
            name,
            f"expected a 1-D mono array, got shape {samples.shape}; downmix channels first "
            "(e.g. samples.mean(axis=channel_axis)), pass the file, or pass a batch as a list of 1-D arrays",
        )
    return samples


def check_samples(samples: np.ndarray, name: str, *, allow_silence: bool = False) -> np.ndarray:
    """Refuse empty, non-finite or (unless allowed) digitally silent audio."""
    if samples.size == 0:
        raise EmptyAudioError(name, "contains no samples")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - np.count_nonzero(finite))
        raise InvalidSamplesError(name, f"{bad} of {samples.size} samples are NaN or infinite")
    if not allow_silence and float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise SilentAudioError(name, f"is silent (peak below {SILENCE_PEAK:g}); nothing to recognise")
    return samples


def _decode_file(source: Any, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    target = _open_target(source, name)
    try:
        with sf.SoundFile(target) as f:
            rate, frames = check_sampling_rate(f.samplerate, name), int(f.frames)
            if frames <= 0:
                raise EmptyAudioError(name, "contains no samples")
            if max_seconds is not None and frames / rate > max_seconds:
                raise AudioTooLongError(
                    name,
                    f"is {frames / rate:.0f} s long, over the {max_seconds:.0f} s limit for whole-clip "
                    "loading; use EmotionRecognizer.predict_timeline for long recordings",
                    seconds=frames / rate,
                    limit=max_seconds,
                )
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except MemoryError as err:
        raise AudioTooLongError(name, "is too long to decode into memory") from err
    except _DECODE_ERRORS as err:
        raise UnreadableAudioError(name, _soundfile_problem(err)) from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise EmptyAudioError(name, "contains no decodable samples (truncated file?)")
    return to_mono(data), rate


def _resample_checked(samples: np.ndarray, rate: int, sampling_rate: int, name: str) -> np.ndarray:
    """`resample`, with its rare failures (and what it cannot represent) as named `AudioError`s."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = resample(np.ascontiguousarray(samples, dtype=np.float32), rate, sampling_rate)
    except (ValueError, RuntimeError, TypeError, OverflowError) as err:
        raise InvalidSamplesError(name, f"cannot be resampled from {rate} to {sampling_rate} Hz ({err})") from err
    except MemoryError as err:
        raise AudioTooLongError(name, "is too long to resample in memory") from err
    if out.size == 0:
        raise EmptyAudioError(
            name, f"is too short: {samples.size} sample(s) at {rate} Hz leave none at {sampling_rate} Hz"
        )
    if not np.isfinite(out).all():
        raise InvalidSamplesError(name, "has sample values too large to process (float32 overflow)")
    return out


def load_audio(
    source: AudioInput,
    sampling_rate: int,
    *,
    source_sampling_rate: int | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silence: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """Decode any supported input to mono float32 samples at ``sampling_rate``.

    Arrays are taken to be at ``source_sampling_rate`` (default: already at ``sampling_rate``).
    Raises a subclass of `ser_hf.errors.AudioError` that names the input and the problem.
    """
    name = name or describe(source)
    if isinstance(source, Mapping):
        if source.get("array") is not None:
            source_sampling_rate = source.get("sampling_rate", source_sampling_rate)
            source = source["array"]
        elif source.get("raw") is not None:  # transformers pipeline style
            source_sampling_rate = source.get("sampling_rate", source_sampling_rate)
            source = source["raw"]
        elif source.get("bytes") is not None:
            source = source["bytes"]
        elif source.get("path"):
            source = source["path"]
        else:
            raise UnreadableAudioError(name, "a dict input needs 'array' (+ 'sampling_rate'), 'bytes' or 'path'")

    sampling_rate = check_sampling_rate(sampling_rate, "target sampling_rate")
    if isinstance(source, (str, os.PathLike, bytes, bytearray)) or hasattr(source, "read"):
        samples, rate = _decode_file(source, name, max_seconds)
    else:
        samples = _array_samples(source, name)
        rate = check_sampling_rate(sampling_rate if source_sampling_rate is None else source_sampling_rate, name)
        if max_seconds is not None and samples.size / rate > max_seconds:
            raise AudioTooLongError(
                name,
                f"is {samples.size / rate:.0f} s long, over the {max_seconds:.0f} s limit",
                seconds=samples.size / rate,
                limit=max_seconds,
            )
    check_samples(samples, name, allow_silence=allow_silence)
    return _resample_checked(samples, rate, sampling_rate, name)


def iter_blocks(
    source: str | os.PathLike | bytes | BinaryIO,
    sampling_rate: int,
    *,
    block_seconds: float = 10.0,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks at ``sampling_rate`` from a file of any length.

    Memory stays bounded by the block size: the file is read block by block and resampled with a
    streaming soxr resampler, so the concatenation of the blocks equals the resampled file.
    """
    name = name or describe(source)
    sampling_rate = check_sampling_rate(sampling_rate, "target sampling_rate")
    target = _open_target(source, name)
    try:
        f = sf.SoundFile(target)
    except _DECODE_ERRORS as err:
        raise UnreadableAudioError(name, _soundfile_problem(err)) from err
    with f:
        rate = check_sampling_rate(f.samplerate, name)
        if f.frames <= 0:
            raise EmptyAudioError(name, "contains no samples")
        stream = None if rate == sampling_rate else soxr.ResampleStream(rate, sampling_rate, 1, dtype="float32")
        frames_per_block = max(1, round(block_seconds * rate))
        yielded = False
        try:
            blocks = f.blocks(blocksize=frames_per_block, dtype="float32", always_2d=True)
            for block in blocks:
                mono = np.ascontiguousarray(to_mono(block))
                if not np.isfinite(mono).all():
                    raise InvalidSamplesError(name, "contains NaN or infinite samples")
                with np.errstate(over="ignore", invalid="ignore"):
                    out = mono if stream is None else stream.resample_chunk(mono, last=False)
                if not np.isfinite(out).all():
                    raise InvalidSamplesError(name, "has sample values too large to process (float32 overflow)")
                if out.size:
                    yielded = True
                    yield out
            tail = (
                np.zeros(0, np.float32) if stream is None else stream.resample_chunk(np.zeros(0, np.float32), last=True)
            )
        except AudioError:
            raise
        except _DECODE_ERRORS as err:
            raise UnreadableAudioError(name, _soundfile_problem(err)) from err
        if not np.isfinite(tail).all():
            raise InvalidSamplesError(name, "has sample values too large to process (float32 overflow)")
        if tail.size:
            yielded = True
            yield tail
        if not yielded:
            raise EmptyAudioError(name, "contains no decodable samples (truncated file?)")
