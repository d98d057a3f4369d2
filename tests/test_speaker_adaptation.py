"""Speaker adaptation: statistics centred on each speaker's mean (ser_hf.frozen.FrozenStrategy(speaker_adaptive=True)),
the saved model's adapt_to_speaker / reset_speaker, and how reports, cards and the command line say so."""

import json

import numpy as np
import pytest
import torch
from conftest import RATE

from ser_hf import EmotionRecognizer
from ser_hf.crossval import cross_validate, fold_rows, make_folds, train_and_save
from ser_hf.errors import SerHfError
from ser_hf.frozen import FrozenStrategy, center_by_speaker, predict_head


@pytest.fixture(scope="module")
def cache_dirs(tmp_path_factory):
    return {
        "cache_dir": str(tmp_path_factory.mktemp("layers")),
        "decode_cache_dir": str(tmp_path_factory.mktemp("dec")),
    }


@pytest.fixture(scope="module")
def adaptive(tiny_whisper, corpus, cache_dirs, tmp_path_factory):
    """A speaker-adaptive model trained on actors 1-6 (7 validates), saved; its strategy and prepared corpus."""
    strategy = FrozenStrategy(tiny_whisper, speaker_adaptive=True, **cache_dirs)
    prepared = strategy.prepare(corpus)
    fold = make_folds(prepared.dataset["speaker"], 4)[3]  # tests actors 7-8, validates on 1-2
    fit, valid, test = fold_rows(prepared.dataset["speaker"], fold)
    outcome = strategy.run_fold(prepared, fit, valid, test)
    folder = tmp_path_factory.mktemp("adaptive") / "model"
    EmotionRecognizer(strategy.export(prepared, outcome.model), prepared.feature_extractor).save_pretrained(folder)
    return strategy, prepared, outcome, test, folder


def _waveforms(prepared, rows):
    return [np.asarray(w, dtype=np.float32) for w in prepared.dataset.select(rows).with_format("numpy")["waveform"]]


def _probabilities(recognizer, waveforms):
    return np.array([[p.scores[x] for x in recognizer.labels] for p in recognizer.predict_waveforms(waveforms)])


def test_center_by_speaker_subtracts_each_speakers_own_mean():
    x = np.arange(12, dtype=np.float64).reshape(6, 2) ** 2
    centred, means = center_by_speaker(x, [1, 1, 2, 2, 2, 1])
    assert set(means) == {"1", "2"}
    np.testing.assert_allclose(means["1"], x[[0, 1, 5]].mean(0))
    np.testing.assert_allclose(centred[[2, 3, 4]], x[[2, 3, 4]] - x[[2, 3, 4]].mean(0))
    np.testing.assert_allclose(centred[[0, 1, 5]].mean(0), 0, atol=1e-9)
    with pytest.raises(ValueError, match="2 speakers for 6 rows"):
        center_by_speaker(x, [1, 2])


def test_prepared_features_are_centred_per_speaker(adaptive):
    _, prepared, _, _, _ = adaptive
    for key in set(prepared.speakers):
        rows = prepared.speakers == key
        np.testing.assert_allclose(prepared.features[rows].mean(0), 0, atol=1e-4)
        assert np.abs(prepared.speaker_means[key]).max() > 1e-2  # the raw statistics are not centred


def test_adapted_model_predicts_from_raw_audio_what_the_head_predicted(adaptive):
    _, prepared, outcome, test, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    assert recognizer.is_speaker_adaptive and recognizer.model.config.speaker_adaptive
    actor_8 = test[prepared.speakers[test] == "8"]
    expected = torch.softmax(torch.as_tensor(outcome.logits[np.isin(test, actor_8)]), dim=-1).numpy()
    waveforms = _waveforms(prepared, actor_8)

    recognizer.adapt_to_speaker(waveforms)  # the head saw actor 8 centred on all of actor 8's clips
    adapted = _probabilities(recognizer, waveforms)
    np.testing.assert_allclose(adapted, expected, atol=2e-4)

    again = tmp = folder.parent / "adapted-to-8"
    recognizer.save_pretrained(tmp)  # the adaptation is saved with the model
    np.testing.assert_allclose(_probabilities(EmotionRecognizer.from_pretrained(again), waveforms), adapted, atol=1e-5)

    recognizer.reset_speaker()  # the training speakers' average: what the head gives on raw - reference
    head = outcome.model
    raw = prepared.features[actor_8] + prepared.speaker_means["8"]
    reference = head.speaker_reference.numpy().reshape(raw.shape[1:])
    unadapted = torch.softmax(torch.as_tensor(predict_head(head, raw - reference)), dim=-1).numpy()
    np.testing.assert_allclose(_probabilities(recognizer, waveforms), unadapted, atol=2e-4)
    assert not np.allclose(unadapted, adapted, atol=1e-3)
    trained = {str(a) for a in range(1, 7)}  # the fit and validation actors, not the test ones
    np.testing.assert_allclose(
        head.speaker_reference.numpy().ravel(),
        np.mean([prepared.speaker_means[k].ravel() for k in trained], axis=0),
        atol=1e-5,
    )


def test_adapting_needs_an_adaptive_model_and_usable_clips(adaptive, tiny_whisper, corpus, cache_dirs, tmp_path):
    _, prepared, _, _, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    with pytest.raises(SerHfError, match="no clips"):
        recognizer.adapt_to_speaker([])
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    with pytest.raises(SerHfError, match="empty.wav"):
        recognizer.adapt_to_speaker([_waveforms(prepared, [0])[0], str(bad)])
    with pytest.raises(ValueError, match="statistics"):
        recognizer.model.adapt_to_speaker(torch.zeros(2, 3))

    plain = FrozenStrategy(tiny_whisper, **cache_dirs)
    prepared_plain = plain.prepare(corpus)
    rows = np.arange(len(prepared_plain.labels))
    fitted = plain.fit(prepared_plain, rows[:64], rows[64:96])
    model = plain.export(prepared_plain, fitted.head)
    assert not model.config.speaker_adaptive and not hasattr(model, "speaker_mean")
    with pytest.raises(SerHfError, match="not trained for speaker adaptation"):
        EmotionRecognizer(model, prepared_plain.feature_extractor).adapt_to_speaker(np.zeros(RATE, np.float32))
    with pytest.raises(ValueError, match="statistics head"):
        FrozenStrategy(tiny_whisper, head_type="weighted", speaker_adaptive=True)


def test_reports_and_cards_say_the_protocol_is_speaker_adaptive(tiny_whisper, corpus, cache_dirs, tmp_path):
    result = cross_validate(
        corpus, tiny_whisper, n_folds=4, only_folds=[1], speaker_adaptive=True, output_dir=tmp_path, **cache_dirs
    )
    assert "centred on the mean of its speaker" in result.settings["speaker_adaptive"]
    assert "**Speaker-adaptive** (not the per-clip protocol)" in result.to_markdown()
    plain = cross_validate(corpus, tiny_whisper, n_folds=4, only_folds=[1], **cache_dirs)
    assert "speaker_adaptive" not in plain.settings and "Speaker-adaptive" not in plain.to_markdown()

    trained = train_and_save(
        corpus, tiny_whisper, tmp_path / "model", test_speakers=[8], validation_speakers=[7],
        speaker_adaptive=True, **cache_dirs,
    )  # fmt: skip
    card = (tmp_path / "model" / "README.md").read_text()
    assert "**Speaker-adaptive**: each test speaker's clips were centred" in card
    assert "recognizer.adapt_to_speaker(" in card
    assert json.loads((tmp_path / "model" / "config.json").read_text())["speaker_adaptive"] is True
    assert 0 <= trained.test_scores["ua"] <= 1


def test_cli_adapts_before_predicting_and_refuses_misplaced_flags(adaptive, corpus_dir, capsys):
    from ser_hf.cli import main

    _, _, _, _, folder = adaptive
    actor = corpus_dir / "Actor_08"
    clip = sorted(actor.glob("*.wav"))[0]
    assert main(["predict", str(clip), "--model", str(folder), "--speaker_clips", str(actor)]) == 0
    adapted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert main(["predict", str(clip), "--model", str(folder)]) == 0
    unadapted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert adapted["scores"] != unadapted["scores"]
    assert main(["predict", str(clip), "--model", str(folder), "--speaker_clips", str(corpus_dir / "nothing")]) != 0

    argv = ["evaluate", "--cv", "4", "--data_dir", str(corpus_dir), "--model", "unused", "--speaker_adaptive"]
    assert main([*argv, "--recipe", "ser-hf"]) == 2
    assert "--speaker_adaptive is for --strategy frozen" in capsys.readouterr().err
    assert main([*argv, "--head", "weighted"]) == 2
    assert "needs the statistics head" in capsys.readouterr().err


def test_onnx_export_keeps_the_adapted_speaker(adaptive, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    _, prepared, _, test, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    waveforms = _waveforms(prepared, test[prepared.speakers[test] == "7"])
    expected = _probabilities(recognizer.adapt_to_speaker(waveforms), waveforms)
    exported = EmotionRecognizer.from_pretrained(recognizer.export_onnx(tmp_path / "onnx"))
    np.testing.assert_allclose(_probabilities(exported, waveforms), expected, atol=2e-4)
    with pytest.raises(SerHfError, match="ONNX export keeps the speaker"):
        exported.adapt_to_speaker(waveforms)
