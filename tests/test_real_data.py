"""Real-data checks on ../shared (all 1440 RAVDESS speech clips at 16 kHz, the Whisper tiny.en encoder).

Marked slow: `make test-slow` (``pytest -m slow``) runs them; each skips when the shared folder is absent.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import shared_path

from ser_hf import EmotionRecognizer, load_audio, load_ravdess
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.modeling import load_backbone, shorten_whisper_window

DATA = shared_path("data", "ravdess-16k")
WHISPER = shared_path("models", "whisper-tiny.en")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA.is_dir() and WHISPER.is_dir()), reason=f"no real data at {DATA} / {WHISPER}"),
]


@pytest.fixture(scope="module")
def ravdess():
    return load_ravdess(DATA)


def _actors(corpus, actors: set[int]):
    return corpus.filter(lambda actor: actor in actors, input_columns="actor")


def test_the_real_corpus_loads_whole_and_in_ravdess_order(ravdess):
    assert len(ravdess) == 1440
    assert ravdess.features["label"].names == list(RAVDESS_EMOTIONS)
    assert sorted(set(ravdess["actor"])) == list(range(1, 25))
    counts = Counter(ravdess.features["label"].int2str(i) for i in ravdess["label"])
    assert counts["neutral"] == 96 and all(counts[e] == 192 for e in RAVDESS_EMOTIONS if e != "neutral")
    assert Counter(ravdess["actor"]) == dict.fromkeys(range(1, 25), 60)
    samples = load_audio(ravdess[0]["path"], sampling_rate=16_000)
    assert samples.dtype == np.float32 and samples.ndim == 1 and 2.5 * 16_000 < samples.size < 6 * 16_000


def test_whisper_tiny_predicts_saves_reloads_and_runs_in_a_pipeline(ravdess, tmp_path):
    from transformers import pipeline

    model, extractor = load_backbone(str(WHISPER), list(RAVDESS_EMOTIONS))
    shorten_whisper_window(model, extractor, 6)
    recognizer = EmotionRecognizer(model, extractor, device="cpu")
    clips = [ravdess[i]["path"] for i in range(0, 1440, 180)]  # 8 clips across actors and emotions
    before = recognizer.predict(clips)
    assert all(abs(sum(p.scores.values()) - 1) < 1e-4 and set(p.scores) == set(RAVDESS_EMOTIONS) for p in before)
    recognizer.save_pretrained(tmp_path / "model")
    after = EmotionRecognizer.from_pretrained(tmp_path / "model").predict(clips)
    for a, b in zip(before, after):
        assert a.label == b.label and max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-5
    classifier = pipeline("audio-classification", model=str(tmp_path / "model"), device="cpu")
    audio = load_audio(clips[0], sampling_rate=16_000)
    top = classifier({"raw": audio, "sampling_rate": 16_000}, top_k=1)[0]
    assert top["label"] == before[0].label


def test_the_default_pipeline_on_held_out_real_speakers(ravdess, tmp_path):
    """Six actors: train on 1-3 (+ validation 4), test on 5-6. Well above chance (12.5% UA), and the saved model
    predicts from the audio files what training predicted from its cache (and `pipeline` agrees)."""
    from transformers import pipeline

    from ser_hf.evaluation import score
    from ser_hf.trainer import finetune

    corpus = _actors(ravdess, set(range(1, 7)))
    outcome = finetune(
        str(WHISPER), corpus, output_dir=tmp_path / "model", test_speakers="5,6", eval_speakers="4",
        features_cache_dir=str(tmp_path / "features"), decode_cache_dir=str(tmp_path / "decoded"),
    )  # fmt: skip
    assert outcome.test_metrics["test_ua"] > 0.30, outcome.test_metrics
    test = _actors(corpus, {5, 6})
    recognizer = EmotionRecognizer.from_pretrained(outcome.output_dir)
    assert type(recognizer.model).__name__ == "LayerStatsForAudioClassification"
    predictions = recognizer.predict(test["path"])
    names = list(RAVDESS_EMOTIONS)
    again = score(np.array([names.index(p.label) for p in predictions]), np.array(test["label"]), names)
    assert abs(again["ua"] - outcome.test_metrics["test_ua"]) < 0.02, (again["ua"], outcome.test_metrics)
    classifier = pipeline("audio-classification", model=str(outcome.output_dir), top_k=None, trust_remote_code=True)
    audio = load_audio(test[0]["path"], sampling_rate=16_000)
    for item in classifier({"raw": audio, "sampling_rate": 16_000}):
        assert abs(item["score"] - predictions[0].scores[item["label"]]) < 1e-4
