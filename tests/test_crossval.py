"""Speaker-independent cross-validation (the training pipeline per fold), its reports, and the heads' arithmetic."""

import json

import numpy as np
import pytest
import torch
from conftest import RATE

from ser_hf import EmotionRecognizer
from ser_hf.crossval import cross_validate, fold_rows, make_folds
from ser_hf.errors import CorpusError
from ser_hf.heads import (
    FeatureNormalizer,
    WeightedHeadConfig,
    WeightedLayerHead,
    predict_head,
    train_weighted_head,
)
from ser_hf.labels import RAVDESS_EMOTIONS


# -------------------------------------------------------------------------------------------- folds
def test_ravdess_folds_validate_on_training_actors():
    folds = make_folds(range(1, 25), 6)
    assert [f.test for f in folds][:2] == [["1", "2", "3", "4"], ["5", "6", "7", "8"]]
    assert folds[5].test == ["21", "22", "23", "24"] and folds[5].validation == ["1", "2", "3", "4"]
    for fold in folds:
        assert not set(fold.validation) & set(fold.test)
        assert set(fold.validation) <= set(fold.train) and len(fold.train) == 20
    spread = make_folds(range(1, 25), 6, validation=2)
    assert all(len(f.validation) == 2 and set(f.validation) <= set(f.train) for f in spread)
    assert all(f.validation == [] for f in make_folds(range(1, 25), 6, validation=0))


def test_explicit_folds_and_errors():
    folds = make_folds(["a", "b", "c", "d"], folds=[["a", "b"], ["c", "d"]], validation=1)
    assert folds[0].test == ["a", "b"] and folds[0].validation[0] in {"c", "d"}
    with pytest.raises(CorpusError, match="not in the corpus"):
        make_folds(["a", "b"], folds=[["a"], ["z"]])
    with pytest.raises(ValueError, match="leave none"):
        make_folds(["a", "b", "c"], 3, validation=2)
    fit, valid, test = fold_rows(["1", "2", "03", "4", "2"], make_folds(["1", "2", "3", "4"], 2)[0])
    assert list(test) == [0, 1, 4] and list(valid) == [2, 3] and list(fit) == []


def test_cross_validate_needs_speakers(corpus, tmp_path):
    with pytest.raises(CorpusError, match="no speaker column"):
        cross_validate(corpus, "unused", speaker_column="room", output_dir=tmp_path)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("cv-cache"))
    return {"decode_cache_dir": folder, "features_cache_dir": folder}


def test_cross_validate_writes_the_reports(tiny_whisper, corpus, caches, tmp_path):
    result = cross_validate(corpus, tiny_whisper, n_folds=4, output_dir=tmp_path, **caches)
    assert len(result.folds) == 4 and result.folds[0].fold.test == ["1", "2"]
    assert sum(np.asarray(f.scores["confusion_matrix"]).sum() for f in result.folds) == 128
    summary = result.summary()
    assert 0.25 < summary["ua"]["mean"] <= 1.0  # chance is 0.125; pitch separates the synthetic emotions
    assert summary["ua"]["std"] >= 0 and set(summary["per_class_recall"]) == set(RAVDESS_EMOTIONS)
    assert summary["adapted"]["ua"]["mean"] > 0.25  # the default model adapts: scored that way too, apart
    assert all(f.info["phase1"]["l2"] in (0.001, 0.003, 0.01, 0.03, 0.1) for f in result.folds)
    folder = tmp_path / "cv_report"
    report = json.loads((folder / "cv_report.json").read_text())
    assert report["summary"]["ua"]["mean"] == pytest.approx(summary["ua"]["mean"])
    assert len(report["folds"]) == 4 and report["folds"][0]["validation_speakers"] == ["3", "4"]
    assert len(report["adapted_folds"]) == 4 and report["settings"]["speaker_adaptive"]
    markdown = (folder / "cv_report.md").read_text()
    assert "mean ± std" in markdown and "| angry |" in markdown and "Adapted to each test speaker" in markdown
    csv_rows = (folder / "confusion_matrix.csv").read_text().splitlines()
    assert len(csv_rows) == 9 and csv_rows[0].startswith("true\\predicted,neutral")
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_every_fold_runs_the_training_pipeline_phase_2_included(tiny_whisper, corpus, caches):
    result = cross_validate(
        corpus, tiny_whisper, n_folds=4, only_folds="2,3", finetune_layers="1", num_train_epochs=2,
        learning_rate=3e-3, head_learning_rate=3e-3, disable_tqdm=True, **caches,
    )  # fmt: skip
    assert [f.fold.index for f in result.folds] == [2, 3]
    assert result.folds[0].fold.test == ["3", "4"] and result.folds[0].fold.validation == ["5", "6"]
    assert result.settings["n_folds"] == 4 and result.settings["folds_run"] == [2, 3]
    for fold in result.folds:
        assert len(fold.info["phase2"]["validation_ua_by_epoch"]) == 3  # the probe, then two epochs
    assert "top 1 layer(s)" in result.strategy
    with pytest.raises(ValueError, match="only_folds"):
        cross_validate(corpus, tiny_whisper, n_folds=4, only_folds="5", **caches)


def test_cross_validation_of_two_corpora_draws_test_speakers_from_both(tiny_whisper, tmp_path, caches):
    import soundfile as sf
    from conftest import synth_clip, write_corpus

    from ser_hf import load_corpora

    first = write_corpus(tmp_path / "a", actors=(1, 2, 3, 4), repetitions=(1,), emotions=(1, 3, 4, 5))
    second = tmp_path / "b"
    for emotion, name in ((1, "neutral"), (3, "happy"), (4, "sad"), (5, "angry")):
        for speaker in ("s1", "s2"):
            (second / name / speaker).mkdir(parents=True, exist_ok=True)
            sf.write(second / name / speaker / "x.wav", synth_clip(emotion, 3, 2), RATE)
    corpus = load_corpora([str(first), str(second)], ["ravdess", "folders"], speaker_pattern=r"^[^/]+/([^/]+)/")
    result = cross_validate(corpus, tiny_whisper, n_folds=2, validation=0, **caches)
    assert [sorted(f.fold.test) for f in result.folds] == [
        ["b:s1", "ravdess:1", "ravdess:2"], ["b:s2", "ravdess:3", "ravdess:4"]
    ]  # fmt: skip
    assert result.settings["corpora"] == ["b", "ravdess"]


# ------------------------------------------------------------------------------------ the heads' arithmetic
def test_head_equals_the_standard_computation():
    torch.manual_seed(0)
    head = WeightedLayerHead(3, 8, 4, 5)
    frames = torch.randn(2, 3, 7, 8)  # (clips, layers, positions, hidden)
    pooled = predict_head(head, frames.mean(dim=2).numpy())
    weights = torch.softmax(head.layer_weights, dim=0)
    mixed = (frames * weights.view(1, -1, 1, 1)).sum(dim=1)
    standard = head.classifier(head.projector(mixed).mean(dim=1))  # what *ForAudioClassification does
    np.testing.assert_allclose(pooled, standard.detach().numpy(), atol=1e-5)


def test_the_weighted_head_learns_which_layer_holds_the_answer():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 3, 16)).astype(np.float32)
    x[np.arange(400), 1, y] += 3.0  # layer 1 holds the answer
    head = train_weighted_head(x[:300], y[:300], 4, WeightedHeadConfig(epochs=15, proj_size=8, learning_rate=1e-2,
                                                                      batch_size=32))  # fmt: skip
    assert (predict_head(head, x[300:]).argmax(-1) == y[300:]).mean() > 0.85
    assert int(torch.softmax(head.layer_weights, 0).argmax()) == 1


def test_normalizer_folds_exactly_into_the_standard_head():
    torch.manual_seed(0)
    x = torch.randn(40, 4, 6) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(1, 4, 1) + torch.randn(4, 6)
    for mode in ("layers", "shared", "none"):
        normalizer = FeatureNormalizer.fit(x, mode)
        head = WeightedLayerHead(4, 6, 5, 3)
        with torch.no_grad():
            head.layer_weights.copy_(torch.randn(4))
        np.testing.assert_allclose(predict_head(normalizer.fold(head), x), predict_head(head, normalizer(x)), atol=1e-5)


def test_cli_evaluate_cv_and_train(tiny_whisper, corpus_dir, tmp_path):
    import subprocess
    import sys

    from test_cli_and_example import ROOT, _env

    out = tmp_path / "cv"
    command = [sys.executable, "-m", "ser_hf", "evaluate", "--cv", "4", "--data-dir", str(corpus_dir),
               "--model", tiny_whisper, "--output_dir", str(out), "--features_cache_dir", str(tmp_path / "cache"),
               "--use_cpu", "true"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| **mean ± std** |" in result.stdout and "fold 4/4" in result.stderr
    report = json.loads((out / "cv_report" / "cv_report.json").read_text())
    assert report["summary"]["strategy"] == "stats head, probe" and len(report["folds"]) == 4
    assert report["settings"]["device"] == "cpu"

    model = tmp_path / "model"
    command = [sys.executable, "-m", "ser_hf", "train", "--model_name_or_path", tiny_whisper,
               "--data_dir", str(corpus_dir), "--output_dir", str(model), "--test_actors", "8", "--eval_actors", "7",
               "--features_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout[result.stdout.rindex("{") :])
    assert 0 <= printed["test_ua"] <= 1 and "phase 1, the probe" in result.stderr
    saved = json.loads((model / "test_report.json").read_text())
    assert saved["phases"]["phase1"]["head"] == "stats" and saved["test_speakers"] == ["8"]
    card = (model / "README.md").read_text()  # custom code, the test scores, what was chosen on whom
    assert "- custom_code" in card and "trust_remote_code=True" in card and "kept frozen" in card
    assert "tested once on actor 8" in card
    assert "hyper-parameters chosen on actor 7, then the final model fitted with them too" in card
    assert EmotionRecognizer.from_pretrained(model).predict(np.zeros(RATE // 2, np.float32) + 0.01).label
