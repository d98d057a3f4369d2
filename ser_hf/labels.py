"""Emotion taxonomy: one set of emotion names for every corpus, and helpers to check a model's label map."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import LabelMapError

#: The eight RAVDESS emotions, in the order of their codes 01..08 (the ``ClassLabel`` order).
RAVDESS_EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

#: ser-hf's emotion taxonomy: every corpus maps its labels onto these names, and its `ClassLabel`
#: lists the ones it has in this order (RAVDESS order first, then emotions RAVDESS lacks).
EMOTIONS: tuple[str, ...] = (*RAVDESS_EMOTIONS, "boredom")

#: Common spellings found in other corpora, mapped onto ser-hf's emotion names.
EMOTION_ALIASES: dict[str, str] = {
    "neu": "neutral",
    "neutral": "neutral",
    "calm": "calm",
    "hap": "happy",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "ang": "angry",
    "anger": "angry",
    "angry": "angry",
    "fea": "fearful",
    "fear": "fearful",
    "fearful": "fearful",
    "dis": "disgust",
    "disgust": "disgust",
    "sur": "surprised",
    "surprise": "surprised",
    "surprised": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "ps": "surprised",
    "afraid": "fearful",
    "disgusted": "disgust",
    "bor": "boredom",
    "bored": "boredom",
    "boredom": "boredom",
}


def canonical_emotion(name: str) -> str:
    """Map a corpus' emotion name onto ser-hf's taxonomy (unknown names pass through, lower-cased)."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return EMOTION_ALIASES.get(key, key)


def taxonomy_order(emotions: object) -> list[str]:
    """Canonical names of ``emotions`` (any iterable of spellings), deduplicated, in `EMOTIONS` order.

    Emotions outside the taxonomy come last, alphabetically.
    """
    names = {canonical_emotion(str(e)) for e in emotions}  # type: ignore[attr-defined]
    known = [e for e in EMOTIONS if e in names]
    return known + sorted(names - set(EMOTIONS))


def check_id2label(id2label: Mapping[int | str, str], *, source: str = "model config") -> list[str]:
    """Return the labels in id order, or raise `LabelMapError` if the map is not a clean 0..n-1 map."""
    if not id2label:
        raise LabelMapError(f"{source}: the label map (id2label) is empty")
    try:
        ids = sorted(int(i) for i in id2label)
    except (TypeError, ValueError) as err:
        raise LabelMapError(f"{source}: id2label keys must be integers, got {list(id2label)!r}") from err
    if ids != list(range(len(ids))):
        raise LabelMapError(f"{source}: id2label ids must be 0..{len(ids) - 1} without gaps, got {ids}")
    by_int = {int(k): v for k, v in id2label.items()}
    labels = [str(by_int[i]) for i in ids]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise LabelMapError(f"{source}: id2label repeats labels {duplicates}")
    return labels
