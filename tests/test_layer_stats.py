"""The layer-statistics model (ser_hf.layer_stats) and its head (ser_hf.heads.fit_stats_head): exact pooling
over the real frames, loading with plain transformers (remote code), training the head, ONNX export."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import RATE

from ser_hf import EmotionRecognizer
from ser_hf.heads import ProbeData, StatsHeadConfig, fit_stats_head, predict_head, select_stats_head
from ser_hf.layer_stats import LayerStatsForAudioClassification, masked_mean_std
from ser_hf.model_card import describe_model
from ser_hf.modeling import load_backbone, shorten_whisper_window

LABELS = ["neutral", "calm", "happy", "sad"]


def test_masked_mean_std_counts_only_the_real_positions():
    hidden = torch.randn(2, 3, 7, 5)
    lengths = torch.tensor([4, 7])
    stats = masked_mean_std(hidden, lengths)
    assert stats.shape == (2, 3, 10)
    for i, n in enumerate(lengths.tolist()):
        frames = hidden[i, :, :n].numpy()
        np.testing.assert_allclose(stats[i, :, :5].numpy(), frames.mean(axis=1), atol=1e-6)
        np.testing.assert_allclose(stats[i, :, 5:].numpy(), frames.std(axis=1), atol=1e-5)


def _whisper_stats_model(tiny_whisper, seconds=1):
    backbone, extractor = load_backbone(tiny_whisper, LABELS)
    shorten_whisper_window(backbone, extractor, seconds)
    extractor.return_attention_mask = True  # the real frames, for the statistics
    model = LayerStatsForAudioClassification.from_encoder(
        backbone.encoder,
        backbone.config,
        id2label=dict(enumerate(LABELS)),
        label2id={x: i for i, x in enumerate(LABELS)},
    )
    features = model.classifier.in_features
    generator = torch.Generator().manual_seed(0)
    model.set_head(
        torch.randn(features, generator=generator),
        torch.rand(features, generator=generator) + 0.5,
        torch.randn(len(LABELS), features, generator=generator),
        torch.randn(len(LABELS), generator=generator),
    )
    return model.eval(), extractor


def test_whisper_pools_the_clip_not_the_window(tiny_whisper):
    model, extractor = _whisper_stats_model(tiny_whisper, seconds=2)
    clip = (0.1 * np.random.default_rng(0).standard_normal(int(0.6 * RATE))).astype(np.float32)
    frames = extractor([clip], sampling_rate=RATE, return_tensors="pt", return_attention_mask=True)
    samples = extractor([clip], sampling_rate=RATE, return_tensors="pt")  # what pipeline passes: a per-sample mask
    assert frames["attention_mask"].shape[-1] != samples["attention_mask"].shape[-1]
    with torch.inference_mode():
        by_frames, by_samples = model(**frames).logits, model(**samples).logits
        whole_window = model(input_features=frames["input_features"]).logits
        hidden = model.encoder(frames["input_features"], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(by_frames.numpy(), by_samples.numpy(), atol=1e-5)
    assert not torch.allclose(by_frames, whole_window, atol=1e-3)
    real = int(np.ceil(0.6 * 50))  # Whisper: 50 positions per second
    expected = model.classify(masked_mean_std(torch.stack(hidden, 1), torch.tensor([real])))
    np.testing.assert_allclose(by_frames.numpy(), expected.detach().numpy(), atol=1e-5)


_FRESH_PROCESS = """
import json, sys
import numpy as np
from transformers import pipeline
folder, clip = sys.argv[1], np.load(sys.argv[2])
try:
    pipeline("audio-classification", model=folder)
    refused = None
except Exception as err:  # plain transformers must not load it silently into some other class
    refused = type(err).__name__ + ": " + str(err)[:200]
classifier = pipeline("audio-classification", model=folder, trust_remote_code=True, top_k=None)
scores = {item["label"]: item["score"] for item in classifier({"raw": clip, "sampling_rate": 16000})}
print(json.dumps({"refused": refused, "scores": scores, "ser_hf_imported": "ser_hf" in sys.modules,
                  "module": type(classifier.model).__module__}))
"""


def test_saved_model_loads_in_plain_transformers_with_remote_code(tiny_whisper, tmp_path):
    model, extractor = _whisper_stats_model(tiny_whisper)
    folder = tmp_path / "model"
    recognizer = EmotionRecognizer(model, extractor, device="cpu")
    recognizer.model_card = describe_model(model, extractor)
    recognizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "ser-hf-layer-stats" and (folder / "layer_stats.py").is_file()
    assert config["auto_map"]["AutoModelForAudioClassification"] == "layer_stats.LayerStatsForAudioClassification"
    assert json.loads((folder / "preprocessor_config.json").read_text())["return_attention_mask"] is True
    card = (folder / "README.md").read_text()
    assert "- custom_code" in card and "trust_remote_code=True)" in card
    clip = (0.1 * np.random.default_rng(1).standard_normal(int(0.7 * RATE))).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    ours = EmotionRecognizer.from_pretrained(folder).predict(clip).scores
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(folder), str(tmp_path / "clip.npy")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout[run.stdout.rindex('{"refused"') :])  # after transformers' "run the custom code?"
    assert not out["ser_hf_imported"] and out["module"].startswith("transformers_modules")
    assert out["refused"] and "contains custom code" in out["refused"]
    assert set(out["scores"]) == set(LABELS)
    for label, score in out["scores"].items():
        assert score == pytest.approx(ours[label], abs=1e-5)


def test_stats_head_fits_deterministically_and_the_validation_picks_its_strength():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    x = rng.normal(size=(300, 3, 10)).astype(np.float32)
    x[np.arange(300), 2, y] += 3.0  # one layer's features carry the class
    fit, valid = np.arange(200), np.arange(200, 300)
    head = fit_stats_head(x[fit], y[fit], 4, 1e-2)
    again = fit_stats_head(x[fit], y[fit], 4, 1e-2)
    np.testing.assert_array_equal(predict_head(head, x[valid]), predict_head(again, x[valid]))
    assert (predict_head(head, x[valid]).argmax(-1) == y[valid]).mean() > 0.8
    weak = fit_stats_head(x[fit], y[fit], 4, 10.0)  # heavy L2: smaller weights
    assert weak.classifier.weight.norm() < head.classifier.weight.norm()
    data = ProbeData(x, y, np.repeat(np.arange(30), 10).astype(str), 4)
    config = StatsHeadConfig(l2_grid=(1e-3, 10.0), max_iter=100, speaker_adaptive=False)
    chosen = select_stats_head(data, fit, valid, config)
    assert len(chosen.history) == 2 and chosen.chosen["l2"] in (1e-3, 10.0)
    assert chosen.chosen["l2"] == (1e-3, 10.0)[int(np.argmax(chosen.history))]


def test_onnx_export_keeps_the_real_frame_pooling(tiny_whisper, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, extractor = _whisper_stats_model(tiny_whisper)
    recognizer = EmotionRecognizer(model, extractor, device="cpu")
    onnx = EmotionRecognizer.from_pretrained(recognizer.export_onnx(tmp_path / "onnx"))
    rng = np.random.default_rng(2)
    clips = [(0.1 * rng.standard_normal(int(s * RATE))).astype(np.float32) for s in (0.3, 0.8)]
    for ours, theirs in zip(recognizer.predict(clips), onnx.predict(clips), strict=True):
        for label in LABELS:
            assert theirs.scores[label] == pytest.approx(ours.scores[label], abs=1e-4)
