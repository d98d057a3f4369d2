"""CREMA-D (Cao et al. 2014): 91 actors, 12 sentences, 6 emotions at up to 4 intensity levels.

File names are ``AAAA_SSS_EEE_LL.wav``: actor id 1001-1091, sentence code, emotion (ANG, DIS, FEA,
HAP, NEU, SAD) and level (LO, MD, HI, or XX unspecified), e.g. ``1001_DFA_ANG_XX.wav``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import Value

from .base import load_named_files

CREMA_D_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
_EMOTIONS = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fearful", "DIS": "disgust"}
_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}

CREMA_D_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "intensity": Value("string"),
    "sentence": Value("string"),
    "actor": Value("int32"),
    "speaker": Value("string"),
}


def parse_crema_d_name(path: str | os.PathLike) -> dict[str, Any]:
    """Parse ``1001_DFA_ANG_XX.wav``; `ValueError` says what is wrong with the name."""
    parts = Path(path).name.split(".")[0].split("_")
    if len(parts) != 4:
        raise ValueError("expected four fields, ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = parts
    if not (actor.isdigit() and 1001 <= int(actor) <= 1091):
        raise ValueError(f"actor {actor!r} is not a CREMA-D actor id (1001-1091)")
    if sentence not in _SENTENCES:
        raise ValueError(f"sentence code {sentence!r} is not one of {sorted(_SENTENCES)}")
    if emotion not in _EMOTIONS:
        raise ValueError(f"emotion code {emotion!r} is not one of {sorted(_EMOTIONS)}")
    if level not in _LEVELS:
        raise ValueError(f"level {level!r} is not one of {sorted(_LEVELS)}")
    return {
        "emotion": _EMOTIONS[emotion],
        "intensity": _LEVELS[level],
        "sentence": _SENTENCES[sentence],
        "actor": int(actor),
        "speaker": actor,
    }


def load_crema_d(
    source: str | os.PathLike, *, on_invalid: str = "raise", cache_dir: str | os.PathLike | None = None
) -> Any:
    """Load CREMA-D (a folder of ``AudioWAV`` files, any nesting, or its archive) as a `datasets.Dataset`.

    Columns: ``audio``, ``path``, ``label`` (`ClassLabel` of `CREMA_D_EMOTIONS`), ``emotion``,
    ``intensity``, ``sentence``, ``actor``, ``speaker``, ``corpus`` (``"crema-d"``).
    """
    return load_named_files(
        source,
        parse_crema_d_name,
        corpus_name="CREMA-D",
        corpus_id="crema-d",
        label_names=CREMA_D_EMOTIONS,
        columns=CREMA_D_COLUMNS,
        on_invalid=on_invalid,
        cache_dir=cache_dir,
    )
