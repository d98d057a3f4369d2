"""Cross-corpus evaluation: a model trained on one corpus, scored on another over their shared labels.

Every corpus loader maps its labels onto ser-hf's taxonomy (`ser_hf.labels.EMOTIONS`), so "anger"
in EmoDB and "ANG" in CREMA-D are both ``angry``. `shared_labels` finds what two label sets have in
common, `restrict_labels` keeps a corpus' clips of those labels (re-numbered), and `evaluate_across`
scores a recognizer on another corpus, choosing among the shared labels only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset

from .errors import LabelMapError
from .evaluation import score
from .features import prepare_audio
from .labels import canonical_emotion

logger = logging.getLogger(__name__)


def label_names(dataset: Dataset) -> list[str]:
    """The names of a corpus' ``label`` `ClassLabel`."""
    feature = dataset.features.get("label")
    if not isinstance(feature, ClassLabel):
        raise LabelMapError(f"the corpus' 'label' column must be a ClassLabel, not {feature}")
    return list(feature.names)


def shared_labels(first: Sequence[str], *others: Sequence[str]) -> list[str]:
    """Labels present in every list (compared on ser-hf's taxonomy), in the order of ``first``."""
    common = [canonical_emotion(name) for name in first]
    for other in others:
        keep = {canonical_emotion(name) for name in other}
        common = [name for name in common if name in keep]
    return list(dict.fromkeys(common))


def restrict_labels(dataset: Dataset, labels: Sequence[str]) -> Dataset:
    """Keep the clips whose label is in ``labels`` and re-number ``label`` as ``ClassLabel(labels)``."""
    wanted = [canonical_emotion(name) for name in labels]
    if not wanted:
        raise LabelMapError("no labels to keep")
    names = [canonical_emotion(name) for name in label_names(dataset)]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise LabelMapError(f"labels {missing} are not in the corpus (it has {names})")
    mapping = {names.index(name): i for i, name in enumerate(wanted)}
    kept = dataset.filter(lambda label: label in mapping, input_columns="label")
    new_labels = [mapping[label] for label in kept["label"]]
    kept = kept.remove_columns("label").add_column("label", new_labels, feature=ClassLabel(names=wanted))
    return kept


def evaluate_across(
    recognizer: Any,
    corpus: Dataset,
    *,
    labels: Sequence[str] | None = None,
    batch_size: int = 8,
    decode_cache_dir: str | None = None,
) -> dict[str, Any]:
    """Score an `EmotionRecognizer` on another corpus over the labels both know.

    Clips of labels the model does not know are left out; the model's choice is restricted to the
    shared labels (its other outputs are ignored). Returns `ser_hf.evaluation.score`'s figures plus
    ``labels`` (the shared ones), ``clips`` and ``left_out`` (labels of the corpus the model lacks).
    """
    corpus_labels = label_names(corpus)
    shared = list(labels) if labels is not None else shared_labels(recognizer.labels, corpus_labels)
    if not shared:
        raise LabelMapError(f"the model's labels {recognizer.labels} and the corpus' {corpus_labels} share none")
    model_labels = [canonical_emotion(name) for name in recognizer.labels]
    unknown = [name for name in shared if canonical_emotion(name) not in model_labels]
    if unknown:
        raise LabelMapError(f"labels {unknown} are not among the model's {recognizer.labels}")
    restricted = restrict_labels(corpus, shared)
    decoded, skipped = prepare_audio(restricted, recognizer.sampling_rate, cache_dir=decode_cache_dir)
    columns = [model_labels.index(canonical_emotion(name)) for name in shared]
    logits = []
    waveforms = decoded.with_format("numpy", columns=["waveform"])
    for start in range(0, len(decoded), 64):
        chunk = [np.asarray(w, dtype=np.float32) for w in waveforms[start : start + 64]["waveform"]]
        predictions = recognizer.predict_waveforms(chunk, batch_size=batch_size)
        logits.extend([[p.scores[recognizer.labels[c]] for c in columns] for p in predictions])
    predicted = np.asarray(logits).argmax(-1)
    result = score(predicted, np.asarray(decoded["label"]), [canonical_emotion(n) for n in shared])
    left_out = [name for name in corpus_labels if canonical_emotion(name) not in {canonical_emotion(s) for s in shared}]
    result.update(labels=list(shared), clips=len(decoded), left_out=left_out, skipped=[s.path for s in skipped])
    return result


def leave_one_corpus_out(
    model_args: Any, data_args: Any, training_args: Any, *, progress: Any = None
) -> dict[str, Any]:
    """Train on every corpus but ``data_args.test_corpus`` and score that one, over the emotions all share.

    The corpora are encoded once together; the model is chosen on validation speakers of the training corpora
    (``eval_speakers``, by default a twelfth of each corpus' speakers) and fitted with them; the held-out
    corpus is scored per clip and, for a speaker-adaptive model, with each of its speakers adapted to from
    their own unlabelled clips (another protocol, reported apart).
    """
    import dataclasses

    from .corpora.info import normalise_corpus_name
    from .trainer import EmotionTrainer

    sources = data_args.sources()
    if len(sources) < 2:
        raise LabelMapError("leaving one corpus out needs at least two corpora (--data_dir A,B)")
    data_args = dataclasses.replace(data_args, labels="shared")
    trainer = EmotionTrainer(model_args, data_args, training_args, progress=progress)
    corpus = trainer.load_corpus()
    held_out = normalise_corpus_name(data_args.test_corpus)
    names = sorted({str(c) for c in corpus["corpus"]})
    if held_out not in names:
        raise LabelMapError(f"--test_corpus {data_args.test_corpus!r} is not among the corpora loaded ({names})")
    encoded = trainer.prepare(corpus)
    test = np.flatnonzero((encoded.corpora == held_out) & encoded.is_original)
    training = np.flatnonzero((encoded.corpora != held_out) & encoded.is_original)
    from .splits import default_heldout_speakers, parse_speakers

    if str(data_args.eval_speakers).strip().lower() == "auto":
        _, validation = default_heldout_speakers(encoded.dataset.select(training))
    else:
        validation = parse_speakers(data_args.eval_speakers)
    is_valid = np.isin(encoded.speakers, validation)
    fit_rows, valid_rows = training[~is_valid[training]], training[is_valid[training]]
    fitted = trainer.fit(encoded, fit_rows, valid_rows)
    references = encoded.labels[test]
    per_clip = score(trainer.logits(fitted, encoded, test).argmax(-1), references, encoded.label_names)
    adapted_logits = trainer.adapted_logits(fitted, encoded, test)
    adapted = None if adapted_logits is None else score(adapted_logits.argmax(-1), references, encoded.label_names)
    from .corpora.info import describe_corpora

    return {
        "corpora": describe_corpora(names, list(encoded.label_names)),
        "train_corpora": [n for n in names if n != held_out],
        "test_corpus": held_out,
        "labels": list(encoded.label_names),
        "clips": {"train": len(fit_rows), "validation": len(valid_rows), "test": len(test)},
        "validation_speakers": list(validation),
        "per_clip": per_clip,
        "adapted": adapted,
        "phases": fitted.phases,
    }
