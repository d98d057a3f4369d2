"""EMOVO, an Italian emotional speech corpus (Costantini et al., LREC 2014): six actors, 7 emotions.

File names are ``EMOTION-SPEAKER-SENTENCE.wav``, usually in speaker folders (``f1/dis-f1-b1.wav``):
emotion dis (disgust), gio (joy), neu (neutral), pau (fear), rab (anger), sor (surprise), tri (sadness);
speaker f1-f3 (female) or m1-m3 (male); sentence b1-b3 (short), d1-d2 (questions), l1-l4 (long) or
n1-n5 (nonsense). Released for research use: cite the paper.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from datasets import Value

from .base import load_named_files

EMOVO_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
_EMOTIONS = {
    "neu": "neutral",
    "gio": "happy",
    "tri": "sad",
    "rab": "angry",
    "pau": "fearful",
    "dis": "disgust",
    "sor": "surprised",
}
_SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
#: Sentence type letter → (type, number of sentences of that type).
_SENTENCE_TYPES = {"b": ("short", 3), "d": ("question", 2), "l": ("long", 4), "n": ("nonsense", 5)}

EMOVO_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "speaker": Value("string"),
    "gender": Value("string"),
    "sentence": Value("string"),
    "sentence_type": Value("string"),
}


def parse_emovo_name(path: str | os.PathLike) -> dict[str, Any]:
    """Parse ``dis-f1-b1.wav``; `ValueError` says what is wrong with the name."""
    parts = Path(path).name.split(".")[0].lower().split("-")
    if len(parts) != 3:
        raise ValueError("expected three fields, EMOTION-SPEAKER-SENTENCE (e.g. dis-f1-b1)")
    emotion, speaker, sentence = parts
    if emotion not in _EMOTIONS:
        raise ValueError(f"emotion code {emotion!r} is not one of {', '.join(_EMOTIONS)}")
    if speaker not in _SPEAKERS:
        raise ValueError(f"speaker {speaker!r} is not one of {', '.join(_SPEAKERS)}")
    kind = _SENTENCE_TYPES.get(sentence[:1])
    if kind is None or len(sentence) != 2 or not sentence[1].isdigit() or not 1 <= int(sentence[1]) <= kind[1]:
        raise ValueError(f"sentence code {sentence!r} is not one of b1-b3, d1-d2, l1-l4, n1-n5")
    return {
        "emotion": _EMOTIONS[emotion],
        "speaker": speaker,
        "gender": "female" if speaker.startswith("f") else "male",
        "sentence": sentence,
        "sentence_type": kind[0],
    }


def load_emovo(
    source: str | os.PathLike, *, on_invalid: str = "raise", cache_dir: str | os.PathLike | None = None
) -> Any:
    """Load EMOVO (its speaker folders, any nesting, or its archive) as a `datasets.Dataset`.

    Columns: ``audio``, ``path``, ``label`` (`ClassLabel` of `EMOVO_EMOTIONS`), ``emotion``, ``speaker``
    (f1-f3, m1-m3), ``gender``, ``sentence`` (b1 ... n5), ``sentence_type`` (short, question, long,
    nonsense), ``corpus``.
    """
    return load_named_files(
        source,
        parse_emovo_name,
        corpus_name="EMOVO",
        corpus_id="emovo",
        label_names=EMOVO_EMOTIONS,
        columns=EMOVO_COLUMNS,
        on_invalid=on_invalid,
        cache_dir=cache_dir,
    )
