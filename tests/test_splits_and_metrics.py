"""Speaker-independent splits, folds, and the shipped evaluate module."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from ser_hf.errors import CorpusError
from ser_hf.evaluation import SER_METRICS_PATH, make_compute_metrics, score
from ser_hf.splits import SpeakerLeakWarning, parse_speakers, random_split, speaker_folds, split_by_speaker


def test_speaker_split_holds_whole_speakers_out(corpus):
    splits = split_by_speaker(corpus, test_speakers="7,8", eval_speakers=[6])
    assert set(splits["test"]["actor"]) == {7, 8}
    assert set(splits["validation"]["actor"]) == {6}
    assert set(splits["train"]["actor"]) == {1, 2, 3, 4, 5}
    assert sum(len(s) for s in splits.values()) == len(corpus)
    assert "validation" not in split_by_speaker(corpus, test_speakers="08")


def test_speaker_split_errors(corpus):
    with pytest.raises(CorpusError, match="not in the corpus"):
        split_by_speaker(corpus, test_speakers="21,22")
    with pytest.raises(ValueError, match="both"):
        split_by_speaker(corpus, test_speakers="7", eval_speakers="7")
    with pytest.raises(ValueError, match="empty"):
        split_by_speaker(corpus, test_speakers="")


def test_parse_speakers_normalises():
    assert parse_speakers("21, 22,23") == ["21", "22", "23"]
    assert parse_speakers([1, "02", "spk_a"]) == ["1", "2", "spk_a"]


def test_ravdess_six_folds():
    folds = speaker_folds(range(1, 25), 6)
    assert folds[0] == ["1", "2", "3", "4"] and folds[5] == ["21", "22", "23", "24"]


def test_random_split_warns_about_leakage(corpus):
    with pytest.warns(SpeakerLeakWarning, match="inflate"):
        splits = random_split(corpus, test_size=0.25, eval_size=0.125)
    assert set(splits["train"]["actor"]) & set(splits["test"]["actor"])  # the leak it warns about


def test_metric_module_matches_sklearn():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 8, 300)
    predictions = np.where(rng.random(300) < 0.6, references, rng.integers(0, 8, 300))
    result = score(predictions, references, [f"c{i}" for i in range(8)])
    assert result["ua"] == pytest.approx(balanced_accuracy_score(references, predictions))
    assert result["wa"] == pytest.approx(np.mean(predictions == references))
    assert result["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert np.array(result["confusion_matrix"]).sum() == 300


def test_ua_differs_from_wa_under_imbalance():
    references = [0] * 90 + [1] * 10
    predictions = [0] * 100
    result = score(predictions, references, ["a", "b", "c"])
    assert result["wa"] == pytest.approx(0.9) and result["ua"] == pytest.approx(0.5)
    assert result["per_class_recall"] == {"a": 1.0, "b": 0.0, "c": None}


def test_metric_loads_by_path_offline():
    import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = evaluate.load(str(SER_METRICS_PATH))
    out = metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    assert out["unweighted_average_recall"] == pytest.approx(5 / 6)


def test_compute_metrics_for_trainer():
    from transformers import EvalPrediction

    logits = np.eye(3)[[0, 1, 2, 2]]
    metrics = make_compute_metrics(["x", "y", "z"])(
        EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 1]))
    )
    assert metrics["ua"] == pytest.approx((1 + 0.5 + 1) / 3) and metrics["recall_y"] == pytest.approx(0.5)
