"""Speaker-independent splits (whole speakers held out), k-fold by speaker, and the leaky random split."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence

from datasets import Dataset, DatasetDict

from .corpora.base import read_column
from .errors import CorpusError

logger = logging.getLogger(__name__)

#: RAVDESS defaults: test on actors 21-24, pick the best epoch on actors 19-20.
RAVDESS_TEST_ACTORS = (21, 22, 23, 24)
RAVDESS_EVAL_ACTORS = (19, 20)


class SpeakerLeakWarning(UserWarning):
    """A split that lets the same speakers appear in training and test data."""


def speaker_key(value: object) -> str:
    """Normalise a speaker id so that 7, "7" and "07" match."""
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def parse_speakers(value: str | Iterable[object] | None) -> list[str]:
    """``"21,22,23"`` or ``[21, 22, 23]`` → normalised speaker keys (an empty input gives ``[]``)."""
    if value is None:
        return []
    items = value.replace(";", ",").replace(" ", ",").split(",") if isinstance(value, str) else value
    return [speaker_key(v) for v in items if str(v).strip()]


def split_by_speaker(
    dataset: Dataset,
    *,
    test_speakers: str | Iterable[object],
    eval_speakers: str | Iterable[object] | None = None,
    speaker_column: str = "speaker",
) -> DatasetDict:
    """``train``/``validation``/``test`` splits with whole speakers held out of training.

    ``validation`` is omitted when no ``eval_speakers`` are given.
    """
    if speaker_column not in dataset.column_names:
        raise CorpusError(f"no speaker column {speaker_column!r} among {dataset.column_names}")
    test, evaluation = set(parse_speakers(test_speakers)), set(parse_speakers(eval_speakers))
    if not test:
        raise ValueError("test_speakers is empty: a speaker-independent split needs held-out speakers")
    if test & evaluation:
        raise ValueError(f"speakers {sorted(test & evaluation)} are in both the test and the eval sets")
    keys = [speaker_key(s) for s in read_column(dataset, speaker_column)]
    present = set(keys)
    unknown = (test | evaluation) - present
    if unknown:
        raise CorpusError(f"speakers {sorted(unknown)} are not in the corpus (it has {sorted(present)})")
    index: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for i, key in enumerate(keys):
        index["test" if key in test else "validation" if key in evaluation else "train"].append(i)
    if not index["train"]:
        raise CorpusError("no speakers left for training")
    return DatasetDict({name: dataset.select(rows) for name, rows in index.items() if rows or name != "validation"})


def speaker_folds(speakers: Sequence[object], n_folds: int) -> list[list[str]]:
    """Partition speakers into ``n_folds`` consecutive groups (RAVDESS 6 folds: actors 1-4, 5-8, ...)."""
    keys = sorted({speaker_key(s) for s in speakers}, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    if not 2 <= n_folds <= len(keys):
        raise ValueError(f"n_folds must be between 2 and the number of speakers ({len(keys)}), got {n_folds}")
    size, extra = divmod(len(keys), n_folds)
    folds, start = [], 0
    for k in range(n_folds):
        stop = start + size + (1 if k < extra else 0)
        folds.append(keys[start:stop])
        start = stop
    return folds


def random_split(dataset: Dataset, *, test_size: float = 0.2, eval_size: float = 0.1, seed: int = 42) -> DatasetDict:
    """Random clip-level split. Leaks speaker identity into the test set: prefer `split_by_speaker`."""
    warnings.warn(
        "random clip-level splits put the same speakers in training and test data and inflate accuracy "
        "(by 10+ points on RAVDESS); report speaker-independent results instead",
        SpeakerLeakWarning,
        stacklevel=2,
    )
    first = dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    parts = {"test": first["test"]}
    if eval_size > 0:
        second = first["train"].train_test_split(
            test_size=eval_size / (1 - test_size), seed=seed, stratify_by_column="label"
        )
        parts.update(train=second["train"], validation=second["test"])
    else:
        parts["train"] = first["train"]
    return DatasetDict({k: parts[k] for k in ("train", "validation", "test") if k in parts})
