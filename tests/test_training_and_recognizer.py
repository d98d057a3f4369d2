"""A trained recognizer end to end on tiny models: the saved folder, EmotionRecognizer and pipeline parity."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import RATE, synth_clip
from transformers import pipeline

from ser_hf import AudioError, EmotionRecognizer, LabelMapError, Prediction, SerHfError
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.trainer import finetune


def test_the_default_training_scores_well_above_chance(trained):
    # 8 classes: chance UA is 0.125. The synthetic emotions differ in pitch, which the model must learn.
    assert trained.test_metrics["test_ua"] >= 0.6, trained.test_metrics
    assert trained.test_metrics["test_wa"] >= 0.6
    assert set(trained.test_report["per_class_recall"]) == set(RAVDESS_EMOTIONS)


def test_output_dir_holds_the_best_model(trained):
    out = Path(str(trained.output_dir))
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "test_results.json",
        "test_report.json",
    ):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(8)] == list(RAVDESS_EMOTIONS)
    recognizer = EmotionRecognizer.from_pretrained(out)
    assert recognizer.labels == list(RAVDESS_EMOTIONS)
    assert trained.phases["phase1"]["validation_ua"] is not None  # chosen on the validation speaker


def test_predict_single_and_batch(trained, corpus, clip_path, tmp_path):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    single = recognizer.predict(str(clip_path))
    assert isinstance(single, Prediction)
    assert single.label in RAVDESS_EMOTIONS and single.score == max(single.scores.values())
    assert set(single.scores) == set(RAVDESS_EMOTIONS) and sum(single.scores.values()) == pytest.approx(1, abs=1e-5)
    flac = tmp_path / "b.flac"
    sf.write(flac, synth_clip(2, 7, 1), RATE)
    array = synth_clip(8, 8, 2)
    batch = recognizer.predict([clip_path, str(flac), array, {"array": array, "sampling_rate": RATE}])
    assert len(batch) == 4 and all(isinstance(p, Prediction) for p in batch)
    assert batch[2].label == batch[3].label
    # Batching never changes the order of results.
    assert batch[0].label == single.label and batch[0].score == pytest.approx(single.score, abs=1e-4)
    # A `datasets` column of paths is a batch too.
    column = corpus.select(range(3))["path"]
    assert [p.label for p in recognizer.predict(column)] == [recognizer.predict(path).label for path in column]


def test_save_load_gives_identical_predictions(trained, tmp_path, clip_path):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    saved = recognizer.save_pretrained(tmp_path / "copy")
    reloaded = EmotionRecognizer.from_pretrained(saved)
    a, b = recognizer.predict(clip_path), reloaded.predict(clip_path)
    assert a.label == b.label and a.scores == b.scores


def test_pipeline_gives_the_same_answer(trained, clip_path):
    folder = str(trained.output_dir)
    recognizer = EmotionRecognizer.from_pretrained(folder)
    mine = recognizer.predict(clip_path)
    samples = recognizer.load(clip_path)
    theirs = pipeline("audio-classification", model=folder, top_k=None)({"raw": samples, "sampling_rate": RATE})
    assert theirs[0]["label"] == mine.label
    for item in theirs:
        assert item["score"] == pytest.approx(mine.scores[item["label"]], abs=1e-4)


def test_bad_inputs_raise_named_errors_or_come_back_per_item(trained, tmp_path, clip_path):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioError, match="notes.wav"):
        recognizer.predict(text)
    with pytest.raises(AudioError, match=r"item 1 of the batch"):
        recognizer.predict([clip_path, text])
    with pytest.raises(SerHfError, match="empty list"):
        recognizer.predict([])
    mixed = recognizer.predict([clip_path, text, np.zeros((2, 100), np.float32)], errors="return")
    assert isinstance(mixed[0], Prediction)
    assert isinstance(mixed[1], AudioError) and mixed[1].source == str(text)
    assert isinstance(mixed[2], AudioError) and "1-D" in mixed[2].problem


def test_very_short_clip_is_padded_not_crashing(trained):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    assert isinstance(recognizer.predict(synth_clip(1, 1, 1, seconds=0.002)), Prediction)


def test_failed_save_leaves_the_old_model(trained, tmp_path, monkeypatch, clip_path):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    target = recognizer.save_pretrained(tmp_path / "model")
    before = sorted(p.name for p in target.iterdir())

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(recognizer.feature_extractor, "save_pretrained", explode)
    with pytest.raises(OSError, match="disk full"):
        recognizer.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert EmotionRecognizer.from_pretrained(target).predict(clip_path).label


def test_interrupted_save_is_not_a_model(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(SerHfError, match="interrupted save"):
        EmotionRecognizer.from_pretrained(tmp_path / "half")


def test_wrong_label_maps(trained):
    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(str(trained.output_dir))
    model.config.id2label = {0: "angry", 2: "sad"}
    with pytest.raises(LabelMapError, match="without gaps"):
        EmotionRecognizer(model, None)


def test_a_fine_tuned_checkpoint_trains_a_new_head_over_the_data_s_labels(tiny_wav2vec2, corpus, tmp_path):
    """A checkpoint whose head predicts other labels is used as an encoder; ser-hf fits its own head."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    source = tiny_wav2vec2
    config = AutoConfig.from_pretrained(source, num_labels=3, id2label={0: "x", 1: "y", 2: "z"})
    other = tmp_path / "other-head"
    AutoModelForAudioClassification.from_pretrained(source, config=config).save_pretrained(other)
    AutoFeatureExtractor.from_pretrained(source).save_pretrained(other)
    outcome = finetune(str(other), corpus, output_dir=str(tmp_path / "o"), test_actors=[8], eval_actors=[7])
    assert outcome.recognizer.labels == list(RAVDESS_EMOTIONS)


def test_hubert_with_attention_mask_batches_exactly(tiny_hubert, corpus, tmp_path, clip_path):
    outcome = finetune(
        tiny_hubert, corpus, output_dir=str(tmp_path / "hubert"), test_actors=[8], eval_actors=[],
        decode_cache_dir=str(tmp_path / "dec"), features_cache_dir=str(tmp_path / "dec"),
    )  # fmt: skip
    recognizer = EmotionRecognizer.from_pretrained(tmp_path / "hubert")
    assert recognizer.feature_extractor.return_attention_mask
    assert type(recognizer.model).__name__ == "LayerStatsForAudioClassification"
    short, long = synth_clip(1, 2, 1, seconds=0.4), synth_clip(5, 2, 1, seconds=1.2)
    alone = recognizer.predict(short)
    padded = recognizer.predict([short, long])[0]  # padded to the longer clip, masked
    assert padded.score == pytest.approx(alone.score, abs=1e-4)
    assert "test_ua" in outcome.test_metrics


def test_whisper_window_is_shortened_consistently(tiny_whisper, corpus, tmp_path, clip_path):
    finetune(
        tiny_whisper, corpus, output_dir=str(tmp_path / "whisper"), test_actors=[8], eval_actors=[7],
        decode_cache_dir=str(tmp_path / "dec"), features_cache_dir=str(tmp_path / "dec"),
    )  # fmt: skip
    folder = tmp_path / "whisper"
    config = json.loads((folder / "config.json").read_text())
    extractor = json.loads((folder / "preprocessor_config.json").read_text())
    assert config["encoder"]["max_source_positions"] == 50 and extractor["base"]["chunk_length"] == 1  # clips <= 1 s
    recognizer = EmotionRecognizer.from_pretrained(folder)
    assert type(recognizer.model).__name__ == "LayerStatsForAudioClassification"
    assert recognizer.window_seconds == 1.0
    mine = recognizer.predict(clip_path)
    samples = recognizer.load(clip_path)
    theirs = pipeline("audio-classification", model=str(folder), top_k=None, trust_remote_code=True)(
        {"raw": samples, "sampling_rate": RATE}
    )
    assert theirs[0]["label"] == mine.label
    assert theirs[0]["score"] == pytest.approx(mine.score, abs=1e-4)


def test_recognizer_runs_on_the_requested_device(trained):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir), device="cpu")
    assert recognizer.device == torch.device("cpu") and "EmotionRecognizer(" in repr(recognizer)


def test_missing_model_is_a_ser_hf_error(tmp_path):
    with pytest.raises(SerHfError, match="no such model folder"):
        EmotionRecognizer.from_pretrained(tmp_path / "nowhere" / "model")
    with pytest.raises(SerHfError, match="could not load the model"):
        EmotionRecognizer.from_pretrained("nobody-has-this/emotion-model")
