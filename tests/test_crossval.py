"""Speaker-independent cross-validation, the frozen-encoder fast path and the fine-tuning recipe (tiny models)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import RATE
from transformers import pipeline

from ser_hf import EmotionRecognizer
from ser_hf.crossval import cross_validate, fold_rows, make_folds
from ser_hf.errors import CorpusError
from ser_hf.frozen import (
    FrozenStrategy,
    HeadConfig,
    StatsHeadConfig,
    WeightedLayerHead,
    layer_features,
    predict_head,
    select_stats_head,
    train_head,
)
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.recipe import RecipeConfig, RecipeStrategy, clip_positions, fine_tune_top


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


def test_cross_validate_needs_speakers(corpus):
    with pytest.raises(CorpusError, match="no speaker column"):
        cross_validate(corpus, "unused", speaker_column="room")
    with pytest.raises(ValueError, match="strategy must be one of"):
        cross_validate(corpus, "unused", strategy="magic")


# ------------------------------------------------------------------------------------------- frozen
def test_head_equals_the_standard_computation():
    torch.manual_seed(0)
    head = WeightedLayerHead(3, 8, 4, 5)
    frames = torch.randn(2, 3, 7, 8)  # (clips, layers, positions, hidden)
    pooled = predict_head(head, frames.mean(dim=2).numpy())
    weights = torch.softmax(head.layer_weights, dim=0)
    mixed = (frames * weights.view(1, -1, 1, 1)).sum(dim=1)
    standard = head.classifier(head.projector(mixed).mean(dim=1))  # what *ForAudioClassification does
    np.testing.assert_allclose(pooled, standard.detach().numpy(), atol=1e-5)


def test_train_head_learns_and_picks_an_epoch():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.normal(size=(400, 3, 16)).astype(np.float32)
    x[np.arange(400), 1, y] += 3.0  # layer 1 holds the answer
    fit = train_head(
        x[:300],
        y[:300],
        4,
        HeadConfig(epochs=15, proj_size=8, learning_rate=1e-2, batch_size=32),
        valid_x=x[300:],
        valid_y=y[300:],
    )
    assert 1 <= fit.epoch <= 15 and len(fit.history) == 15
    assert (predict_head(fit.head, x[300:]).argmax(-1) == y[300:]).mean() > 0.85
    assert int(torch.softmax(fit.head.layer_weights, 0).argmax()) == 1


@pytest.fixture(scope="module")
def cache_dirs(tmp_path_factory):
    return {
        "cache_dir": str(tmp_path_factory.mktemp("layers")),
        "decode_cache_dir": str(tmp_path_factory.mktemp("dec")),
    }


def _check_export_reproduces_the_head(strategy, prepared, tmp_path):
    fold = make_folds(prepared.dataset["speaker"], 4)[3]  # the last actors tested, the first validate
    fit, valid, test = fold_rows(prepared.dataset["speaker"], fold)
    outcome = strategy.run_fold(prepared, fit, valid, test)
    folder = tmp_path / "exported"
    EmotionRecognizer(strategy.export(prepared, outcome.model), prepared.feature_extractor).save_pretrained(folder)
    recognizer = EmotionRecognizer.from_pretrained(folder)
    assert recognizer.labels == list(RAVDESS_EMOTIONS)
    rows = prepared.dataset.select(test[:12])
    waveforms = [np.asarray(w, dtype=np.float32) for w in rows.with_format("numpy")["waveform"]]
    expected = torch.softmax(torch.as_tensor(outcome.logits[:12]), dim=-1).numpy()
    predicted = np.array(
        [[p.scores[label] for label in recognizer.labels] for p in recognizer.predict_waveforms(waveforms)]
    )
    np.testing.assert_allclose(predicted, expected, atol=2e-4)
    theirs = pipeline("audio-classification", model=str(folder), top_k=None)(
        {"raw": waveforms[0], "sampling_rate": RATE}
    )
    for item in theirs:
        assert item["score"] == pytest.approx(expected[0][recognizer.labels.index(item["label"])], abs=2e-4)
    return recognizer


@pytest.mark.parametrize("head_type", ["stats", "weighted"])
@pytest.mark.parametrize("backbone", ["tiny_whisper", "tiny_wav2vec2", "tiny_hubert"])
def test_frozen_export_predicts_from_raw_audio_what_the_head_predicted(
    backbone, head_type, request, corpus, cache_dirs, tmp_path
):
    strategy = FrozenStrategy(
        request.getfixturevalue(backbone), head_type=head_type, head={"proj_size": 8}, epoch_grid=(3, 6), **cache_dirs
    )
    if backbone != "tiny_whisper":  # wav2vec2 is encoded clip by clip (no attention mask): keep these short
        corpus = corpus.filter(lambda actor: actor <= 4, input_columns="actor")
    prepared = strategy.prepare(corpus)
    # 2 layers + embeddings, hidden 32: the mean (weighted head), or the mean and std (statistics head)
    assert prepared.features.shape == (len(corpus), 3, 64 if head_type == "stats" else 32)
    recognizer = _check_export_reproduces_the_head(strategy, prepared, tmp_path)
    standard = ("ForAudioClassification", "ForSequenceClassification")
    expected = ("LayerStatsForAudioClassification",) if head_type == "stats" else standard
    assert type(recognizer.model).__name__.endswith(expected)
    if backbone == "tiny_whisper":  # the window was fitted to the (1 s) clips and saved with the model
        encoder = recognizer.model.encoder
        assert recognizer.window_seconds == 1.0 and encoder.config.max_source_positions == 50


def test_features_are_cached_once_per_model_and_audio(tiny_whisper, corpus, cache_dirs, monkeypatch):
    strategy = FrozenStrategy(tiny_whisper, **cache_dirs)
    first = strategy.prepare(corpus)
    import ser_hf.frozen as frozen_module

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(frozen_module, "_pool_batch", fail)
    again = FrozenStrategy(tiny_whisper, head={"epochs": 3}, **cache_dirs).prepare(corpus)
    np.testing.assert_array_equal(first.features, again.features)
    with pytest.raises(AssertionError, match="ran again"):  # another window: other hidden states, new cache
        FrozenStrategy(tiny_whisper, window_seconds=2, **cache_dirs).prepare(corpus)


def test_speech_pooling_averages_fewer_positions(tiny_whisper, corpus, cache_dirs):
    prepared = FrozenStrategy(tiny_whisper, window_seconds=3, **cache_dirs).prepare(corpus)
    window, speech = (np.asarray(prepared.dataset[c]) for c in ("pooled_window", "pooled_speech"))
    assert window.shape == speech.shape and not np.allclose(window, speech)
    from ser_hf.features import AudioCollator

    row = prepared.dataset.with_format("numpy")[0]
    model = prepared.model
    inputs = AudioCollator(prepared.feature_extractor, max_samples=3 * RATE).encode([row["waveform"]])
    with torch.inference_mode():
        states = model.encoder(**inputs, output_hidden_states=True).hidden_states
    frames = int(np.ceil(len(row["waveform"]) / RATE * 50))
    np.testing.assert_allclose(row["pooled_speech"][1], states[1][0, :frames].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(row["pooled_window"][1], states[1][0].mean(0).numpy(), atol=1e-5)


def test_cross_validate_frozen_writes_the_reports(tiny_whisper, corpus, cache_dirs, tmp_path):
    result = cross_validate(
        corpus, tiny_whisper, strategy="frozen", n_folds=4, output_dir=tmp_path, head={"epochs": 20}, **cache_dirs
    )
    assert len(result.folds) == 4 and result.folds[0].fold.test == ["1", "2"]
    assert sum(np.asarray(f.scores["confusion_matrix"]).sum() for f in result.folds) == 128
    summary = result.summary()
    assert 0.25 < summary["ua"]["mean"] <= 1.0  # chance is 0.125; pitch separates the synthetic emotions
    assert summary["ua"]["std"] >= 0 and set(summary["per_class_recall"]) == set(RAVDESS_EMOTIONS)
    folder = tmp_path / "cv_report"
    report = json.loads((folder / "cv_report.json").read_text())
    assert report["summary"]["ua"]["mean"] == pytest.approx(summary["ua"]["mean"])
    assert len(report["folds"]) == 4 and report["folds"][0]["validation_speakers"] == ["3", "4"]
    markdown = (folder / "cv_report.md").read_text()
    assert "mean ± std" in markdown and "| angry |" in markdown
    csv_rows = (folder / "confusion_matrix.csv").read_text().splitlines()
    assert len(csv_rows) == 9 and csv_rows[0].startswith("true\\predicted,neutral")
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_cross_validate_can_run_a_subset_of_the_planned_folds(tiny_whisper, corpus, cache_dirs):
    result = cross_validate(
        corpus, tiny_whisper, strategy="frozen", n_folds=4, only_folds=[2], head={"epochs": 5}, **cache_dirs
    )
    assert [f.fold.index for f in result.folds] == [2]
    assert result.folds[0].fold.test == ["3", "4"] and result.folds[0].fold.validation == ["5", "6"]
    assert result.settings["n_folds"] == 4 and result.settings["folds_run"] == [2]
    with pytest.raises(ValueError, match="only_folds"):
        cross_validate(corpus, tiny_whisper, strategy="frozen", n_folds=4, only_folds=[5], **cache_dirs)


def test_layer_features_refuses_keep_layer_for_variable_length_models(tiny_wav2vec2, corpus, cache_dirs):
    strategy = FrozenStrategy(tiny_wav2vec2, **cache_dirs)
    prepared = strategy.prepare(corpus.select(range(8)))
    with pytest.raises(ValueError, match="fixed-window"):
        layer_features(prepared.dataset, prepared.model, prepared.feature_extractor, audio_key="x", keep_layer=1)


# ------------------------------------------------------------------------------------------- recipe
def test_recipe_export_reproduces_the_fine_tuned_model(tiny_whisper, corpus, cache_dirs, tmp_path):
    config = RecipeConfig(trainable_layers=1, epochs=2, head_learning_rate=3e-3, encoder_learning_rate=1e-3)
    strategy = RecipeStrategy(tiny_whisper, recipe=config, **cache_dirs)
    prepared = strategy.prepare(corpus)
    assert prepared.dataset.features["hidden_state"].shape == (50, 32)  # 1 s window, d_model 32
    assert prepared.features.shape == (len(corpus), 3, 64)  # mean and std of 3 hidden states
    _check_export_reproduces_the_head(strategy, prepared, tmp_path)
    # Without validation speakers the last epoch is kept: the top layer moved, the frozen one did not.
    lengths = clip_positions(prepared)
    assert lengths.max() <= 50 and lengths.min() >= 1 and len(set(lengths.tolist())) > 1
    fitted = fine_tune_top(prepared.model, prepared.dataset.with_format("numpy", columns=["hidden_state"]),
                           prepared.features, lengths, prepared.labels, np.arange(64), np.array([], dtype=int), 8,
                           config)  # fmt: skip
    exported = strategy.export(prepared, fitted.top)
    assert fitted.epoch == 2 and fitted.history == []
    assert not torch.allclose(exported.encoder.layers[1].fc1.weight, prepared.model.encoder.layers[1].fc1.weight)
    assert torch.equal(exported.encoder.layers[0].fc1.weight, prepared.model.encoder.layers[0].fc1.weight)


def test_recipe_refits_on_the_validation_speakers_too(tiny_whisper, corpus, cache_dirs):
    probe = StatsHeadConfig(l2_grid=(1e-1, 1e-2), l2=1e-2)
    config = RecipeConfig(
        trainable_layers=1, epochs=2, head_learning_rate=3e-3, encoder_learning_rate=1e-3, probe=probe
    )
    prepared = RecipeStrategy(tiny_whisper, recipe=config, **cache_dirs).prepare(corpus)
    hidden, lengths = prepared.dataset.with_format("numpy", columns=["hidden_state"]), clip_positions(prepared)
    fit, valid = np.arange(48), np.arange(48, 64)
    args = (prepared.model, hidden, prepared.features, lengths, prepared.labels, fit, valid, 8)
    frozen_head = select_stats_head(prepared.features, prepared.labels, fit, valid, 8, probe).head  # refitted
    original = prepared.model.encoder.layers[1].fc1.weight
    # Nothing learns (learning rates 0): the probe is kept, and it is the frozen path's head exactly.
    kept = fine_tune_top(*args, replace(config, head_learning_rate=0.0, encoder_learning_rate=0.0))
    assert kept.epoch == 0 and len(kept.history) == 3
    torch.testing.assert_close(kept.top.head.classifier.weight, frozen_head.classifier.weight, rtol=0, atol=0)
    assert torch.equal(kept.top.layers[0].fc1.weight, original)
    # Refit or not, the same choices; the refit model differs: it was fitted with the validation rows too.
    refitted = fine_tune_top(*args, config)
    held_out = fine_tune_top(*args, replace(config, refit=False))
    assert (refitted.epoch, refitted.history, refitted.probe_choice) == (
        held_out.epoch, held_out.history, held_out.probe_choice
    )  # fmt: skip
    assert not torch.equal(refitted.top.head.classifier.weight, held_out.top.head.classifier.weight)
    moved = not torch.equal(refitted.top.layers[0].fc1.weight, original)
    assert moved == (refitted.epoch > 0), refitted.epoch


def test_normalizer_folds_exactly_into_the_standard_head():
    from ser_hf.frozen import FeatureNormalizer

    torch.manual_seed(0)
    x = torch.randn(40, 4, 6) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(1, 4, 1) + torch.randn(4, 6)
    for mode in ("layers", "shared", "none"):
        normalizer = FeatureNormalizer.fit(x, mode)
        head = WeightedLayerHead(4, 6, 5, 3)
        with torch.no_grad():
            head.layer_weights.copy_(torch.randn(4))
        np.testing.assert_allclose(predict_head(normalizer.fold(head), x), predict_head(head, normalizer(x)), atol=1e-5)


def test_cli_evaluate_cv_and_train_with_the_recipe(tiny_whisper, corpus_dir, tmp_path):
    import subprocess
    import sys

    from test_cli_and_example import ROOT, _env

    out = tmp_path / "cv"
    command = [sys.executable, "-m", "ser_hf", "evaluate", "--cv", "4", "--data_dir", str(corpus_dir),
               "--model", tiny_whisper, "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
               "--device", "cpu:0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| **mean ± std** |" in result.stdout and "fold 4/4" in result.stderr
    report = json.loads((out / "cv_report" / "cv_report.json").read_text())
    assert report["summary"]["strategy"] == "frozen" and len(report["folds"]) == 4
    assert report["settings"]["device"] == "cpu:0"  # the flag reached the strategy (the default reads "cpu")

    model = tmp_path / "model"
    command = [sys.executable, "-m", "ser_hf", "train", "--recipe", "ser-hf", "--model_name_or_path", tiny_whisper,
               "--data_dir", str(corpus_dir), "--output_dir", str(model), "--test_actors", "8", "--eval_actors", "7",
               "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout[result.stdout.rindex("{") :])
    assert 0 <= printed["test_ua"] <= 1
    saved = json.loads((model / "test_report.json").read_text())
    assert saved["strategy"] == "finetune" and saved["test_speakers"] == ["8"]
    card = (model / "README.md").read_text()  # the card from the strategy's run: custom code, the test scores
    assert "- custom_code" in card and "trust_remote_code=True" in card and "strategy: finetune" in card
    assert (
        "tested once on actor 8" in card
        and "hyper-parameters chosen on actor 7, then the final model fitted with them too" in card
    )
    assert EmotionRecognizer.from_pretrained(model).predict(np.zeros(RATE // 2, np.float32) + 0.01).label


def test_cli_head_flag_is_the_frozen_paths(corpus_dir, capsys):
    from ser_hf.cli import main

    argv = ["evaluate", "--cv", "4", "--data_dir", str(corpus_dir), "--model", "unused", "--recipe", "ser-hf"]
    assert main([*argv, "--head", "weighted"]) == 2
    assert "--head weighted is for --strategy frozen" in capsys.readouterr().err
