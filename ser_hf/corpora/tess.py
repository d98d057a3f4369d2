"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010): two female speakers.

An older (``OAF``) and a younger (``YAF``) actress say "Say the word ___" for 200 words in 7 emotions.
File names are ``SPEAKER_word_emotion.wav`` in speaker/emotion folders (``OAF_angry/OAF_back_angry.wav``);
emotions are angry, disgust, fear, happy, neutral, ps (pleasant surprise) and sad. Some distributed files
say ``OA_`` for ``OAF_`` and spell the emotion differently (``pleasant_surprised``); both are accepted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from datasets import Value

from ..labels import canonical_emotion
from .base import load_named_files

TESS_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
_SPEAKERS = {"OAF": "older", "OA": "older", "YAF": "younger"}
_NAME = re.compile(r"^(?P<speaker>OAF|OA|YAF)_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z_]+)$", re.IGNORECASE)

TESS_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "word": Value("string"),
    "speaker": Value("string"),
    "age": Value("string"),
    "gender": Value("string"),
}


def parse_tess_name(path: str | os.PathLike) -> dict[str, Any]:
    """Parse ``OAF_back_angry.wav`` / ``YAF_dog_ps.wav``; `ValueError` says what is wrong with the name."""
    match = _NAME.match(Path(path).name.rsplit(".", 1)[0])
    if not match:
        raise ValueError("expected SPEAKER_word_emotion with speaker OAF or YAF (e.g. OAF_back_angry)")
    emotion = canonical_emotion(match["emotion"])
    if emotion not in TESS_EMOTIONS:
        raise ValueError(f"emotion {match['emotion']!r} is not a TESS emotion")
    speaker = "YAF" if match["speaker"].upper() == "YAF" else "OAF"
    return {
        "emotion": emotion,
        "word": match["word"].lower(),
        "speaker": speaker,
        "age": _SPEAKERS[speaker],
        "gender": "female",
    }


def load_tess(
    source: str | os.PathLike, *, on_invalid: str = "raise", cache_dir: str | os.PathLike | None = None
) -> Any:
    """Load TESS (a folder, any nesting, or its archive) as a `datasets.Dataset`.

    Columns: ``audio``, ``path``, ``label`` (`ClassLabel` of `TESS_EMOTIONS`), ``emotion``, ``word``,
    ``speaker`` (OAF/YAF), ``age``, ``gender``, ``corpus`` (``"tess"``).
    """
    return load_named_files(
        source,
        parse_tess_name,
        corpus_name="TESS",
        corpus_id="tess",
        label_names=TESS_EMOTIONS,
        columns=TESS_COLUMNS,
        on_invalid=on_invalid,
        cache_dir=cache_dir,
    )
