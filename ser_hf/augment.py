"""Data augmentation for training clips: other speaking rates and pitches, noise, rooms (numpy, scipy, soxr).

`augment_clip` draws, for one clip: a speed change of 0.9-1.1x (resampling, so pitch and tempo move together,
as in Kaldi's speed perturbation), added white noise at 15-35 dB SNR (half of the clips), and the reverberation
of a small room (a third of the clips: noise shaped by an exponential decay of 0.2-0.6 s RT60). Training adds
``augment`` such copies of every training clip (`ser_hf.encoding.encode_corpus`); validation and test clips are
never augmented. bench/cross_corpus.py measures what it brings.
"""

from __future__ import annotations

import numpy as np
import soxr
from scipy.signal import fftconvolve

#: Bump when augmentation changes, so old caches are not reused.
AUGMENT_VERSION = "1"


def speed(samples: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """The clip played ``factor`` times faster (pitch up by the same factor)."""
    return soxr.resample(samples, rate * factor, rate, quality="HQ").astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` below the clip's RMS level."""
    level = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    noise = rng.standard_normal(samples.size).astype(np.float32) * level * 10 ** (-snr_db / 20)
    return (samples + noise).astype(np.float32)


def reverberate(samples: np.ndarray, rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """The clip in a room whose reverberation decays by 60 dB in ``rt60`` seconds (a synthetic impulse
    response: the direct sound, then exponentially decaying noise), at the clip's own level."""
    length = max(1, int(rt60 * rate))
    t = np.arange(length) / rate
    response = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    response[0] = 1.0
    response /= np.sqrt(np.sum(np.square(response)))
    wet = fftconvolve(samples, response)[: samples.size]
    before = np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12
    after = np.sqrt(np.mean(np.square(wet))) + 1e-12
    return (wet * (before / after)).astype(np.float32)


def augment_clip(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One random variation of a clip (see the module docstring)."""
    out = speed(np.asarray(samples, dtype=np.float32), rate, float(rng.uniform(0.9, 1.1)))
    if rng.random() < 1 / 3:
        out = reverberate(out, rate, float(rng.uniform(0.2, 0.6)), rng)
    if rng.random() < 0.5:
        out = add_noise(out, float(rng.uniform(15.0, 35.0)), rng)
    return out


__all__ = ["AUGMENT_VERSION", "add_noise", "augment_clip", "reverberate", "speed"]
