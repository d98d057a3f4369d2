"""How ser-hf prepares a clip before its model sees it: leading and trailing silence cut, loudness set.

Training (`ser_hf.features.prepare_audio`) and prediction (`ser_hf.feature_extraction.SERFeatureExtractor`,
which `pipeline` runs too) call the same functions, so both see the same audio. This module needs numpy only;
it ships beside the model with the feature extractor's code.
"""

from __future__ import annotations

import numpy as np

#: Frames quieter than this many dB below the clip's loudest frame are silence at its ends.
TRIM_THRESHOLD_DB = 40.0
#: The RMS level (dBFS) every clip is brought to when loudness normalisation is on.
LOUDNESS_DB = -30.0
#: Below this RMS a clip is treated as digital silence and left as it is.
_SILENT_RMS = 1e-7


def trim_silence(
    samples: np.ndarray,
    sampling_rate: int,
    *,
    threshold_db: float = TRIM_THRESHOLD_DB,
    frame_seconds: float = 0.025,
    margin_seconds: float = 0.1,
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``threshold_db`` below the clip's loudest frame.

    Keeps ``margin_seconds`` on each side; returns the input unchanged when nothing would remain.
    """
    frame = max(1, int(frame_seconds * sampling_rate))
    n_frames = samples.size // frame
    if n_frames < 3:
        return samples
    frames = samples[: n_frames * frame].reshape(n_frames, frame)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return samples
    loud = np.flatnonzero(rms >= peak * 10.0 ** (-threshold_db / 20.0))
    margin = int(margin_seconds * sampling_rate)
    start = max(0, int(loud[0]) * frame - margin)
    end = min(samples.size, (int(loud[-1]) + 1) * frame + margin)
    return samples[start:end] if end > start else samples


def normalize_loudness(samples: np.ndarray, target_db: float = LOUDNESS_DB) -> np.ndarray:
    """The clip scaled so that its RMS level is ``target_db`` dBFS (digital silence is left alone)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    if rms < _SILENT_RMS:
        return samples
    return (samples * (10.0 ** (target_db / 20.0) / rms)).astype(np.float32)


def prepare_clip(
    samples: np.ndarray, sampling_rate: int, *, trim: bool, loudness_db: float | None, threshold_db: float
) -> np.ndarray:
    """One mono float32 clip as training saw it: silence trimmed, then loudness normalised (each if asked)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if trim:
        samples = trim_silence(samples, sampling_rate, threshold_db=threshold_db)
    if loudness_db is not None:
        samples = normalize_loudness(samples, loudness_db)
    return samples
