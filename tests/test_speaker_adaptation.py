"""Speaker adaptation: the statistics head trained on every clip as heard and mapped onto the training speakers'
average voice (ser_hf.heads.SpeakerNormalizer), the saved model's mapping (set_speaker), the running
SpeakerProfile, and what reports, cards, the command line and ONNX exports say and do about it."""

import json

import numpy as np
import pytest
import torch
from conftest import RATE

from ser_hf import EmotionRecognizer, SerHfError
from ser_hf.adaptation import SpeakerProfile
from ser_hf.arguments import arguments
from ser_hf.audio import load_audio
from ser_hf.heads import SpeakerNormalizer, blend_speaker
from ser_hf.trainer import EmotionTrainer


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory, corpus, tiny_whisper):
    """The default pipeline on a tiny Whisper (test actors 7-8, validation 6), saved; with its trainer, encoded
    corpus, fitted model and test rows."""
    cache = str(tmp_path_factory.mktemp("adaptive-cache"))
    folder = tmp_path_factory.mktemp("adaptive") / "model"
    args = arguments(
        model_name_or_path=tiny_whisper, output_dir=str(folder), test_speakers="7,8", eval_speakers="6",
        decode_cache_dir=cache, features_cache_dir=cache, disable_tqdm=True,
    )  # fmt: skip
    trainer = EmotionTrainer(*args, corpus=corpus)
    encoded = trainer.prepare()
    fit, valid, test, _, _ = trainer.split_rows(encoded)
    fitted = trainer.fit(encoded, fit, valid)
    EmotionRecognizer(trainer.export(fitted, encoded), encoded.feature_extractor).save_pretrained(folder)
    return trainer, encoded, fitted, test, folder


def _clips(encoded, rows):
    return [load_audio(path, RATE) for path in encoded.dataset.select(rows)["path"]]


def _probabilities(recognizer, waveforms):
    return np.array([[p.scores[x] for x in recognizer.labels] for p in recognizer.predict_waveforms(waveforms)])


def test_the_normaliser_maps_each_speaker_onto_the_reference_voice():
    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c"], 40)
    x = rng.normal(size=(120, 2, 3)) * np.repeat([1.0, 3.0, 0.5], 40)[:, None, None]
    x += np.repeat([0.0, 5.0, -2.0], 40)[:, None, None]
    normalizer = SpeakerNormalizer.fit(x, speakers, prior_clips=0.0)
    means = [x[speakers == s].reshape(40, -1).mean(0) for s in "abc"]
    np.testing.assert_allclose(normalizer.mean, np.mean(means, axis=0), atol=1e-5)
    mapped = normalizer.normalize(x, speakers)
    for s in "abc":  # every speaker now has the reference mean and spread
        rows = mapped[speakers == s].reshape(40, -1)
        np.testing.assert_allclose(rows.mean(0), normalizer.mean, atol=1e-4)
        np.testing.assert_allclose(rows.std(0), normalizer.spread, rtol=1e-3)
    # A speaker heard in few clips moves towards their own voice only as far as the evidence goes.
    one = x[speakers == "b"][:1]
    mean, _ = SpeakerNormalizer(normalizer.mean, normalizer.spread, prior_clips=2.0).estimate(one)
    np.testing.assert_allclose(mean, (one.reshape(-1) + 2 * normalizer.mean) / 3, rtol=1e-5)
    with pytest.raises(ValueError, match="two clips"):
        SpeakerNormalizer.fit(x[:1], speakers[:1])


def test_a_profile_blends_what_it_heard_and_switches_on_after_enough_speech():
    reference_mean, reference_spread = np.zeros(4), np.ones(4)
    profile = SpeakerProfile(reference_mean, reference_spread, prior_clips=2.0, min_seconds=3.0)
    heard = np.full((1, 2, 2), 4.0)
    profile.add(heard, 2.0)
    assert not profile.active and profile.describe() == {"adapted": False, "speech_seconds": 2.0, "utterances": 1}
    np.testing.assert_array_equal(profile.estimate()[0], reference_mean)
    profile.add(heard, 1.5)
    mean, spread = profile.estimate()
    assert profile.active
    np.testing.assert_allclose(mean, np.full(4, 8.0 / 4))  # two clips of 4.0 and two of the reference's 0.0
    expected = blend_speaker(np.full(4, 8.0), np.full(4, 32.0), 2, reference_mean, reference_spread, 2.0)
    np.testing.assert_allclose(spread, expected[1])
    profile.reset()
    assert profile.clips == 0 and not profile.active
    with pytest.raises(ValueError, match="expected 4 statistics"):
        profile.add(np.zeros((1, 3)), 1.0)


def test_the_saved_model_adapts_from_audio_as_the_head_did_from_the_cache(adaptive):
    trainer, encoded, fitted, test, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    assert recognizer.is_speaker_adaptive and recognizer.model.config.speaker_adaptive
    actor_8 = test[encoded.speakers[test] == "8"]
    clips = _clips(encoded, actor_8)
    per_clip = torch.softmax(torch.as_tensor(trainer.logits(fitted, encoded, actor_8)), -1).numpy()
    np.testing.assert_allclose(_probabilities(recognizer, clips), per_clip, atol=2e-4)  # not adapted: as heard

    adapted_logits = trainer.adapted_logits(fitted, encoded, actor_8)  # mapped from all of actor 8's clips
    expected = torch.softmax(torch.as_tensor(adapted_logits), -1).numpy()
    recognizer.adapt_to_speaker(clips)
    adapted = _probabilities(recognizer, clips)
    np.testing.assert_allclose(adapted, expected, atol=2e-4)
    assert not np.allclose(adapted, per_clip, atol=1e-3)

    again = folder.parent / "adapted-to-8"
    recognizer.save_pretrained(again)  # the adaptation is saved with the model
    np.testing.assert_allclose(_probabilities(EmotionRecognizer.from_pretrained(again), clips), adapted, atol=1e-5)
    recognizer.reset_speaker()
    np.testing.assert_allclose(_probabilities(recognizer, clips), per_clip, atol=2e-4)

    # The same mapping for one utterance at a time, from a running profile, without touching the model's own.
    profile = recognizer.speaker_profile(min_seconds=0.0)
    profile.add(recognizer.statistics(clips), [c.size / RATE for c in clips])
    streamed = recognizer.classify_statistics(recognizer.statistics(clips), profile)
    np.testing.assert_allclose(
        np.array([[p.scores[x] for x in recognizer.labels] for p in streamed]), adapted, atol=2e-4
    )
    np.testing.assert_allclose(_probabilities(recognizer, clips), per_clip, atol=2e-4)


def test_adapting_needs_an_adaptive_model_and_usable_clips(adaptive, trained, tmp_path):
    _, encoded, _, test, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    with pytest.raises(SerHfError, match="no clips"):
        recognizer.adapt_to_speaker([])
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    with pytest.raises(SerHfError, match="empty.wav"):
        recognizer.adapt_to_speaker([_clips(encoded, test[:1])[0], str(bad)])
    with pytest.raises(ValueError, match="means and spreads"):
        recognizer.model.set_speaker(torch.zeros(3), torch.ones(3))
    plain = EmotionRecognizer(trained.recognizer.model, trained.recognizer.feature_extractor)
    plain.model.config.speaker_adaptive = False
    try:
        with pytest.raises(SerHfError, match="not trained to adapt"):
            plain.adapt_to_speaker(np.zeros(RATE, np.float32) + 0.01)
    finally:
        plain.model.config.speaker_adaptive = True


def test_without_speaker_adaptation_the_model_does_not_adapt(tiny_whisper, corpus, tmp_path):
    cache = str(tmp_path / "cache")
    args = arguments(
        model_name_or_path=tiny_whisper, output_dir=str(tmp_path / "out"), test_speakers="8", eval_speakers="7",
        speaker_adaptive=False, decode_cache_dir=cache, features_cache_dir=cache, disable_tqdm=True,
    )  # fmt: skip
    outcome = EmotionTrainer(*args, corpus=corpus).train()
    assert "test_adapted_ua" not in outcome.test_metrics and outcome.adapted_report is None
    model = outcome.recognizer.model
    assert not model.config.speaker_adaptive and not hasattr(model, "speaker_mean")
    assert "adapts to a speaker" not in (tmp_path / "out" / "README.md").read_text()


def test_the_command_line_adapts_before_predicting(adaptive, corpus_dir, capsys):
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


def test_onnx_export_keeps_the_adapted_speaker(adaptive, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    _, encoded, _, test, folder = adaptive
    recognizer = EmotionRecognizer.from_pretrained(folder)
    clips = _clips(encoded, test[encoded.speakers[test] == "7"])
    expected = _probabilities(recognizer.adapt_to_speaker(clips), clips)
    exported = EmotionRecognizer.from_pretrained(recognizer.export_onnx(tmp_path / "onnx"))
    np.testing.assert_allclose(_probabilities(exported, clips), expected, atol=2e-4)
    with pytest.raises(SerHfError, match="ONNX export keeps the speaker"):
        exported.adapt_to_speaker(clips)
