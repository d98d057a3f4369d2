"""Scoring: the shipped `evaluate` module, and the Trainer's ``compute_metrics``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

#: The local `evaluate` module (loaded by path: no Hub access at training time).
SER_METRICS_PATH = Path(__file__).parent / "metrics" / "ser_metrics"


@lru_cache(maxsize=1)
def load_ser_metric() -> evaluate.EvaluationModule:
    """The ``ser_metrics`` evaluate module shipped with ser-hf."""
    return evaluate.load(str(SER_METRICS_PATH))


def score(
    predictions: Sequence[int] | np.ndarray,
    references: Sequence[int] | np.ndarray,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """UA, WA, macro-F1, per-class recall (by label name) and the confusion matrix."""
    result = load_ser_metric().compute(
        predictions=np.asarray(predictions).tolist(),
        references=np.asarray(references).tolist(),
        num_classes=len(label_names),
    )
    return {
        "ua": result["unweighted_average_recall"],
        "wa": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "per_class_recall": dict(zip(label_names, result["per_class_recall"])),
        "confusion_matrix": result["confusion_matrix"],
    }


def flat_metrics(scored: dict[str, Any]) -> dict[str, float]:
    """The scalar figures of `score`, with per-class recall as ``recall_<label>`` keys (for logging)."""
    flat = {k: float(scored[k]) for k in ("ua", "wa", "macro_f1")}
    flat.update(
        {f"recall_{label}": float(value) for label, value in scored["per_class_recall"].items() if value is not None}
    )
    return flat


def make_compute_metrics(label_names: Sequence[str]) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for `transformers.Trainer` (logits → UA, WA, macro-F1, per-class recall)."""

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        return flat_metrics(score(np.argmax(logits, axis=-1), eval_prediction.label_ids, label_names))

    return compute_metrics


def unweighted_average_recall(
    predictions: Sequence[int] | np.ndarray, references: Sequence[int] | np.ndarray, num_classes: int
) -> float:
    """UA in plain numpy (mean recall over the classes present), for tight loops such as epoch selection."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    recalls = [np.mean(predictions[references == c] == c) for c in range(num_classes) if np.any(references == c)]
    return float(np.mean(recalls)) if recalls else 0.0
