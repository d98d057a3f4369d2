"""The frozen CNN front end run once per clip (ser_hf.front_end): same outputs, cached, used by training."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import RATE, synth_clip
from datasets import Dataset
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from ser_hf.features import AudioCollator, min_input_samples
from ser_hf.front_end import (
    FRONT_END_COLUMN,
    FrontEndCollator,
    add_front_end_features,
    front_end_bypassed,
    front_end_to_cache,
    frozen_front_end,
    output_frames,
)


def _model(path: str):
    torch.manual_seed(0)
    model = AutoModelForAudioClassification.from_pretrained(path, num_labels=4).eval()
    model.freeze_feature_encoder()
    return model, AutoFeatureExtractor.from_pretrained(path)


def _decoded(seconds: list[float]) -> Dataset:
    clips = [synth_clip(i % 8 + 1, i + 1, 1, seconds=s) for i, s in enumerate(seconds)]
    return Dataset.from_dict(
        {"waveform": clips, "length": [c.size for c in clips], "label": [i % 4 for i in range(len(clips))]}
    ).with_format("numpy")


def _cached(model, extractor, decoded, tmp_path, **kwargs):
    min_samples = min_input_samples(model.config)
    with_features = add_front_end_features(
        decoded, model, extractor, audio_key="test-audio", min_samples=min_samples, cache_dir=tmp_path, **kwargs
    )
    frames_for = functools.partial(output_frames, model)
    return with_features.with_format("numpy"), FrontEndCollator(
        extractor, min_samples=min_samples, frames_for=frames_for
    )


def _logits(model, batch, front_end=None):
    with torch.no_grad(), front_end_bypassed(front_end):
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_cached_features_give_the_logits_of_a_padded_waveform_batch(tiny_hubert, tmp_path):
    """Layer-norm front end with an attention mask: cached features, padded, equal running the front end."""
    model, extractor = _model(tiny_hubert)
    decoded = _decoded([1.3, 2.0, 0.7])
    with_features, collator = _cached(model, extractor, decoded, tmp_path)
    rows = [with_features[i] for i in range(3)]
    from_waveforms = AudioCollator(extractor, min_samples=collator.min_samples)([dict(r) for r in decoded])
    from_cache = collator(rows)
    assert from_cache["input_values"].dim() == 3 and from_cache["input_values"].shape[1] == 32
    assert torch.equal(from_cache["attention_mask"].sum(-1), from_waveforms["attention_mask"].sum(-1))
    expected, got = _logits(model, from_waveforms), _logits(model, from_cache, frozen_front_end(model))
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert "forward" not in vars(frozen_front_end(model))  # the bypass is gone: waveforms run as before
    assert torch.allclose(_logits(model, from_waveforms), expected)


def test_group_norm_front_end_matches_one_clip_at_a_time(tiny_wav2vec2, tmp_path):
    """wav2vec2-base style (group norm, no mask): each clip's cached features are what it gives alone."""
    model, extractor = _model(tiny_wav2vec2)
    decoded = _decoded([1.5, 0.9])
    with_features, collator = _cached(model, extractor, decoded, tmp_path)
    assert "attention_mask" not in collator([with_features[0]])
    for i in range(2):
        alone = AudioCollator(extractor, min_samples=collator.min_samples)([dict(decoded[i])])
        expected = _logits(model, alone)
        got = _logits(model, collator([with_features[i]]), frozen_front_end(model))
        assert torch.allclose(got, expected, atol=1e-5)


def test_the_cache_is_reused_and_keyed_by_the_front_end_weights(tiny_hubert, tmp_path, monkeypatch):
    model, extractor = _model(tiny_hubert)
    decoded = _decoded([1.0, 1.2])
    first, _ = _cached(model, extractor, decoded, tmp_path)
    files = sorted(tmp_path.glob("front-end-*.arrow"))
    assert len(files) == 1

    import ser_hf.front_end as front_end

    def must_not_run(*args, **kwargs):
        raise AssertionError("the front end ran again on a warm cache")

    monkeypatch.setattr(front_end, "_encode_batch", must_not_run)
    again, _ = _cached(model, extractor, decoded, tmp_path)
    assert np.array_equal(again[0][FRONT_END_COLUMN], first[0][FRONT_END_COLUMN])
    monkeypatch.undo()
    with torch.no_grad():
        frozen_front_end(model).conv_layers[0].conv.weight.mul_(2)
    _cached(model, extractor, decoded, tmp_path)
    assert len(sorted(tmp_path.glob("front-end-*.arrow"))) == 2  # other weights, other features


def test_long_clips_are_cropped_in_frames_and_padding_follows_the_multiple(tiny_hubert, tmp_path):
    model, extractor = _model(tiny_hubert)
    with_features, collator = _cached(model, extractor, _decoded([2.0, 0.6]), tmp_path)
    rows = [with_features[0], with_features[1]]
    collator.max_samples, collator.random_crop = RATE, True
    batch = collator(rows)
    assert batch["input_values"].shape[2] == output_frames(model, RATE)
    assert batch["attention_mask"].sum(-1).tolist() == [RATE, rows[1]["length"]]
    collator.max_samples, collator.pad_to_multiple_of = None, RATE // 2
    padded = collator(rows)
    waveforms = AudioCollator(extractor, pad_to_multiple_of=RATE // 2)([{"waveform": r["waveform"]} for r in rows])
    assert padded["attention_mask"].shape == waveforms["attention_mask"].shape
    assert padded["input_values"].shape[2] == output_frames(model, waveforms["input_values"].shape[1])


def test_which_models_cache_their_front_end(tiny_hubert, tiny_whisper):
    model, _ = _model(tiny_hubert)
    assert front_end_to_cache(model, None) is frozen_front_end(model) is not None
    assert front_end_to_cache(model, None, torch_compile=True) is None
    assert front_end_to_cache(model, False) is None
    with pytest.raises(ValueError, match="torch_compile"):
        front_end_to_cache(model, True, torch_compile=True)
    model.base_model.feature_extractor._requires_grad = True
    for p in model.base_model.feature_extractor.parameters():
        p.requires_grad_(True)
    assert front_end_to_cache(model, None) is None  # trained front end: nothing to cache
    whisper = AutoModelForAudioClassification.from_pretrained(tiny_whisper, num_labels=4)
    assert front_end_to_cache(whisper, None) is None
    with pytest.raises(ValueError, match="no such front end|has none"):
        front_end_to_cache(whisper, True)


@pytest.mark.parametrize("cache", [None, False])
def test_training_runs_on_the_cached_front_end_by_default(corpus, tiny_hubert, tmp_path, cache):
    from ser_hf import EmotionRecognizer
    from ser_hf.training import finetune

    out, cache_dir = tmp_path / "out", tmp_path / "cache"
    outcome = finetune(
        tiny_hubert,
        corpus,
        output_dir=str(out),
        test_actors=[7, 8],
        eval_actors=[6],
        num_train_epochs=2,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        seed=0,
        decode_cache_dir=str(cache_dir),
        cache_front_end=cache,
        disable_tqdm=True,
    )
    cached = sorted(cache_dir.glob("front-end-*.arrow"))
    if cache is None:
        assert outcome.trainer.front_end is not None and len(cached) == 1
        assert FRONT_END_COLUMN in outcome.trainer.train_dataset.column_names
    else:
        assert outcome.trainer.front_end is None and cached == []
    assert 0.0 <= outcome.test_metrics["test_ua"] <= 1.0 and outcome.trainer.state.global_step > 0
    recognizer = EmotionRecognizer.from_pretrained(out)  # the saved model takes waveforms, as always
    clip = synth_clip(5, 7, 1)
    assert recognizer.predict(clip).label == outcome.recognizer.predict(clip).label
    assert "forward" not in vars(recognizer.model.base_model.feature_extractor)
