"""ONNX export (fp32 and dynamic int8) loaded back by EmotionRecognizer with the same API."""

import json
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import RATE, synth_clip

from ser_hf import EmotionRecognizer, Prediction, SerHfError
from ser_hf.cli import main
from ser_hf.export import EXPORT_INFO_FILE, ONNX_FILE

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def pytorch(trained):
    return EmotionRecognizer.from_pretrained(str(trained.output_dir))


@pytest.fixture(scope="module")
def int8_folder(pytorch, tmp_path_factory):
    return pytorch.export_onnx(tmp_path_factory.mktemp("onnx") / "int8", quantize="int8")


def test_int8_top_labels_agree_with_pytorch(pytorch, int8_folder, corpus_dir):
    onnx = EmotionRecognizer.from_pretrained(int8_folder)
    assert onnx.backend == "onnxruntime" and pytorch.backend == "pytorch"
    assert onnx.labels == pytorch.labels and onnx.sampling_rate == pytorch.sampling_rate
    files = sorted(corpus_dir.rglob("*.wav"))
    theirs, mine = pytorch.predict(files), onnx.predict(files)
    agreement = np.mean([a.label == b.label for a, b in zip(theirs, mine, strict=True)])
    assert agreement >= 0.99, agreement
    assert all(isinstance(p, Prediction) and sum(p.scores.values()) == pytest.approx(1, abs=1e-5) for p in mine)
    info = json.loads((int8_folder / EXPORT_INFO_FILE).read_text())
    assert info["quantization"] == "int8" and info["inputs"] == ["input_values"] and info["dynamic_time_axis"]


def test_the_export_carries_the_model_card(pytorch, int8_folder):
    from huggingface_hub import ModelCard

    card = ModelCard((int8_folder / "README.md").read_text(encoding="utf-8"))
    original = pytorch.model_card
    assert "onnx" in card.data.tags and set(original.data.tags) < set(card.data.tags)
    assert card.data.eval_results == original.data.eval_results  # the test scores of the model exported
    assert "## ONNX export" in card.text and "dynamic int8 weights" in card.text
    assert card.text.startswith(original.text.rstrip())
    assert original.figures  # the confusion matrix the card shows
    for name in original.figures:
        assert (int8_folder / name).read_bytes() == original.figures[name]


def test_onnx_recognizer_does_timeline_stream_and_save(pytorch, int8_folder, tmp_path):
    onnx = EmotionRecognizer.from_pretrained(int8_folder)
    recording = np.concatenate([synth_clip(5, 7, 1, seconds=2.0), np.zeros(RATE, np.float32)])
    path = tmp_path / "call.wav"
    sf.write(path, recording, RATE)
    segments = onnx.predict_timeline(path, segmentation="windows", window_seconds=1.0, hop_seconds=1.0)
    assert [s.silent for s in segments] == [False, False, True]
    expected = pytorch.predict_timeline(path, segmentation="windows", window_seconds=1.0)
    assert [s.label for s in segments[:2]] == [s.label for s in expected[:2]]
    stream = onnx.stream(segmentation="windows", window_seconds=1.0, hop_seconds=1.0)
    live = stream.push(recording) + stream.flush()
    assert [(s.start, s.label) for s in live] == [(s.start, s.label) for s in segments]
    copy = EmotionRecognizer.from_pretrained(onnx.save_pretrained(tmp_path / "copy"))
    assert copy.backend == "onnxruntime"
    assert copy.predict(recording).scores == onnx.predict(recording).scores


def test_cli_exports_a_fixed_window_whisper_model_that_matches_pytorch(tiny_whisper, tmp_path, capsys):
    pytorch = EmotionRecognizer.from_pretrained(tiny_whisper)  # a fresh random head: save it to export it
    saved = pytorch.save_pretrained(tmp_path / "whisper")
    out = tmp_path / "whisper-onnx"
    assert main(["export", "--model", str(saved), "--onnx", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["quantization"] is None and printed["inputs"] == ["input_features"]
    assert not printed["dynamic_time_axis"] and (out / ONNX_FILE).exists()
    clips = [synth_clip(e, 1, 1) for e in (1, 4, 8)]
    theirs = pytorch.predict(clips)
    mine = EmotionRecognizer.from_pretrained(out).predict(clips)
    for a, b in zip(theirs, mine, strict=True):
        assert a.label == b.label
        assert all(a.scores[k] == pytest.approx(b.scores[k], abs=1e-5) for k in a.scores)


def test_export_refusals(pytorch, trained, tmp_path, monkeypatch):
    with pytest.raises(SerHfError, match="PyTorch model"):
        pytorch.export_onnx(str(trained.output_dir))
    with pytest.raises(SerHfError, match="unknown quantization"):
        pytorch.export_onnx(tmp_path / "x", quantize="int4")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(SerHfError, match=r"ser-hf\[export\]"):
        pytorch.export_onnx(tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize(
    ("backbone", "options"),
    [
        ("tiny_whisper", {}),
        ("tiny_wav2vec2", {"head": "weighted"}),
        ("tiny_hubert", {"finetune_layers": "1", "num_train_epochs": 1, "eval_strategy": "no"}),
    ],
    ids=["whisper-statistics", "wav2vec2-weighted", "hubert-statistics-phase2"],
)
def test_pipeline_predict_and_onnx_agree_for_every_kind_of_model(backbone, options, request, corpus, tmp_path):
    """What ser-hf saves gives the same probabilities through EmotionRecognizer, transformers' pipeline and the
    fp32 ONNX export (the int8 one: the same top labels), clips with silence around them included."""
    from transformers import pipeline

    from ser_hf.trainer import finetune

    small = corpus.filter(lambda actor: actor in (1, 2, 7), input_columns="actor")
    outcome = finetune(
        request.getfixturevalue(backbone), small, output_dir=tmp_path / "model", test_speakers="7", eval_speakers="2",
        decode_cache_dir=str(tmp_path / "cache"), features_cache_dir=str(tmp_path / "cache"), disable_tqdm=True,
        **options,
    )  # fmt: skip
    folder = str(outcome.output_dir)
    recognizer = EmotionRecognizer.from_pretrained(folder)
    quiet = np.zeros(RATE // 2, np.float32)
    clips = [np.concatenate([quiet, synth_clip(e, 7, 1), quiet]) for e in range(1, 9)]
    mine = recognizer.predict(clips)
    classifier = pipeline("audio-classification", model=folder, top_k=None, trust_remote_code=True)
    fp32 = EmotionRecognizer.from_pretrained(recognizer.export_onnx(tmp_path / "fp32")).predict(clips)
    int8 = EmotionRecognizer.from_pretrained(recognizer.export_onnx(tmp_path / "int8", quantize="int8")).predict(clips)
    for clip, ours, exported, quantized in zip(clips, mine, fp32, int8, strict=True):
        theirs = {item["label"]: item["score"] for item in classifier({"raw": clip, "sampling_rate": RATE})}
        for label, score in ours.scores.items():
            assert theirs[label] == pytest.approx(score, abs=1e-4)
            assert exported.scores[label] == pytest.approx(score, abs=1e-4)
        assert quantized.label == ours.label
