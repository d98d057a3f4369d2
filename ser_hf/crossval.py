"""Speaker-independent cross-validation: k folds of whole speakers, per-fold and mean ± std scores, reports.

Every fold tests on speakers the model never heard. Each fold's model selection (best epoch,
hyper-parameters) uses validation speakers drawn from that fold's *training* speakers, never the
test fold. RAVDESS gets the usual 6 folds of 4 actors (fold k tests actors 4k-3 … 4k).

    result = cross_validate(corpus, "openai/whisper-tiny.en", strategy="frozen", n_folds=6)
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
from .errors import CorpusError
from .evaluation import score
from .splits import speaker_folds, speaker_key

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
    """Scores of one fold (`ser_hf.evaluation.score` output) and what the strategy chose on validation."""

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

    ``folds`` gives the test speakers of each fold explicitly; otherwise `ser_hf.splits.speaker_folds`
    cuts the sorted speakers into ``n_folds`` consecutive groups. ``validation="next"`` validates on
    the next fold's speakers (cyclically; RAVDESS: 4 actors, 2 female and 2 male); an integer ``n``
    takes ``n`` training speakers spread evenly over the sorted list; ``0`` means no validation.
    """
    present = sorted({speaker_key(s) for s in speakers}, key=_speaker_order)
    groups = [[speaker_key(s) for s in group] for group in folds] if folds else speaker_folds(present, n_folds)
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


def _speaker_order(key: str) -> tuple[bool, int, str]:
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


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

    strategy: str
    model: str
    label_names: list[str]
    folds: list[FoldResult]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

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
            *(
                [f"**Speaker-adaptive** (not the per-clip protocol): {self.settings['speaker_adaptive']}.", ""]
                if self.settings.get("speaker_adaptive")
                else []
            ),
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
def strategies() -> dict[str, Callable[..., Any]]:
    """Strategy name → class taking ``(model_name_or_path, **options)``, with ``prepare`` and ``run_fold``."""
    from .frozen import FrozenStrategy
    from .recipe import RecipeStrategy

    return {"frozen": FrozenStrategy, "finetune": RecipeStrategy}


def cross_validate(
    corpus: Dataset,
    model_name_or_path: str,
    *,
    strategy: str = "frozen",
    n_folds: int = 6,
    folds: Sequence[Sequence[object]] | None = None,
    validation: str | int = "next",
    speaker_column: str = "speaker",
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    only_folds: Sequence[int] | None = None,
    **options: Any,
) -> CrossValidationResult:
    """Cross-validate a strategy over folds of whole speakers; returns (and optionally saves) the report.

    ``strategy`` is ``"frozen"`` (cached encoder features, light head: `ser_hf.frozen`) or ``"finetune"``
    (ser-hf's fine-tuning recipe: `ser_hf.recipe`); ``options`` go to the strategy. Each fold's model
    selection sees only its validation speakers (drawn from its training speakers; see `make_folds`).
    ``only_folds`` (1-based fold numbers) runs a subset of the folds, e.g. for a shorter check; the folds
    and their validation speakers stay those of the full plan.
    """
    available = strategies()
    if strategy not in available:
        raise ValueError(f"strategy must be one of {sorted(available)}, not {strategy!r}")
    if speaker_column not in corpus.column_names:
        raise CorpusError(f"no speaker column {speaker_column!r} among {corpus.column_names}")
    speakers = corpus[speaker_column]
    if len({speaker_key(s) for s in speakers}) < 2:
        raise CorpusError("speaker-independent cross-validation needs at least two speakers")
    plan = make_folds(speakers, n_folds, folds=folds, validation=validation)
    planned = len(plan)
    if only_folds is not None:
        wanted = {int(k) for k in only_folds}
        if not wanted or not wanted <= {f.index for f in plan}:
            raise ValueError(f"only_folds must name folds among 1..{len(plan)}, not {sorted(wanted)}")
        plan = [f for f in plan if f.index in wanted]
    say = progress or logger.info
    runner = available[strategy](model_name_or_path, **options)
    label_names = list(corpus.features["label"].names)

    start = time.perf_counter()
    prepared = runner.prepare(corpus, speaker_column=speaker_column)
    timings = {"prepare (decode + cache features)": time.perf_counter() - start}
    rows_speakers = prepared.dataset[speaker_column]
    results = []
    for fold in plan:
        t0 = time.perf_counter()
        fit, valid, test = fold_rows(rows_speakers, fold)
        outcome = runner.run_fold(prepared, fit, valid, test, fold=fold)
        references = np.asarray(prepared.dataset.select(test)["label"])
        scores = score(np.asarray(outcome.logits).argmax(-1), references, label_names)
        results.append(FoldResult(fold, scores, time.perf_counter() - t0, outcome.info))
        say(
            f"fold {fold.index}/{planned} (test {','.join(fold.test)}; validation {','.join(fold.validation)}): "
            f"UA {100 * scores['ua']:.1f}  WA {100 * scores['wa']:.1f}  F1 {100 * scores['macro_f1']:.1f}  "
            f"[{time.perf_counter() - t0:.0f} s]"
        )
    timings["folds"] = sum(r.seconds for r in results)
    timings["total"] = time.perf_counter() - start
    result = CrossValidationResult(
        strategy=strategy,
        model=str(model_name_or_path),
        label_names=label_names,
        folds=results,
        settings={
            "n_folds": planned,
            "folds_run": [f.index for f in plan],
            "validation": validation,
            **runner.settings(),
        },
        timings=timings,
    )
    if output_dir is not None:
        result.save(output_dir)
    return result


@dataclass
class TrainedModel:
    """A model trained by a strategy on chosen speakers, saved as a standard transformers checkpoint."""

    recognizer: Any
    output_dir: Path
    test_scores: dict[str, Any] | None
    info: dict[str, Any]


def train_and_save(
    corpus: Dataset,
    model_name_or_path: str,
    output_dir: str | Path,
    *,
    strategy: str = "frozen",
    test_speakers: Sequence[object] = (),
    validation_speakers: Sequence[object] = (),
    speaker_column: str = "speaker",
    **options: Any,
) -> TrainedModel:
    """Train one model with a strategy (``"frozen"`` or ``"finetune"``) and save it as a standard checkpoint.

    Trains on every speaker except the test and validation ones, picks the epoch on the validation
    speakers, scores the test speakers (if any) and saves the model (``config.json``, weights, feature
    extractor, ``test_report.json``) so `EmotionRecognizer` and `pipeline` load it unchanged.
    """
    from .model_card import ModelCardFacts, build_model_card
    from .recognizer import TRIM_SILENCE_CONFIG_KEY, EmotionRecognizer

    available = strategies()
    if strategy not in available:
        raise ValueError(f"strategy must be one of {sorted(available)}, not {strategy!r}")
    runner = available[strategy](model_name_or_path, **options)
    prepared = runner.prepare(corpus, speaker_column=speaker_column)
    keys = [speaker_key(s) for s in prepared.dataset[speaker_column]]
    test = [speaker_key(s) for s in test_speakers]
    validation = [speaker_key(s) for s in validation_speakers]
    missing = sorted(set(test + validation) - set(keys))
    if missing:
        raise CorpusError(f"speakers {missing} are not in the corpus")
    if set(test) & set(validation):
        raise ValueError(f"speakers {sorted(set(test) & set(validation))} are in both the test and validation sets")
    fold = Fold(1, test, validation, [k for k in dict.fromkeys(keys) if k not in test])
    fit, valid, test_rows = fold_rows(keys, fold)
    if len(fit) == 0:
        raise CorpusError("no speakers left for training")
    outcome = runner.run_fold(prepared, fit, valid, test_rows, fold=fold)
    scores = None
    if len(test_rows):
        references = np.asarray(prepared.dataset.select(test_rows)["label"])
        scores = score(np.asarray(outcome.logits).argmax(-1), references, prepared.label_names)
    model = runner.export(prepared, outcome.model)
    # predict trims silence by default exactly when the model was trained on trimmed clips
    setattr(model.config, TRIM_SILENCE_CONFIG_KEY, bool(getattr(runner, "trim_silence", False)))
    recognizer = EmotionRecognizer(model, prepared.feature_extractor, device="cpu")
    output_dir = Path(output_dir)
    recognizer.model_card = build_model_card(
        ModelCardFacts.for_strategy(
            model, prepared.feature_extractor, base_model=str(model_name_or_path), corpus=corpus,
            speakers={"train": [k for k in dict.fromkeys(np.asarray(keys)[fit])], "validation": validation,
                      "test": test},
            clips={"train": len(fit), "validation": len(valid), "test": len(test_rows)},
            strategy=strategy, settings=runner.settings(), test_report=scores, model_id=str(output_dir),
            skipped=len(prepared.skipped), refitted=bool(len(valid)) and runner.refits_on_validation,
        )
    )  # fmt: skip
    recognizer.save_pretrained(output_dir)
    report = {
        "strategy": strategy,
        "settings": runner.settings(),
        "info": outcome.info,
        "test": scores,
        "test_speakers": test,
        "validation_speakers": validation,
    }
    (output_dir / "test_report.json").write_text(json.dumps(report, indent=2))
    return TrainedModel(recognizer, output_dir, scores, outcome.info)


__all__ = [
    "CrossValidationResult",
    "Fold",
    "FoldResult",
    "TrainedModel",
    "confusion_table",
    "cross_validate",
    "make_folds",
    "plot_confusion_matrix",
    "strategies",
    "train_and_save",
]
