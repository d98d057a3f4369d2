"""Emotion over time in fixed windows (``segmentation="windows"``): long files read in blocks, live streams,
silence and smoothing. The default, one segment per utterance, is tested in test_conversation.py."""

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import RATE, synth_clip
from hypothesis import given
from hypothesis import strategies as st

from ser_hf import EmotionRecognizer, Segment, audio
from ser_hf.timeline import SILENCE, iter_smooth, smooth


@pytest.fixture(scope="module")
def recognizer(trained):
    return EmotionRecognizer.from_pretrained(str(trained.output_dir))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """8 s: angry 2 s, silence 2 s, sad 2 s, angry 2 s (emotions the tiny model learned from pitch)."""
    parts = [
        synth_clip(5, 7, 1, seconds=2.0),
        np.zeros(2 * RATE, np.float32),
        synth_clip(4, 7, 1, seconds=2.0),
        synth_clip(5, 8, 2, seconds=2.0),
    ]
    path = tmp_path_factory.mktemp("long") / "call.wav"
    sf.write(path, np.concatenate(parts), RATE)
    return path


def test_timeline_covers_the_file_and_marks_silence(recognizer, recording):
    segments = recognizer.predict_timeline(recording, segmentation="windows", window_seconds=1.0, hop_seconds=0.5)
    assert all(isinstance(s, Segment) for s in segments)
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(8.0)
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    inside = {round(s.start, 1): s for s in segments}
    assert inside[2.5].silent and inside[2.5].label == SILENCE and inside[2.5].scores == {}
    assert inside[0.5].label == "angry" and inside[6.5].label == "angry"
    assert inside[4.5].label == "sad"
    voiced = [s for s in segments if not s.silent]
    assert all(sum(s.scores.values()) == pytest.approx(1, abs=1e-5) for s in voiced)


def test_stream_in_random_chunks_equals_the_file_timeline(recognizer, recording):
    offline = recognizer.predict_timeline(recording, segmentation="windows", window_seconds=1.0, hop_seconds=0.5)
    samples, _ = sf.read(recording, dtype="float32")
    stream = recognizer.stream(segmentation="windows", window_seconds=1.0, hop_seconds=0.5)
    rng = np.random.default_rng(0)
    live, position = [], 0
    while position < samples.size:
        size = int(rng.integers(100, 5000))
        got = stream.push(samples[position : position + size])
        position += size
        # latency: a segment is returned as soon as its window is complete, never later
        for segment in got:
            assert segment.end * RATE <= position
            assert position - segment.end * RATE < 5000 + 0.5 * RATE
        live.extend(got)
    live.extend(stream.flush())
    assert [(s.start, s.end, s.label) for s in live] == [(s.start, s.end, s.label) for s in offline]
    for a, b in zip(live, offline, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_stream_resamples_its_input(recognizer):
    clip = synth_clip(5, 7, 1, seconds=3.0)
    stream = recognizer.stream(sampling_rate=44_100, segmentation="windows", window_seconds=1.0, hop_seconds=1.0)
    segments = stream.push(soxr.resample(clip, RATE, 44_100)) + stream.flush()
    assert len(segments) == 3 and segments[-1].end == pytest.approx(3.0, abs=0.01)
    assert [s.label for s in segments].count("angry") >= 2


def test_short_file_gives_one_window(recognizer, clip_path):
    segments = recognizer.predict_timeline(clip_path, segmentation="windows", window_seconds=3.0)
    assert len(segments) == 1 and segments[0].start == 0.0


def test_smoothing_averages_neighbours():
    def seg(t, p):
        return Segment(t, t + 1, "a" if p > 0.5 else "b", max(p, 1 - p), {"a": p, "b": 1 - p})

    raw = [seg(0, 0.9), seg(1, 0.2), seg(2, 0.9), Segment(3, 4, SILENCE, 0.0, {}, silent=True)]
    smoothed = smooth(raw, 3)
    assert smoothed[1].label == "a" and smoothed[1].scores["a"] == pytest.approx((0.9 + 0.2 + 0.9) / 3)
    assert smoothed[3].silent and smoothed[0].scores["a"] == pytest.approx((0.9 + 0.2) / 2)


def test_stream_refuses_nan(recognizer):
    from ser_hf import InvalidSamplesError

    with pytest.raises(InvalidSamplesError, match="NaN"):
        recognizer.stream(segmentation="windows").push(np.array([0.1, np.nan], np.float32))


@given(
    st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=0, max_size=12),
    st.integers(1, 6),
)
def test_streamed_smoothing_equals_the_definition(values, width):
    def seg(t, p):
        if p is None:
            return Segment(t, t + 1, SILENCE, 0.0, {}, silent=True)
        return Segment(t, t + 1, "a" if p >= 0.5 else "b", max(p, 1 - p), {"a": p, "b": 1 - p})

    raw = [seg(t, p) for t, p in enumerate(values)]
    got = list(iter_smooth(iter(raw), width))
    half = width // 2 if width > 1 else 0
    assert len(got) == len(raw)
    for i, (segment, out) in enumerate(zip(raw, got)):
        if segment.silent:
            assert out == segment
            continue
        around = [s.scores["a"] for s in raw[max(0, i - half) : i + half + 1] if not s.silent]
        assert out.scores["a"] == pytest.approx(np.mean(around))
        assert out.start == segment.start


def test_cli_timeline_prints_the_segments(trained, recognizer, recording, capsys):
    from ser_hf.cli import main

    model = str(trained.output_dir)
    args = ["predict", "--model", model, "--timeline", str(recording), "--window", "1", "--hop", "0.5"]
    assert main([*args, "--segmentation", "windows", "--smoothing", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = recognizer.predict_timeline(
        recording, segmentation="windows", window_seconds=1.0, hop_seconds=0.5, smoothing=3
    )
    assert [line["file"] for line in lines] == [str(recording)] * len(expected)
    assert [(line["start"], line["label"], line["silent"]) for line in lines] == [
        (round(s.start, 3), s.label, s.silent) for s in expected
    ]


def test_the_feature_extractor_prepares_clips_as_training_did(recognizer):
    """Silence trimmed and loudness set by the saved feature extractor: predict sees what training saw."""
    from ser_hf.feature_extraction import prepare_clip

    clip = synth_clip(5, 7, 1, seconds=1.0)
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    padded = np.concatenate([quiet, clip, quiet])
    assert recognizer.trim_silence and recognizer.feature_extractor.loudness_db == -30.0  # ser-hf's defaults
    prepared = recognizer.prepare(padded)
    expected = prepare_clip(padded, RATE, trim=True, loudness_db=-30.0, threshold_db=40.0)
    assert prepared.size == audio.trim_silence(padded, RATE).size < padded.size
    np.testing.assert_array_equal(prepared, expected)
    raw = recognizer.feature_extractor.base([prepared], sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        probabilities = torch.softmax(recognizer.model(**raw).logits, -1)[0].numpy()
    scores = recognizer.predict(padded).scores
    assert [scores[label] for label in recognizer.labels] == pytest.approx(probabilities.tolist(), abs=1e-6)


def test_tail_after_the_last_full_window_is_a_full_window(recognizer, recording, tmp_path):
    """8.5 s with 3 s windows every 1 s: the last grid window ends at 8 s, so flush adds 5.5-8.5 s."""
    samples, _ = sf.read(recording, dtype="float32")
    path = tmp_path / "longer.wav"
    sf.write(path, np.concatenate([samples, samples[: RATE // 2]]), RATE)
    segments = recognizer.predict_timeline(
        path, segmentation="windows", window_seconds=3.0, hop_seconds=1.0, silence_threshold_db=None
    )
    tail = segments[-1]
    assert (tail.start, tail.end) == (pytest.approx(5.5), pytest.approx(8.5))
    whole, _ = sf.read(path, dtype="float32")
    expected = recognizer.predict_waveforms([whole[int(5.5 * RATE) :]])[0]
    assert tail.label == expected.label and tail.score == pytest.approx(expected.score, abs=1e-5)
