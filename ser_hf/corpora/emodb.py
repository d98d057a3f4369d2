"""EmoDB, the Berlin database of emotional speech (Burkhardt et al. 2005): 10 German actors, 7 emotions.

File names are ``SSTTTEV.wav``: speaker (03, 08-16), text code (a01, a02, a04, a05, a07, b01, b02, b03,
b09, b10), German emotion letter (W Ärger/Wut anger, L Langeweile boredom, E Ekel disgust, A Angst
fear, F Freude happiness, T Trauer sadness, N neutral) and version letter, e.g. ``03a01Fa.wav``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from datasets import Value

from .base import load_named_files

EMODB_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom")
_EMOTIONS = {
    "N": "neutral",
    "F": "happy",
    "T": "sad",
    "W": "angry",
    "A": "fearful",
    "E": "disgust",
    "L": "boredom",
}
_GENDERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])$")

EMODB_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "text": Value("string"),
    "version": Value("string"),
    "speaker": Value("string"),
    "gender": Value("string"),
}


def parse_emodb_name(path: str | os.PathLike) -> dict[str, Any]:
    """Parse ``03a01Fa.wav``; `ValueError` says what is wrong with the name."""
    match = _NAME.match(Path(path).name.rsplit(".", 1)[0])
    if not match:
        raise ValueError("expected SPEAKER(2 digits) TEXT(a01..b10) EMOTION(letter) VERSION(letter), e.g. 03a01Fa")
    if match["speaker"] not in _GENDERS:
        raise ValueError(f"speaker {match['speaker']} is not an EmoDB speaker ({', '.join(_GENDERS)})")
    if match["text"] not in _TEXTS:
        raise ValueError(f"text code {match['text']} is not one of {', '.join(_TEXTS)}")
    if match["emotion"] not in _EMOTIONS:
        raise ValueError(f"emotion letter {match['emotion']} is not one of W, L, E, A, F, T, N")
    return {
        "emotion": _EMOTIONS[match["emotion"]],
        "text": match["text"],
        "version": match["version"],
        "speaker": match["speaker"],
        "gender": _GENDERS[match["speaker"]],
    }


def load_emodb(
    source: str | os.PathLike, *, on_invalid: str = "raise", cache_dir: str | os.PathLike | None = None
) -> Any:
    """Load EmoDB (its ``wav`` folder, any nesting, or its archive) as a `datasets.Dataset`.

    Columns: ``audio``, ``path``, ``label`` (`ClassLabel` of `EMODB_EMOTIONS`), ``emotion``, ``text``,
    ``version``, ``speaker``, ``gender``, ``corpus`` (``"emodb"``).
    """
    return load_named_files(
        source,
        parse_emodb_name,
        corpus_name="EmoDB",
        corpus_id="emodb",
        label_names=EMODB_EMOTIONS,
        columns=EMODB_COLUMNS,
        on_invalid=on_invalid,
        cache_dir=cache_dir,
    )
