"""Speaker-independent cross-validation: k folds of whole speakers, per-fold and mean ± std scores, reports.

Every fold tests on speakers the model never heard. Each fold's model selection (best epoch,
hyper-parameters) uses validation speakers drawn from that fold's *training* speakers, never the
test fold. RAVDESS gets the usual 6 folds of 4 actors (fold k tests actors 4k-3 … 4k).

    result = cross_validate(corpus, "openai/whisper-tiny.en", n_folds=6)          # any training option too
    print(result.to_markdown()); result.save("cv-report")   # JSON, Markdown, confusion matrix (CSV, PNG)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .atomic import atomic_directory
from .corpora.info import describe_corpora
from .errors import CorpusError
from .evaluation import score
from .splits import corpus_folds, natural_order, speaker_key

logger = logging.getLogger(__name__)

METRICS = ("ua", "wa", "macro_f1")


@dataclass
class Fold:
    """One fold: who is tested, who picks the model, who trains it (speaker keys)."""

    index: int
    test: list[str]
    validation: list[str]
    train: list[str]


@dataclass
class FoldResult:
    """Scores of one fold (`ser_hf.evaluation.score` output) and what its training chose on validation."""

    fold: Fold
    scores: dict[str, Any]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def make_folds(
    speakers: Sequence[object],
    n_folds: int = 6,
    *,
    folds: Sequence[Sequence[object]] | None = None,
    validation: str | int = "next",
) -> list[Fold]:
    """Folds of whole speakers, each with validation speakers taken from its training speakers.

    ``folds`` gives the test speakers of each fold explicitly; otherwise `ser_hf.splits.corpus_folds` cuts
    each corpus' sorted speakers into ``n_folds`` consecutive groups and joins group k of every corpus into
    fold k (on one corpus: consecutive groups of its speakers; RAVDESS: actors 1-4, 5-8, ...).
    ``validation="next"`` validates on the next fold's speakers (cyclically; RAVDESS: 4 actors, 2 female
    and 2 male); an integer ``n`` takes ``n`` training speakers spread evenly over the sorted list; ``0``
    means no validation.
    """
    present = sorted({speaker_key(s) for s in speakers}, key=natural_order)
    groups = [[speaker_key(s) for s in group] for group in folds] if folds else corpus_folds(present, n_folds)
    if len(groups) < 2:
        raise ValueError("cross-validation needs at least two folds")
    unknown = sorted({s for group in groups for s in group} - set(present))
    if unknown:
        raise CorpusError(f"fold speakers {unknown} are not in the corpus (it has {present})")
    result = []
    for k, test in enumerate(groups):
        train = [s for s in present if s not in test]
        if validation == "next":
            chosen = [s for s in groups[(k + 1) % len(groups)] if s not in test]
        elif isinstance(validation, int) and validation >= 0:
            if validation >= len(train):
                raise ValueError(f"fold {k + 1}: {validation} validation speakers leave none of {len(train)} to train")
            step = len(train) / validation if validation else 1
            chosen = [train[int(i * step + step / 2)] for i in range(validation)]
        else:
            raise ValueError(f"validation must be 'next' or a number of speakers, not {validation!r}")
        result.append(Fold(k + 1, list(test), chosen, train))
    return result


def fold_rows(speakers: Sequence[object], fold: Fold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of a fold's fitting speakers (training minus validation), validation and test speakers."""
    keys = np.array([speaker_key(s) for s in speakers])
    test = np.isin(keys, fold.test)
    valid = np.isin(keys, fold.validation)
    fit = ~test & ~valid
    return np.flatnonzero(fit), np.flatnonzero(valid), np.flatnonzero(test)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)) if len(values) > 1 else 0.0}


@dataclass
class CrossValidationResult:
    """Per-fold scores, their mean ± std, per-class recall and the summed confusion matrix."""

    #: What was trained per fold, e.g. ``"stats head, probe"``.
    strategy: str
    model: str
    label_names: list[str]
    folds: list[FoldResult]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: The same folds with each test speaker adapted to from their own unlabelled clips (another protocol).
    adapted: list[FoldResult] | None = None

    def corpus_mean_std(self, corpus: str, metric: str = "ua", adapted: bool = False) -> dict[str, float]:
        """Mean ± std over the folds of one corpus' own test clips (several corpora cross-validated together)."""
        folds = self.adapted if adapted else self.folds
        return _mean_std(
            [f.info["per_corpus"][corpus][metric] for f in folds or [] if corpus in f.info.get("per_corpus", {})]
        )

    def adapted_mean_std(self, metric: str) -> dict[str, float] | None:
        return _mean_std([f.scores[metric] for f in self.adapted]) if self.adapted else None

    def mean_std(self, metric: str) -> dict[str, float]:
        return _mean_std([f.scores[metric] for f in self.folds])

    @property
    def confusion_matrix(self) -> list[list[int]]:
        """Rows: true labels, columns: predicted labels, summed over the folds."""
        return np.sum([np.asarray(f.scores["confusion_matrix"]) for f in self.folds], axis=0).astype(int).tolist()

    @property
    def per_class_recall(self) -> dict[str, float | None]:
        """Recall of each label over all folds' test clips together."""
        matrix = np.asarray(self.confusion_matrix, dtype=float)
        totals = matrix.sum(axis=1)
        return {
            name: (float(matrix[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(self.label_names)
        }

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "model": self.model,
            "folds": len(self.folds),
            **{metric: self.mean_std(metric) for metric in METRICS},
            "per_class_recall": self.per_class_recall,
            **({"adapted": {m: self.adapted_mean_std(m) for m in METRICS}} if self.adapted else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "label_names": self.label_names,
            "confusion_matrix": self.confusion_matrix,
            "folds": [
                {
                    "fold": f.fold.index,
                    "test_speakers": f.fold.test,
                    "validation_speakers": f.fold.validation,
                    **{m: f.scores[m] for m in METRICS},
                    "per_class_recall": f.scores["per_class_recall"],
                    "confusion_matrix": f.scores["confusion_matrix"],
                    "seconds": round(f.seconds, 2),
                    "info": f.info,
                }
                for f in self.folds
            ],
            "adapted_folds": [{"fold": f.fold.index, **{m: f.scores[m] for m in METRICS}} for f in self.adapted or []],
            "settings": self.settings,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }

    def to_markdown(self) -> str:
        pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
        lines = [
            f"# Speaker-independent cross-validation: {self.strategy} ({self.model})",
            "",
            f"{len(self.folds)} folds; every fold tests speakers absent from its training and validation data.",
            "",
            "| fold | test speakers | validation speakers | UA % | WA % | macro-F1 % |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in self.folds:
            lines.append(
                f"| {f.fold.index} | {', '.join(f.fold.test)} | {', '.join(f.fold.validation) or '–'} "
                f"| {pct(f.scores['ua'])} | {pct(f.scores['wa'])} | {pct(f.scores['macro_f1'])} |"
            )
        stats = {m: self.mean_std(m) for m in METRICS}
        lines.append(
            "| **mean ± std** | | | "
            + " | ".join(f"**{100 * stats[m]['mean']:.1f} ± {100 * stats[m]['std']:.1f}**" for m in METRICS)
            + " |"
        )
        if self.adapted:
            adapted = {m: self.adapted_mean_std(m) for m in METRICS}
            lines += [
                "",
                "**Adapted to each test speaker** (another protocol: each test speaker's clips mapped onto the "
                "training speakers' average voice from all of that speaker's unlabelled clips): "
                + ", ".join(
                    f"{name} {100 * adapted[m]['mean']:.1f} ± {100 * adapted[m]['std']:.1f}"
                    for name, m in (("UA", "ua"), ("WA", "wa"), ("macro-F1", "macro_f1"))
                )
                + "; per fold UA "
                + ", ".join(f"{100 * f.scores['ua']:.1f}" for f in self.adapted)
                + ".",
            ]
        corpora = sorted({c for f in self.folds for c in f.info.get("per_corpus", {})})
        if corpora:
            lines += ["", "## Per corpus (each corpus' own test clips)", "", "| corpus | UA % | adapted UA % |"]
            lines += ["| --- | --- | --- |"]
            for corpus in corpora:
                per_clip = self.corpus_mean_std(corpus)
                adapted = self.corpus_mean_std(corpus, adapted=True) if self.adapted else None
                shown = f"{100 * adapted['mean']:.1f} ± {100 * adapted['std']:.1f}" if adapted else "–"
                lines.append(f"| {corpus} | {100 * per_clip['mean']:.1f} ± {100 * per_clip['std']:.1f} | {shown} |")
        facts = self.settings.get("corpus_facts") or []
        if facts:
            lines += ["", "## Data", ""]
            for fact in facts:
                mapping = ", ".join(f"{code} → {label}" for code, label in fact["labels"].items())
                lines.append(f"- **{fact['corpus']}**: {fact['license_text']} Labels: {mapping}.")
        lines += ["", "## Per-class recall (all folds)", "", "| label | recall % |", "| --- | --- |"]
        lines += [f"| {name} | {pct(value)} |" for name, value in self.per_class_recall.items()]
        lines += ["", "## Confusion matrix (rows: true, columns: predicted; all folds)", ""]
        lines += [confusion_table(self.confusion_matrix, self.label_names)]
        if self.timings:
            lines += ["", "## Wall time", "", "| step | seconds |", "| --- | --- |"]
            lines += [f"| {k} | {v:.1f} |" for k, v in self.timings.items()]
        return "\n".join(lines) + "\n"

    def save(self, output_dir: str | Path) -> Path:
        """Write ``cv_report.json``, ``cv_report.md``, ``confusion_matrix.csv`` and (with matplotlib) ``.png``."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_directory(output_dir / "cv_report") as staged:
            (staged / "cv_report.json").write_text(json.dumps(self.to_dict(), indent=2))
            (staged / "cv_report.md").write_text(self.to_markdown())
            header = ",".join(["true\\predicted", *self.label_names])
            rows = [",".join([name, *map(str, row)]) for name, row in zip(self.label_names, self.confusion_matrix)]
            (staged / "confusion_matrix.csv").write_text("\n".join([header, *rows]) + "\n")
            try:
                plot_confusion_matrix(
                    self.confusion_matrix,
                    self.label_names,
                    staged / "confusion_matrix.png",
                    title=f"{self.strategy}: UA {100 * self.mean_std('ua')['mean']:.1f}%",
                )
            except ImportError:
                logger.warning("matplotlib is not installed (pip install 'ser-hf[report]'): no confusion_matrix.png")
        return output_dir / "cv_report"


def confusion_table(matrix: Sequence[Sequence[int]], label_names: Sequence[str]) -> str:
    """A Markdown table of a confusion matrix (rows: true labels, columns: predicted)."""
    lines = ["| true \\ predicted | " + " | ".join(label_names) + " |", "| --- " * (len(label_names) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |" for name, row in zip(label_names, matrix)]
    return "\n".join(lines)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path, *, title: str = ""
) -> Path:
    """Save a row-normalised confusion matrix (counts in the cells) as a PNG; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.7 * len(label_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(label_names)):
        for j in range(len(label_names)):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="recall")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------- running
def cross_validate(
    corpus: Dataset | None = None,
    model_name_or_path: str | None = None,
    *,
    n_folds: int | None = None,
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    arguments: tuple[Any, Any, Any] | None = None,
    **fields: Any,
) -> CrossValidationResult:
    """Cross-validate ser-hf's training pipeline over folds of whole speakers; returns (and saves) the report.

    Takes the options of `ser_hf.arguments` as keywords (``finetune_layers``, ``head``, ``folds``,
    ``validation``, ``only_folds``, ...; or the three dataclasses as ``arguments``). Each fold runs the same
    pipeline as ``ser-hf train`` (`ser_hf.trainer.EmotionTrainer.fit`) on features encoded once for every
    fold; its choices see only its validation speakers (drawn from its training speakers: `make_folds`).
    Speaker-adaptive models are also scored with each test speaker adapted to from their own clips, a
    different protocol, reported apart (``result.adapted``).
    """
    from .arguments import arguments as make_arguments
    from .trainer import EmotionTrainer

    if arguments is None:
        if model_name_or_path is not None:
            fields["model_name_or_path"] = model_name_or_path
        if n_folds is not None:
            fields["cv"] = n_folds
        fields.setdefault("output_dir", str(output_dir) if output_dir is not None else "runs/ser-hf-cv")
        model_args, data_args, training_args = make_arguments(**fields)
    else:
        model_args, data_args, training_args = arguments
    say = progress or logger.info
    trainer = EmotionTrainer(model_args, data_args, training_args, corpus=corpus, progress=say)
    corpus = trainer.load_corpus()
    if data_args.speaker_column not in corpus.column_names:
        raise CorpusError(f"no speaker column {data_args.speaker_column!r} among {corpus.column_names}")
    folds = _parse_folds(data_args.folds)
    validation = int(data_args.validation) if str(data_args.validation).isdigit() else data_args.validation

    start = time.perf_counter()
    encoded = trainer.prepare(corpus)
    timings = {"prepare (decode + encode, cached)": time.perf_counter() - start}
    if len(set(encoded.speakers.tolist())) < 2:
        raise CorpusError("speaker-independent cross-validation needs at least two speakers")
    plan = make_folds(encoded.speakers, data_args.cv or 6, folds=folds, validation=validation)
    planned = len(plan)
    if data_args.only_folds:
        wanted = {int(k) for k in str(data_args.only_folds).replace(";", ",").split(",") if k.strip()}
        if not wanted or not wanted <= {f.index for f in plan}:
            raise ValueError(f"only_folds must name folds among 1..{len(plan)}, not {sorted(wanted)}")
        plan = [f for f in plan if f.index in wanted]
    results, adapted_results = [], []
    several = len(set(encoded.corpora.tolist())) > 1
    for fold in plan:
        t0 = time.perf_counter()
        fit, valid, test = (rows[encoded.is_original[rows]] for rows in fold_rows(encoded.speakers, fold))
        fitted = trainer.fit(encoded, fit, valid)
        references = encoded.labels[test]
        predicted = trainer.logits(fitted, encoded, test).argmax(-1)
        scores = score(predicted, references, encoded.label_names)
        seconds = time.perf_counter() - t0
        info = dict(fitted.phases)
        if several:
            info["per_corpus"] = _per_corpus(predicted, references, encoded.corpora[test], encoded.label_names)
        results.append(FoldResult(fold, scores, seconds, info))
        adapted_logits = trainer.adapted_logits(fitted, encoded, test)
        note = ""
        if adapted_logits is not None:
            adapted = score(adapted_logits.argmax(-1), references, encoded.label_names)
            extra = {}
            if several:
                extra["per_corpus"] = _per_corpus(
                    adapted_logits.argmax(-1), references, encoded.corpora[test], encoded.label_names
                )
            adapted_results.append(FoldResult(fold, adapted, 0.0, extra))
            note = f"  (adapted to each speaker: UA {100 * adapted['ua']:.1f})"
        say(
            f"fold {fold.index}/{planned} (test {','.join(fold.test)}; validation {','.join(fold.validation)}): "
            f"UA {100 * scores['ua']:.1f}  WA {100 * scores['wa']:.1f}  F1 {100 * scores['macro_f1']:.1f}  "
            f"[{seconds:.0f} s]{note}"
        )
    timings["folds"] = sum(r.seconds for r in results)
    timings["total"] = time.perf_counter() - start
    settings = {
        "n_folds": planned,
        "folds_run": [f.index for f in plan],
        "validation": validation,
        "head": model_args.head,
        "finetune_layers": str(model_args.finetune_layers),
        "speaker_adaptive": bool(model_args.speaker_adaptive and model_args.head == "stats"),
        "trim_silence": data_args.preparation(model_args.head)[0],
        "loudness_db": data_args.preparation(model_args.head)[1],
        "window_seconds": getattr(encoded.feature_extractor, "chunk_length", None),
        "device": str(training_args.device),
        "corpora": sorted({str(c) for c in encoded.corpora.tolist() if c}),
    }
    settings["corpus_facts"] = describe_corpora(settings["corpora"], encoded.label_names)
    result = CrossValidationResult(
        strategy=_pipeline_name(model_args),
        model=str(model_args.model_name_or_path),
        label_names=encoded.label_names,
        folds=results,
        settings=settings,
        timings=timings,
        adapted=adapted_results or None,
    )
    if output_dir is not None or arguments is not None:
        result.save(output_dir if output_dir is not None else training_args.output_dir)
    return result


def _per_corpus(
    predicted: np.ndarray, references: np.ndarray, corpora: np.ndarray, label_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """UA, WA and macro-F1 over each corpus' own test clips (over the labels that corpus has)."""
    out = {}
    for corpus in sorted(set(corpora.tolist())):
        rows = corpora == corpus
        scored = score(predicted[rows], references[rows], label_names)
        present = sorted(set(references[rows].tolist()))
        recalls = [scored["per_class_recall"][label_names[i]] for i in present]
        out[corpus] = {"ua": float(np.mean(recalls)), "wa": scored["wa"], "clips": int(rows.sum())}
    return out


def _pipeline_name(model_args: Any) -> str:
    layers = str(model_args.finetune_layers).strip()
    phase = "probe" if layers in ("0", "") else f"probe + top {layers} layer(s)"
    return f"{model_args.head} head, {phase}"


def _parse_folds(text: str | None) -> list[list[str]] | None:
    """``"1,2,3,4;5,6,7,8;..."`` → test speakers per fold."""
    if not text:
        return None
    return [[s.strip() for s in group.split(",") if s.strip()] for group in text.split(";") if group.strip()]


__all__ = [
    "CrossValidationResult",
    "Fold",
    "FoldResult",
    "confusion_table",
    "cross_validate",
    "make_folds",
    "plot_confusion_matrix",
]
