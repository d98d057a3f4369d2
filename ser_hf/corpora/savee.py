"""SAVEE, Surrey audio-visual expressed emotion (Haq & Jackson 2009): four male speakers, 7 emotions.

The original release keeps each speaker's clips in a folder named after him (``DC/a01.wav``); copies
found online flatten them into ``DC_a01.wav``. Both are read. Emotion codes: a (anger), d (disgust),
f (fear), h (happiness), n (neutral), sa (sadness), su (surprise); speakers DC, JE, JK, KL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from datasets import Value

from .base import load_named_files

SAVEE_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SAVEE_SPEAKERS: tuple[str, ...] = ("DC", "JE", "JK", "KL")
_EMOTIONS = {
    "n": "neutral",
    "h": "happy",
    "sa": "sad",
    "a": "angry",
    "f": "fearful",
    "d": "disgust",
    "su": "surprised",
}
_NAME = re.compile(r"^(?:(?P<speaker>[A-Za-z]{2})_)?(?P<emotion>sa|su|[adfhn])(?P<number>\d{2})$")

SAVEE_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "sentence": Value("int32"),
    "speaker": Value("string"),
    "gender": Value("string"),
}


def parse_savee_name(path: str | os.PathLike) -> dict[str, Any]:
    """Parse ``DC_a01.wav`` or ``DC/a01.wav``; `ValueError` says what is wrong with the name."""
    path = Path(path)
    match = _NAME.match(path.name.rsplit(".", 1)[0])
    if not match:
        raise ValueError("expected [SPEAKER_]EMOTION+NUMBER with emotion a, d, f, h, n, sa or su (e.g. DC_a01)")
    speaker = (match["speaker"] or path.parent.name).upper()
    if speaker not in SAVEE_SPEAKERS:
        raise ValueError(f"speaker {speaker!r} (from the name or the folder) is not one of {list(SAVEE_SPEAKERS)}")
    return {
        "emotion": _EMOTIONS[match["emotion"]],
        "sentence": int(match["number"]),
        "speaker": speaker,
        "gender": "male",
    }


def load_savee(
    source: str | os.PathLike, *, on_invalid: str = "raise", cache_dir: str | os.PathLike | None = None
) -> Any:
    """Load SAVEE (speaker folders or flattened names, or its archive) as a `datasets.Dataset`.

    Columns: ``audio``, ``path``, ``label`` (`ClassLabel` of `SAVEE_EMOTIONS`), ``emotion``, ``sentence``,
    ``speaker``, ``gender``, ``corpus`` (``"savee"``).
    """
    return load_named_files(
        source,
        parse_savee_name,
        corpus_name="SAVEE",
        corpus_id="savee",
        label_names=SAVEE_EMOTIONS,
        columns=SAVEE_COLUMNS,
        on_invalid=on_invalid,
        cache_dir=cache_dir,
    )
