"""Speaker-independent splits (whole speakers held out), k-fold by speaker, and the leaky random split."""

from __future__ import annotations

import logging
import math
import re
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
    """Normalise a speaker id so that 7, "7" and "07" match (and "ravdess:07" and "ravdess:7", keyed by corpus)."""
    text = str(value).strip()
    corpus, colon, speaker = text.partition(":")
    if colon and corpus and speaker.strip():
        return f"{corpus.strip()}:{speaker_key(speaker)}"
    return str(int(text)) if text.isdigit() else text


def natural_order(key: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key putting ``"f2"`` before ``"f10"`` and ``"ravdess:9"`` before ``"ravdess:10"`` (numbers numerically)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key) if part)


def _corpus_of(key: str) -> str:
    """The corpus part of a speaker key keyed by corpus (``"emovo:f1"`` → ``"emovo"``), else ``""``."""
    corpus, colon, _ = key.partition(":")
    return corpus if colon else ""


def _show_speakers(keys: Iterable[str], limit: int = 12) -> str:
    ordered = sorted(keys, key=natural_order)
    if len(ordered) <= limit:
        return ", ".join(ordered)
    return f"{len(ordered)} speakers: {', '.join(ordered[: limit - 3])}, ..., {', '.join(ordered[-3:])}"


def parse_speakers(value: str | Iterable[object] | None) -> list[str]:
    """``"21,22,23"``, ``[21, 22, 23]`` or ``"ravdess:21,emovo:f1"`` → normalised speaker keys (``[]`` when empty)."""
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

    ``validation`` is omitted when no ``eval_speakers`` are given. Speakers of combined corpora are
    keyed by corpus (``"ravdess:21,emovo:f1"``); see `default_heldout_speakers` for a default choice.
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
        hints = [k for u in sorted(unknown, key=natural_order) for k in sorted(present) if k.endswith(f":{u}")]
        hint = f"; speakers of combined corpora are keyed by corpus, e.g. {', '.join(hints[:3])}" if hints else ""
        missing = sorted(unknown, key=natural_order)
        raise CorpusError(f"speakers {missing} are not in the corpus (it has {_show_speakers(present)}){hint}")
    index: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for i, key in enumerate(keys):
        index["test" if key in test else "validation" if key in evaluation else "train"].append(i)
    if not index["train"]:
        raise CorpusError("no speakers left for training")
    return DatasetDict({name: dataset.select(rows) for name, rows in index.items() if rows or name != "validation"})


def _speaker_fold_order(key: str) -> tuple[bool, int, str]:
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


def speaker_folds(speakers: Sequence[object], n_folds: int) -> list[list[str]]:
    """Partition speakers into ``n_folds`` consecutive groups (RAVDESS 6 folds: actors 1-4, 5-8, ...)."""
    keys = sorted({speaker_key(s) for s in speakers}, key=_speaker_fold_order)
    if not 2 <= n_folds <= len(keys):
        raise ValueError(f"n_folds must be between 2 and the number of speakers ({len(keys)}), got {n_folds}")
    size, extra = divmod(len(keys), n_folds)
    folds, start = [], 0
    for k in range(n_folds):
        stop = start + size + (1 if k < extra else 0)
        folds.append(keys[start:stop])
        start = stop
    return folds


def corpus_folds(speakers: Sequence[object], n_folds: int) -> list[list[str]]:
    """`speaker_folds` within each corpus: every fold draws test speakers from every corpus.

    Speakers keyed by corpus (``"ravdess:21"``, ``"emovo:f1"``) are grouped by corpus; each corpus' speakers
    are cut into ``n_folds`` consecutive groups (in `speaker_folds` order) and group k of every corpus
    joins fold k. A corpus with fewer speakers than folds leaves some folds (the last ones) without its
    speakers. Speakers not keyed by corpus (one corpus) give exactly `speaker_folds`' folds.
    """
    keys = sorted({speaker_key(s) for s in speakers})
    by_corpus: dict[str, list[str]] = {}
    for key in keys:
        by_corpus.setdefault(_corpus_of(key), []).append(key)
    if set(by_corpus) <= {""}:
        return speaker_folds(keys, n_folds)
    largest = max(len(members) for members in by_corpus.values())
    if not 2 <= n_folds <= largest:
        raise ValueError(f"n_folds must be between 2 and the most speakers of one corpus ({largest}), got {n_folds}")
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for members in by_corpus.values():
        bare = {key.partition(":")[2] or key: key for key in members}
        size, extra = divmod(len(members), n_folds)
        ordered = [bare[b] for b in sorted(bare, key=_speaker_fold_order)]
        start = 0
        for k in range(n_folds):
            stop = start + size + (1 if k < extra else 0)
            folds[k].extend(ordered[start:stop])
            start = stop
    return folds


def default_heldout_speakers(dataset: Dataset, *, speaker_column: str = "speaker") -> tuple[list[str], list[str]]:
    """Test and validation speakers to hold out when none are given, chosen within each corpus.

    RAVDESS (corpus ``"ravdess"``) holds out its standard actors: test 21-24, validation 19-20
    (``"ravdess:21"``... in a combined set). Any other corpus, and RAVDESS without all of those actors,
    holds out its last ceil(n/6) speakers (natural order: numbers numerically) for test and the
    ceil(n/12) before them for validation, always keeping one for training: a corpus with one speaker
    gives none, one with two gives one test speaker and no validation. Without a ``corpus`` column the
    dataset is one corpus. Returns ``(test_speakers, validation_speakers)`` as `speaker_key` keys.
    """
    if speaker_column not in dataset.column_names:
        raise CorpusError(f"no speaker column {speaker_column!r} among {dataset.column_names}")
    speakers = read_column(dataset, speaker_column)
    corpora = read_column(dataset, "corpus") if "corpus" in dataset.column_names else [""] * len(speakers)
    by_corpus: dict[str, set[str]] = {}
    for corpus, speaker in zip(corpora, speakers):
        by_corpus.setdefault(str(corpus or ""), set()).add(speaker_key(speaker))
    test: list[str] = []
    validation: list[str] = []
    for corpus, present in by_corpus.items():
        keys = sorted(present, key=natural_order)
        prefix = "ravdess:" if keys and all(k.startswith("ravdess:") for k in keys) else ""
        standard_test = [f"{prefix}{actor}" for actor in RAVDESS_TEST_ACTORS]
        standard_validation = [f"{prefix}{actor}" for actor in RAVDESS_EVAL_ACTORS]
        if corpus == "ravdess" and present.issuperset(standard_test + standard_validation) and len(keys) > 6:
            test.extend(standard_test)
            validation.extend(standard_validation)
            continue
        n = len(keys)
        n_test = min(math.ceil(n / 6), n - 1)
        n_validation = min(math.ceil(n / 12), n - 1 - n_test)
        test.extend(keys[n - n_test :])
        validation.extend(keys[n - n_test - n_validation : n - n_test])
    if not test:
        shown = _show_speakers({speaker_key(s) for s in speakers})
        raise CorpusError(
            f"no speaker can be held out: every corpus has a single speaker ({shown}); "
            "a speaker-independent split needs at least two per corpus"
        )
    return test, validation


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
