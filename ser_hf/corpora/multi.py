"""Several corpora as one `datasets.Dataset`: shared or joined labels, speakers keyed by corpus.

Every loader tags its clips with a ``corpus`` column; `combine_corpora` keeps the columns all corpora
can fill, keys speakers by corpus (``"ravdess:21"``, ``"emovo:f1"``) so that speaker "1" of one corpus
is never speaker "1" of another, and maps the labels onto ser-hf's taxonomy.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from datasets import Audio, ClassLabel, Dataset, Value, concatenate_datasets

from ..errors import CorpusError
from ..labels import EMOTIONS, canonical_emotion, taxonomy_order
from .base import audio_column, read_column
from .info import normalise_corpus_name
from .registry import CORPUS_KINDS, corpus_loader, detect_corpus, load_corpus

logger = logging.getLogger(__name__)

#: What `combine_corpora` needs of each corpus.
REQUIRED_COLUMNS = ("label", "speaker", "corpus")
#: The columns of a combined dataset, in order.
COMBINED_COLUMNS = ("audio", "path", "label", "emotion", "speaker", "corpus", "gender")
LABEL_MODES = ("shared", "union")


def _corpus_names(dataset: Dataset) -> list[str]:
    return list(dict.fromkeys(str(name) for name in read_column(dataset, "corpus")))


def _describe(dataset: Dataset, number: int) -> str:
    if "corpus" in dataset.column_names and len(dataset):
        return f"corpus {', '.join(_corpus_names(dataset))}"
    return f"corpus #{number} ({dataset.info.description or f'{len(dataset)} clips'})"


def _label_names(dataset: Dataset, what: str) -> list[str]:
    feature = dataset.features.get("label")
    if not isinstance(feature, ClassLabel):
        raise CorpusError(f"{what}: its 'label' column must be a ClassLabel, not {feature}")
    return list(feature.names)


def _check(corpora: Sequence[Dataset]) -> list[list[str]]:
    """Each corpus' ``label`` names, after checking every corpus has what combining needs."""
    owners: dict[str, int] = {}
    names = []
    for number, dataset in enumerate(corpora, start=1):
        what = _describe(dataset, number)
        missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
        if missing:
            raise CorpusError(
                f"{what}: missing column(s) {', '.join(repr(c) for c in missing)}; combining corpora needs "
                f"{', '.join(REQUIRED_COLUMNS)} (it has {', '.join(dataset.column_names)})"
            )
        names.append(_label_names(dataset, what))
        for corpus in _corpus_names(dataset):
            if not corpus:
                raise CorpusError(f"{what}: some clips have an empty 'corpus' value")
            if corpus in owners:
                raise CorpusError(
                    f"corpora #{owners[corpus]} and #{number} are both called {corpus!r}: give each corpus once, "
                    "under its own name (load_label_folders and load_manifest take name=)"
                )
            owners[corpus] = number
    return names


def _audio(dataset: Dataset) -> Dataset:
    """The clips' audio as an ``audio`` column cast to ``Audio(decode=False)`` (paths or embedded bytes)."""
    column = audio_column(dataset)
    if column != "audio":
        if "audio" in dataset.column_names:
            dataset = dataset.remove_columns("audio")
        if column == "path":
            dataset = dataset.add_column(
                "audio", [str(p) for p in read_column(dataset, "path")], feature=Value("string")
            )
        else:
            dataset = dataset.rename_column(column, "audio")
    if dataset.features["audio"] != Audio(decode=False):
        # Cast (not encode): encoding through `datasets` would need torchcodec.
        dataset = dataset.cast_column("audio", Audio(decode=False))
    return dataset


def _relabelled(dataset: Dataset, names: list[str], target: list[str], what: str) -> Dataset | None:
    """The clips of ``target`` labels with the combined columns, speakers keyed by corpus (``None``: no clips)."""
    mapping = {i: target.index(canonical_emotion(n)) for i, n in enumerate(names) if canonical_emotion(n) in target}
    labels = read_column(dataset, "label")
    keep = [i for i, label in enumerate(labels) if label in mapping]
    if len(keep) < len(labels):
        left = sorted({names[label] for label in labels if label not in mapping and 0 <= label < len(names)})
        logger.info("%s: %d clip(s) of labels %s left out (not in every corpus)", what, len(labels) - len(keep), left)
    if not keep:
        return None

    def kept(values: list[Any]) -> list[Any]:
        return values if len(keep) == len(values) else [values[i] for i in keep]

    audio = _audio(dataset).select_columns(["audio"])
    if "path" in dataset.column_names:
        paths = [str(p) for p in kept(read_column(dataset, "path"))]
    else:  # the file names stored with the audio, without reading its bytes
        paths = [p or "" for p in kept(pc.struct_field(audio.with_format("arrow")["audio"], "path").to_pylist())]
    new_labels = [mapping[labels[i]] for i in keep]
    corpora = [str(c) for c in kept(read_column(dataset, "corpus"))]
    speakers = [str(s) for s in kept(read_column(dataset, "speaker"))]
    speakers = [s if s.startswith(f"{c}:") else f"{c}:{s}" for s, c in zip(speakers, corpora)]
    genders = (
        ["" if g is None else str(g) for g in kept(read_column(dataset, "gender"))]
        if "gender" in dataset.column_names
        else [""] * len(keep)
    )
    combined = audio if len(keep) == len(labels) else audio.select(keep)
    for name, values, feature in (
        ("path", paths, Value("string")),
        ("label", new_labels, ClassLabel(names=target)),
        ("emotion", [target[label] for label in new_labels], Value("string")),
        ("speaker", speakers, Value("string")),
        ("corpus", corpora, Value("string")),
        ("gender", genders, Value("string")),
    ):
        combined = combined.add_column(name, values, feature=feature)
    return combined.select_columns(list(COMBINED_COLUMNS))


def combine_corpora(corpora: Sequence[Dataset], *, labels: str = "shared") -> Dataset:
    """One `Dataset` from several loaded corpora (each with ``label``, ``speaker`` and ``corpus`` columns).

    ``labels="shared"`` keeps the clips of the emotions every corpus has (the names of its ``label``
    `ClassLabel`, compared on ser-hf's taxonomy); ``"union"`` keeps every clip, over all their emotions
    (see `corpus_label_sets` for which corpus has which). Columns: ``audio`` (``Audio(decode=False)``),
    ``path``, ``label`` (`ClassLabel` in `ser_hf.labels.EMOTIONS` order), ``emotion``, ``speaker``
    (keyed by corpus: ``"ravdess:21"``, ``"emovo:f1"``), ``corpus`` and ``gender`` (``""`` where a
    corpus has none); other columns are dropped. A single corpus is returned as it is.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, not {labels!r}")
    corpora = list(corpora)
    if not corpora:
        raise ValueError("no corpora to combine")
    names = _check(corpora)
    if len(corpora) == 1:
        return corpora[0]
    canonical = [{canonical_emotion(n) for n in corpus_names} for corpus_names in names]
    target = taxonomy_order(set().union(*canonical))
    if labels == "shared":
        target = [name for name in target if all(name in c for c in canonical)]
        if not target:
            listed = "; ".join(f"{', '.join(_corpus_names(d))}: {n}" for d, n in zip(corpora, names))
            raise CorpusError(f"the corpora share no emotion ({listed}); pass labels='union' to keep them all")
    parts = [
        _relabelled(dataset, corpus_names, target, _describe(dataset, number))
        for number, (dataset, corpus_names) in enumerate(zip(corpora, names), start=1)
    ]
    parts = [part for part in parts if part is not None]
    if not parts:
        raise CorpusError(f"no clips of the labels {target} in any corpus")
    combined = concatenate_datasets(parts)
    corpus_list = ", ".join(name for dataset in corpora for name in _corpus_names(dataset))
    combined.info.description = (
        f"{corpus_list} combined by ser-hf ({len(combined)} clips, {labels} labels: {', '.join(target)})"
    )
    return combined


def _taxonomy_position(name: str) -> tuple[int, str]:
    canonical = canonical_emotion(name)
    return (EMOTIONS.index(canonical) if canonical in EMOTIONS else len(EMOTIONS), canonical)


def corpus_label_sets(dataset: Dataset) -> dict[str, list[str]]:
    """For each corpus (``corpus`` column), the ``label`` names its clips carry, in taxonomy order.

    In a set combined with ``labels="union"``, the labels missing from a corpus' list are the ones it
    never annotates: a model trained on it should not be taught that its clips are not those.
    """
    if "corpus" not in dataset.column_names:
        raise CorpusError(f"no 'corpus' column among {dataset.column_names}")
    names = _label_names(dataset, "the dataset")
    order = sorted(range(len(names)), key=lambda i: _taxonomy_position(names[i]))
    present: dict[str, set[int]] = {}
    for corpus, label in zip(read_column(dataset, "corpus"), read_column(dataset, "label")):
        present.setdefault(str(corpus), set()).add(label)
    return {corpus: [names[i] for i in order if i in ids] for corpus, ids in present.items()}


def _split_list(value: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        items = [text] if "," not in text or Path(text).exists() else text.split(",")
    else:
        items = [os.fspath(item) for item in value]
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ValueError(f"{what} is empty")
    return items


def _accepts(loader: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(loader).parameters)


def load_corpora(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    kind: str | Sequence[str] = "auto",
    *,
    labels: str = "shared",
    on_invalid: str = "raise",
    **options: Any,
) -> Any:
    """Load one or several corpora with `load_corpus` and combine them with `combine_corpora`.

    ``sources`` is one source, a comma-separated string of sources or a list of them; ``kind`` is one
    kind for all (default ``"auto"``: recognised from the file names) or one per source (a list or a
    comma-separated string). ``options`` go to the loaders that take them (``include_song=True`` to
    `load_ravdess`, and to no other). One source gives `load_corpus`' dataset itself.
    """
    items = _split_list(sources, "sources")
    kinds = [kind] if isinstance(kind, str) and "," not in kind else _split_list(kind, "kind")
    if len(kinds) == 1:
        kinds = kinds * len(items)
    if len(kinds) != len(items):
        raise ValueError(f"{len(kinds)} kinds for {len(items)} sources: give one kind, or one per source")
    known = set().union(*(_accepts(corpus_loader(k)) for k in CORPUS_KINDS if k != "auto"))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"load_corpora: no corpus loader takes the option(s) {unknown}")
    loaded = []
    for source, source_kind in zip(items, kinds):
        source_kind = normalise_corpus_name(source_kind)
        if source_kind == "auto":
            source_kind = detect_corpus(source)
        accepted = _accepts(corpus_loader(source_kind))
        passed = {name: value for name, value in options.items() if name in accepted}
        if len(passed) < len(options):
            logger.debug("%s (%s): options %s do not apply", source, source_kind, sorted(set(options) - set(passed)))
        loaded.append(load_corpus(source, source_kind, on_invalid=on_invalid, **passed))
    return combine_corpora(loaded, labels=labels)
