"""The one training pipeline on tiny models: prepare once, phase 1 (the probe), phase 2 (the top layers through
`transformers.Trainer`), the refit, the export, the output folder and the one parser."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RATE, synth_clip
from transformers import pipeline

from ser_hf import EmotionRecognizer, SerHfError
from ser_hf.arguments import SERArgumentParser, arguments, parse_args
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.modeling import encoder_layers
from ser_hf.trainer import CHECKPOINTS, EmotionTrainer, finetune


@pytest.fixture
def caches(tmp_path_factory):
    folder = str(tmp_path_factory.getbasetemp() / "pipeline-cache")
    return {"decode_cache_dir": folder, "features_cache_dir": folder}


def _pipeline(model: str, tmp_path: Path, caches: dict, corpus=None, **options) -> EmotionTrainer:
    fields = {"test_speakers": "7,8", "eval_speakers": "6", "disable_tqdm": True, "seed": 0, **caches, **options}
    args = arguments(model_name_or_path=model, output_dir=str(tmp_path / "out"), **fields)
    return EmotionTrainer(*args, corpus=corpus)


def _probabilities(recognizer: EmotionRecognizer, waveforms: list[np.ndarray]) -> np.ndarray:
    return np.array([[p.scores[label] for label in recognizer.labels] for p in recognizer.predict_waveforms(waveforms)])


def _raw_clips(encoded, rows: np.ndarray) -> list[np.ndarray]:
    """The test clips as a user would pass them: decoded from their files (not trimmed or normalised)."""
    from ser_hf.audio import load_audio

    paths = encoded.dataset.select(rows)["path"]
    return [load_audio(path, RATE) for path in paths]


@pytest.mark.parametrize(
    ("backbone", "head", "layers"),
    [
        ("tiny_whisper", "stats", "0"),
        ("tiny_whisper", "stats", "1"),
        ("tiny_whisper", "weighted", "all"),
        ("tiny_wav2vec2", "stats", "all"),
        ("tiny_hubert", "stats", "1"),
        ("tiny_hubert", "weighted", "0"),
    ],
)
def test_the_saved_model_predicts_from_audio_what_training_predicted_from_the_cache(
    backbone, head, layers, request, corpus, caches, tmp_path
):
    """The export is exact: the encoder's cached part, the fine-tuned layers and the head, from raw audio (and
    through `pipeline`, which runs the same saved feature extractor)."""
    if backbone != "tiny_whisper":  # wav2vec2-style models are encoded clip by clip: keep these short
        corpus = corpus.filter(lambda actor: actor in (1, 2, 3, 6, 7, 8), input_columns="actor")
    trainer = _pipeline(
        request.getfixturevalue(backbone), tmp_path, caches, corpus, head=head, finetune_layers=layers,
        num_train_epochs=2, learning_rate=5e-3, head_learning_rate=5e-3, eval_strategy="no", refit=False,
    )  # fmt: skip
    encoded = trainer.prepare()
    fit, valid, test, _, _ = trainer.split_rows(encoded)
    fitted = trainer.fit(encoded, fit, valid)
    assert ("phase2" in fitted.phases) == (layers != "0")
    model = trainer.export(fitted, encoded)
    exported, original = encoder_layers(model)[-1].state_dict(), encoder_layers(encoded.model)[-1].state_dict()
    moved = any(not torch.equal(exported[name], original[name]) for name in original)
    assert moved == (layers != "0")  # phase 2 moved the top layer, and the export carries it
    if layers != "0":
        assert fitted.top is not None and fitted.phases["phase2"]["chosen_epoch"] == 2
    folder = tmp_path / "exported"
    EmotionRecognizer(model, encoded.feature_extractor, device="cpu").save_pretrained(folder)
    recognizer = EmotionRecognizer.from_pretrained(folder)
    expected = torch.softmax(torch.as_tensor(trainer.logits(fitted, encoded, test[:10])), -1).numpy()
    clips = _raw_clips(encoded, test[:10])
    np.testing.assert_allclose(_probabilities(recognizer, clips), expected, atol=2e-4)
    theirs = pipeline("audio-classification", model=str(folder), top_k=None, trust_remote_code=True)(
        {"raw": clips[0], "sampling_rate": RATE}
    )
    for item in theirs:
        assert item["score"] == pytest.approx(expected[0][recognizer.labels.index(item["label"])], abs=1e-4)
    kind = "LayerStatsForAudioClassification" if head == "stats" else ("ForAudioClassification", "Classification")
    assert type(recognizer.model).__name__.endswith(kind)
    plain = head == "weighted"  # by default the weighted head keeps its checkpoint free of custom code
    assert (type(recognizer.feature_extractor).__name__ == "SERFeatureExtractor") != plain


def test_phase_2_chooses_among_the_probe_and_its_epochs_then_refits(tiny_whisper, corpus, caches, tmp_path):
    trainer = _pipeline(
        tiny_whisper, tmp_path, caches, corpus, finetune_layers="1", num_train_epochs=3, learning_rate=3e-3,
        head_learning_rate=3e-3,
    )  # fmt: skip
    encoded = trainer.prepare()
    fit, valid, _, test_speakers, validation_speakers = trainer.split_rows(encoded)
    assert (test_speakers, validation_speakers) == (["7", "8"], ["6"])
    fitted = trainer.fit(encoded, fit, valid)
    phase2 = fitted.phases["phase2"]
    history = phase2["validation_ua_by_epoch"]
    assert len(history) == 4 and phase2["chosen_epoch"] == int(np.argmax(history))  # epoch 0 is the probe
    assert phase2["refitted_with_validation_speakers"] and fitted.phases["phase1"]["validation_ua"] is not None
    assert (fitted.top is None) == (phase2["chosen_epoch"] == 0)
    # Nothing learns at learning rate 0: the validation speakers keep the probe, refitted with them.
    frozen = _pipeline(tiny_whisper, tmp_path, caches, corpus, finetune_layers="1", num_train_epochs=2,
                       learning_rate=0.0, head_learning_rate=0.0)  # fmt: skip
    kept = frozen.fit(encoded, fit, valid)
    assert kept.phases["phase2"]["chosen_epoch"] == 0 and kept.top is None
    probe_only = _pipeline(tiny_whisper, tmp_path, caches, corpus).fit(encoded, fit, valid)
    torch.testing.assert_close(kept.head.classifier.weight, probe_only.head.classifier.weight, rtol=0, atol=0)


def test_a_training_run_writes_the_model_its_card_and_results_at_the_top(tiny_whisper, corpus_dir, caches, tmp_path):
    outcome = finetune(
        tiny_whisper, str(corpus_dir), output_dir=tmp_path / "out", test_speakers="8", eval_speakers="7",
        finetune_layers="1", num_train_epochs=2, learning_rate=3e-3, head_learning_rate=3e-3, disable_tqdm=True,
        **caches,
    )  # fmt: skip
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "test_results.json",
            "test_report.json", "skipped_audio.json", "layer_stats.py", "feature_extraction.py"} <= names  # fmt: skip
    assert CHECKPOINTS not in names  # phase 2's checkpoints are removed once the model is saved
    results = json.loads((out / "test_results.json").read_text())
    assert results["test_ua"] == pytest.approx(outcome.test_metrics["test_ua"]) and "test_adapted_ua" in results
    report = json.loads((out / "test_report.json").read_text())
    assert report["phases"]["phase2"]["layers"] == 1 and report["test_speakers"] == ["8"]
    card = (out / "README.md").read_text()
    assert "whisper" in card and "-ravdess-ser" in card and "Validation UA" in card
    assert "Adapted to each test speaker" in card and 'pip install "ser-hf @ git+' in card
    assert "warmup_fraction (of all steps): 0.1" in card
    recognizer = EmotionRecognizer.from_pretrained(out)
    assert recognizer.labels == list(RAVDESS_EMOTIONS) and recognizer.is_speaker_adaptive


def test_checkpoints_are_kept_when_asked(tiny_whisper, corpus_dir, caches, tmp_path):
    finetune(
        tiny_whisper, str(corpus_dir), output_dir=tmp_path / "out", test_speakers="8", eval_speakers="7",
        finetune_layers="1", num_train_epochs=1, keep_checkpoints=True, disable_tqdm=True, **caches,
    )  # fmt: skip
    selection = tmp_path / "out" / CHECKPOINTS / "selection"
    assert [p.name for p in selection.iterdir() if p.name.startswith("checkpoint-")]


def test_the_probe_alone_is_the_default_and_writes_results_too(trained):
    assert "phase2" not in trained.phases and trained.phases["phase1"]["head"] == "stats"
    assert trained.phases["phase1"]["speaker_adaptive"] and trained.test_metrics["test_ua"] >= 0.6
    results = json.loads((trained.output_dir / "test_results.json").read_text())
    assert results["test_ua"] == pytest.approx(trained.test_metrics["test_ua"])


def test_encoding_is_cached_once_per_model_and_audio(tiny_whisper, corpus, caches, tmp_path, monkeypatch):
    first = _pipeline(tiny_whisper, tmp_path, caches).prepare(corpus)
    import ser_hf.encoding as encoding

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(encoding, "_pool_batch", fail)
    again = _pipeline(tiny_whisper, tmp_path, caches, head="stats", l2_grid="0.1").prepare(corpus)
    np.testing.assert_array_equal(first.statistics, again.statistics)
    with pytest.raises(AssertionError, match="ran again"):  # another window: other hidden states, new cache
        _pipeline(tiny_whisper, tmp_path, caches, window_seconds=2).prepare(corpus)


def test_statistics_pool_the_clip_and_the_window_means_pool_the_window(tiny_whisper, corpus, caches, tmp_path):
    from ser_hf.features import AudioCollator

    encoded = _pipeline(tiny_whisper, tmp_path, caches, window_seconds=3).prepare(corpus)
    row = encoded.dataset.with_format("numpy")[0]
    inputs = AudioCollator(encoded.feature_extractor.base, max_samples=3 * RATE).encode([row["waveform"]])
    with torch.inference_mode():
        states = encoded.model.encoder(**inputs, output_hidden_states=True).hidden_states
    frames = int(np.ceil(len(row["waveform"]) / RATE * 50))
    assert encoded.positions[0] == frames
    np.testing.assert_allclose(encoded.statistics[0, 1, :32], states[1][0, :frames].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(encoded.window_means[0, 1], states[1][0].mean(0).numpy(), atol=1e-5)


def test_a_trained_recognizer_is_no_base_model(trained, corpus, tmp_path):
    with pytest.raises(SerHfError, match="trained ser-hf recognizer"):
        finetune(str(trained.output_dir), corpus, output_dir=tmp_path / "o", test_speakers="8", eval_speakers="")


# ------------------------------------------------------------------------------------------ the parser
def test_one_parser_takes_snake_and_kebab_spellings_and_aliases():
    model, data, training = parse_args(
        ["--model", "m", "--data-dir", "a,b", "--data_dir", "c", "--test-actors", "1,2", "--eval_actors", "3",
         "--finetune-layers", "all", "--loudness_db", "none", "--no-speaker-adaptive", "--output-dir", "/tmp/x",
         "--num_train_epochs", "2", "--head-learning-rate", "0.001"]
    )  # fmt: skip
    assert model.model_name_or_path == "m" and model.finetune_layers == "all" and not model.speaker_adaptive
    assert data.sources() == ["a", "b", "c"] and (data.test_speakers, data.eval_speakers) == ("1,2", "3")
    assert data.loudness_db is None and training.output_dir == "/tmp/x"
    assert training.num_train_epochs == 2 and training.head_learning_rate == 0.001
    assert model.layers_to_finetune(4) == 4 and arguments(finetune_layers=2)[0].layers_to_finetune(4) == 2
    with pytest.raises(TypeError, match="unknown option 'epochs'"):
        arguments(epochs=3)


def test_help_shows_ser_hf_options_first_grouped_with_the_trainer_s_below(capsys):
    text = SERArgumentParser(prog="ser-hf train").format_help()
    groups = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert groups[1:5] == [
        "Model:", "Data:", "Training (ser-hf: phase 1, the probe; phase 2, the top layers):",
        "Every other transformers.TrainingArguments option:",
    ]  # fmt: skip
    assert text.index("--finetune_layers") < text.index("--test_speakers") < text.index("--head_learning_rate")
    assert text.index("--head_learning_rate") < text.index("--optim ") and text.index("--learning_rate") < text.index(
        "--optim "
    )
    assert text.splitlines()[0].startswith("usage: ser-hf train [--model_name_or_path M]")


def test_examples_and_the_command_line_share_the_parser():
    import ast

    source = (Path(__file__).resolve().parents[1] / "examples" / "finetune.py").read_text()
    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    assert {"SERArgumentParser", "EmotionTrainer"} <= names


def test_speaker_clips_of_several_corpora_never_collide(tiny_whisper, tmp_path, caches):
    """Two corpora whose speakers are both called "1": keyed by corpus, held out and trained on separately."""
    import soundfile as sf
    from conftest import write_corpus

    from ser_hf import load_corpora

    ravdess = write_corpus(tmp_path / "ravdess", actors=(1, 2, 3), repetitions=(1,), emotions=(1, 3, 4, 5))
    folders = tmp_path / "folders"
    for emotion, name in ((1, "neutral"), (3, "happy"), (4, "sad"), (5, "angry"), (6, "fearful")):
        for speaker in ("1", "2"):
            (folders / name / speaker).mkdir(parents=True, exist_ok=True)
            sf.write(folders / name / speaker / "a.wav", synth_clip(emotion, int(speaker), 1), RATE)
    corpus = load_corpora([str(ravdess), str(folders)], ["ravdess", "folders"], speaker_pattern=r"^[^/]+/([^/]+)/")
    from ser_hf.splits import speaker_key

    speakers = {speaker_key(s) for s in corpus["speaker"]}
    assert {"ravdess:1", "folders:1"} <= speakers
    trainer = _pipeline(tiny_whisper, tmp_path, caches, test_speakers="ravdess:3,folders:2", eval_speakers="")
    trainer.corpus = corpus
    encoded = trainer.prepare(corpus)
    fit, _, test, _, _ = trainer.split_rows(encoded)
    assert set(encoded.speakers[fit]) == {"ravdess:1", "ravdess:2", "folders:1"}
    assert set(encoded.speakers[test]) == {"ravdess:3", "folders:2"}
    assert encoded.label_names == ["neutral", "happy", "sad", "angry", "fearful"]  # the labels both annotate
    data = trainer.probe_data(encoded)
    assert data.groups is not None  # two corpora: each weighs the same in the loss
