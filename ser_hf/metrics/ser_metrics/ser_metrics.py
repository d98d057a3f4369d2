"""Speech emotion recognition metrics as an `evaluate` module: UA, WA, macro-F1, per-class recall."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

_DESCRIPTION = """
The figures speech emotion recognition papers report, from integer class predictions:
- `unweighted_average_recall` (UA, balanced accuracy): the mean of the per-class recalls over the
  classes present in the references; the field's main figure, robust to class imbalance.
- `accuracy` (WA, weighted accuracy): the share of correct predictions.
- `macro_f1`: the unweighted mean of the per-class F1 scores over the classes present.
- `per_class_recall`: recall of each class id 0..num_classes-1 (None for a class absent from the references).
- `confusion_matrix`: rows are references, columns predictions, both over 0..num_classes-1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    num_classes (`int`, optional): number of classes; defaults to 1 + the largest id seen.
Returns:
    unweighted_average_recall, accuracy, macro_f1 (floats in [0, 1]); per_class_recall and
    confusion_matrix (lists).
Examples:
    >>> metric = evaluate.load("path/to/ser_metrics")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])["unweighted_average_recall"]
    0.8333333333333334
"""

_CITATION = """
@article{schuller2011recognising,
  title={Recognising realistic emotions and affect in speech:
         State of the art and lessons learnt from the first challenge},
  author={Schuller, Bj{\"o}rn and Batliner, Anton and Steidl, Stefan and Seppi, Dino},
  journal={Speech Communication}, volume={53}, number={9-10}, pages={1062--1087}, year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SerMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("no predictions to score")
        n = int(num_classes) if num_classes else int(max(predictions.max(), references.max())) + 1
        matrix = confusion_matrix(references, predictions, labels=list(range(n)))
        support = matrix.sum(axis=1)
        present = support > 0
        recall = np.divide(np.diag(matrix), support, out=np.zeros(n), where=present)
        present_ids = [i for i in range(n) if present[i]]
        return {
            "unweighted_average_recall": float(recall[present].mean()),
            "accuracy": float(np.trace(matrix) / matrix.sum()),
            "macro_f1": float(f1_score(references, predictions, labels=present_ids, average="macro", zero_division=0)),
            "per_class_recall": [float(r) if p else None for r, p in zip(recall, present)],
            "confusion_matrix": matrix.tolist(),
        }
