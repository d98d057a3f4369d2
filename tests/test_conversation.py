"""Following a conversation: utterances found by the voice activity detector, one emotion each, live and from
files, speaker adaptation, honest summaries, and bad input (silence, noise, clipping, hours of audio)."""

from __future__ import annotations

import itertools
import json
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import RATE, synth_clip

from ser_hf import EmotionRecognizer, InvalidSamplesError, Segment, SerHfError
from ser_hf.conversation import Summary, UtteranceStream, pool_windows, summarize
from ser_hf.vad import DEFAULT_MIN_PAUSE, UtteranceSegmenter, VoiceDetector, voiced_regions

#: (emotion code, actor, repetition, seconds) of the three utterances of `conversation`, and their labels.
PARTS = ((5, 7, 1, 1.6), (4, 8, 2, 1.4), (8, 7, 1, 1.5))
LABELS = ["angry", "sad", "surprised"]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def build_conversation() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """0.5 s silence, then three utterances of different emotions with pauses of 0.8 and 1.0 s."""
    pieces, spans, t = [silence(0.5)], [], 0.5
    for (emotion, actor, repetition, seconds), pause in zip(PARTS, (0.8, 1.0, 0.7)):
        clip = synth_clip(emotion, actor, repetition, seconds=seconds)
        pieces += [clip, silence(pause)]
        spans.append((t, t + seconds))
        t += seconds + pause
    return np.concatenate(pieces), spans


@pytest.fixture(scope="module")
def recognizer(trained):
    return EmotionRecognizer.from_pretrained(str(trained.output_dir))


@pytest.fixture(scope="module")
def conversation():
    return build_conversation()


@pytest.fixture(scope="module")
def conversation_file(tmp_path_factory, conversation):
    path = tmp_path_factory.mktemp("conversation") / "three.wav"
    sf.write(path, conversation[0], RATE)
    return path


def chunks_of(samples: np.ndarray, seed: int, low: int = 100, high: int = 5000):
    rng = np.random.default_rng(seed)
    position = 0
    while position < samples.size:
        size = int(rng.integers(low, high))
        yield samples[position : position + size]
        position += size


# ------------------------------------------------------------------ the VAD
def test_voiced_regions_are_the_utterances(conversation):
    samples, spans = conversation
    regions = voiced_regions(samples, RATE)
    assert len(regions) == len(spans)
    for (start, end), (a, b) in zip(regions, spans):
        assert a - 0.15 <= start <= a + 0.05 and b - 0.05 <= end <= b + 0.15


def test_segmenter_in_random_chunks_equals_the_whole_signal(conversation):
    samples, _ = conversation
    whole = UtteranceSegmenter(RATE)
    expected = whole.push(samples) + whole.flush()
    live = UtteranceSegmenter(RATE)
    got = [u for chunk in chunks_of(samples, 3) for u in live.push(chunk)] + live.flush()
    assert got == expected and len(got) == 3


def test_short_pauses_stay_inside_and_clicks_are_dropped():
    word = synth_clip(5, 7, 1, seconds=0.6)
    click = synth_clip(5, 7, 2, seconds=0.06)
    samples = np.concatenate([silence(0.3), word, silence(0.15), word, silence(1.0), click, silence(1.0)])
    regions = voiced_regions(samples, RATE)
    assert len(regions) == 1 and regions[0][1] < 2.0  # one utterance over the short pause; the click dropped
    assert len(voiced_regions(samples, RATE, min_pause=0.1)) == 2


def test_long_speech_is_cut_at_max_utterance():
    samples = np.concatenate([synth_clip(5, 7, 1, seconds=5.0), silence(1.0)])
    regions = voiced_regions(samples, RATE, max_utterance=2.0)
    assert len(regions) == 3 and all(end - start <= 2.0 + 1e-6 for start, end in regions)
    assert all(b[0] == pytest.approx(a[1]) for a, b in itertools.pairwise(regions))  # contiguous


def test_the_detector_resamples_to_a_rate_its_vad_takes(conversation):
    samples, spans = conversation
    resampled = soxr.resample(samples, RATE, 22_050)
    detector = VoiceDetector(22_050)
    assert detector.vad_rate == 16_000 and detector.frame == round(480 * 22_050 / 16_000)
    regions = voiced_regions(resampled, 22_050)
    assert [round(a) for a, _ in regions] == [round(a) for a, _ in spans]


def test_without_webrtcvad_a_level_gate_finds_speech(conversation, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    detector = VoiceDetector(RATE)
    assert detector.backend == "energy" and "webrtcvad-wheels" in caplog.text
    samples, spans = conversation
    regions = voiced_regions(samples, RATE)
    assert len(regions) == len(spans)


def test_the_vad_never_hears_speech_below_the_silence_threshold():
    speech = np.concatenate([synth_clip(5, 7, 1, seconds=2.0), silence(0.5)])
    assert len(voiced_regions(speech * 10 ** (-10 / 20), RATE)) == 1  # about -22 dBFS
    assert voiced_regions(speech * 10 ** (-10 / 20), RATE, threshold_db=-20.0) == []
    whisper = speech * 10 ** (-60 / 20)  # about -72 dBFS: under the default threshold
    assert voiced_regions(whisper, RATE) == []


# --------------------------------------------------------- the utterances
def test_the_default_timeline_has_one_segment_per_utterance(recognizer, conversation_file, conversation):
    segments = recognizer.predict_timeline(conversation_file)
    _, spans = conversation
    assert [s.label for s in segments] == LABELS
    assert all(s.final and not s.silent and s.voiced > 1.0 for s in segments)
    for s, (a, b) in zip(segments, spans):
        assert s.start <= a + 0.05 and s.end >= b - 0.05 and s.end - s.start < b - a + 0.3
        assert sum(s.scores.values()) == pytest.approx(1, abs=1e-5)
    assert segments[0].adaptation == "online"  # the tiny model adapts to speakers: on by default


def test_each_utterance_is_predicted_on_exactly_its_audio(recognizer, conversation):
    samples, _ = conversation
    for segment in recognizer.predict_timeline([samples], adapt="off"):
        audio = samples[round(segment.start * RATE) : round(segment.end * RATE)]
        expected = recognizer.predict(audio)
        assert segment.label == expected.label
        assert segment.scores == pytest.approx(expected.scores, abs=1e-5)


def test_pooled_window_statistics_are_those_of_all_the_frames():
    rng = np.random.default_rng(0)
    frames = rng.normal(3.0, 2.0, size=(37, 2, 5))  # (frames, layers, hidden)
    cuts = [(0, 10), (10, 30), (30, 37)]

    def stats(x):
        return np.concatenate([x.mean(0), x.std(0)], axis=-1)

    pooled = pool_windows([stats(frames[a:b]) for a, b in cuts], [b - a for a, b in cuts], statistics=True)
    np.testing.assert_allclose(pooled, stats(frames), rtol=1e-5)
    averaged = pool_windows([np.array([1.0, 0.0]), np.array([0.0, 1.0])], [3, 1], statistics=False)
    np.testing.assert_allclose(averaged, [0.75, 0.25])


def test_an_utterance_longer_than_the_window_pools_its_windows(recognizer):
    clip = synth_clip(5, 7, 1, seconds=2.5)
    samples = np.concatenate([silence(0.4), clip, silence(0.6)])
    [segment] = recognizer.predict_timeline([samples], adapt="off", window_seconds=1.0)
    audio = samples[round(segment.start * RATE) : round(segment.end * RATE)]
    windows = [audio[i : i + RATE] for i in range(0, audio.size, RATE)]
    assert len(windows) == 3
    stats, frames = recognizer.statistics_and_frames(windows)
    expected = recognizer.classify_statistics(pool_windows(list(stats), list(frames), statistics=True)[None])[0]
    assert segment.label == expected.label == "angry"
    assert segment.scores == pytest.approx(expected.scores, abs=1e-5)


def test_without_a_statistics_head_windows_average_their_probabilities(recognizer, monkeypatch):
    monkeypatch.setattr(type(recognizer), "has_statistics_head", property(lambda self: False))
    samples = np.concatenate([silence(0.4), synth_clip(4, 8, 2, seconds=2.5), silence(0.6)])
    [segment] = recognizer.predict_timeline([samples], adapt="off", window_seconds=1.0)
    audio = samples[round(segment.start * RATE) : round(segment.end * RATE)]
    windows = [audio[i : i + RATE] for i in range(0, audio.size, RATE)]
    predictions = recognizer.predict_waveforms(windows)
    weights = np.array([w.size for w in windows], float)
    for label in recognizer.labels:
        expected = np.dot(weights, [p.scores[label] for p in predictions]) / weights.sum()
        assert segment.scores[label] == pytest.approx(expected, abs=1e-5)


def test_stream_in_random_chunks_equals_the_file_timeline(recognizer, conversation_file):
    offline = recognizer.predict_timeline(conversation_file)
    samples, _ = sf.read(conversation_file, dtype="float32")
    stream = recognizer.stream()
    finals, position = [], 0
    for chunk in chunks_of(samples, 0):
        position += chunk.size
        for segment in stream.push(chunk):
            assert segment.end * RATE <= position
            if segment.final:  # an utterance's emotion comes once the pause after it is heard, not later
                assert position - segment.end * RATE < (DEFAULT_MIN_PAUSE + 0.1) * RATE + 5000
                finals.append(segment)
    finals += stream.flush()
    assert [(s.start, s.end, s.label, s.adapted) for s in finals] == [
        (s.start, s.end, s.label, s.adapted) for s in offline
    ]
    for a, b in zip(finals, offline, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_provisional_labels_come_every_hop_while_the_speaker_talks_on(recognizer):
    samples = np.concatenate([silence(0.3), synth_clip(5, 7, 1, seconds=3.5), silence(1.0)])
    stream = recognizer.stream(hop_seconds=1.0)
    got = [s for i in range(0, samples.size, 1600) for s in stream.push(samples[i : i + 1600])] + stream.flush()
    provisional = [s for s in got if not s.final]
    assert len(provisional) == 3 and all(s.label == "angry" for s in provisional)
    # due every second of the utterance, given as soon as the chunk that completes the second is decided
    assert [s.end - s.start for s in provisional] == pytest.approx([1.0, 2.0, 3.0], abs=0.1 + 1e-6)
    assert got[-1].final and got[-1].label == "angry" and [s.final for s in got].count(True) == 1


def test_stream_resamples_its_input(recognizer, conversation):
    samples, _ = conversation
    stream = recognizer.stream(sampling_rate=44_100, adapt="off")
    pushed = soxr.resample(samples, RATE, 44_100)
    segments = [s for c in chunks_of(pushed, 1, 2000, 9000) for s in stream.push(c) if s.final] + stream.flush()
    assert [s.label for s in segments] == LABELS


def test_stream_refuses_nan(recognizer):
    with pytest.raises(InvalidSamplesError, match="NaN"):
        recognizer.stream().push(np.array([0.1, np.nan], np.float32))


def test_windows_stay_available_as_an_option(recognizer, conversation_file):
    segments = recognizer.predict_timeline(conversation_file, segmentation="windows", window_seconds=1.0)
    assert [s.start for s in segments] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 6.5]  # the tail: a full window
    assert all(s.end - s.start == pytest.approx(1.0) and s.voiced is None for s in segments)
    with pytest.raises(ValueError, match="segmentation"):
        recognizer.predict_timeline(conversation_file, segmentation="sentences")
    with pytest.raises(ValueError, match="smoothing"):
        recognizer.predict_timeline(conversation_file, smoothing=3)


# --------------------------------------------------------- speaker adaptation
def test_online_adaptation_starts_once_enough_speech_was_heard(recognizer, conversation):
    samples, _ = conversation
    speaker = recognizer.speaker_profile(min_seconds=2.0)
    segments = recognizer.predict_timeline([samples], adapt="online", speaker=speaker)
    assert [s.adapted for s in segments] == [False, True, True]
    voiced = np.cumsum([s.voiced for s in segments])
    assert segments[2].adapted_seconds == pytest.approx(voiced[2], abs=0.02)
    assert speaker.clips == 3 and speaker.seconds == pytest.approx(voiced[-1], abs=0.02)
    assert all(s.adaptation == "online" for s in segments)


def test_recording_adaptation_labels_every_utterance_with_the_whole_voice(recognizer, conversation):
    samples, _ = conversation
    segments = recognizer.predict_timeline([samples], adapt="recording")
    heard = UtteranceStream(recognizer, adapt="off", provisional=False)
    utterances = heard.push_utterances(samples) + heard.flush_utterances()
    speaker = recognizer.speaker_profile()
    speaker.add(np.stack([u.statistics for u in utterances]), [u.voiced for u in utterances])
    expected = recognizer.classify_statistics(np.stack([u.statistics for u in utterances]), speaker)
    assert speaker.active and all(s.adapted and s.adaptation == "recording" for s in segments)
    assert {s.adapted_seconds for s in segments} == {round(speaker.seconds, 2)}
    assert [s.label for s in segments] == [p.label for p in expected]


def test_reset_forgets_the_speaker(recognizer, conversation):
    samples, _ = conversation
    stream = recognizer.stream(speaker=recognizer.speaker_profile(min_seconds=2.0), provisional=False)
    first = [s for s in stream.push(samples) if s.final]
    assert first[-1].adapted and stream.describe()["adapted"]
    stream.reset()
    assert stream.speaker.seconds == 0 and not stream.describe()["adapted"]
    again = stream.push(samples) + stream.flush()
    assert not again[0].adapted and again[-1].adapted


def test_models_that_cannot_adapt_say_so(recognizer, conversation, monkeypatch):
    monkeypatch.setattr(type(recognizer), "is_speaker_adaptive", property(lambda self: False))
    samples, _ = conversation
    segments = recognizer.predict_timeline([samples])
    assert {s.adaptation for s in segments} == {"unsupported"} and not any(s.adapted for s in segments)
    for adapt in ("online", "recording"):
        with pytest.raises(SerHfError, match="adapt"):
            recognizer.predict_timeline([samples], adapt=adapt)


# ------------------------------------------------------------------ summaries
def _utterance(label: str, voiced: float, *, final: bool = True) -> Segment:
    return Segment(0.0, voiced + 0.2, label, 0.9, {"angry": 0.5, "sad": 0.3, "happy": 0.2}, final=final, voiced=voiced)


def test_summary_says_mostly_only_for_a_clear_majority_of_the_voiced_time():
    summary = summarize([_utterance("angry", 6.0), _utterance("sad", 2.0), _utterance("happy", 1.0)])
    assert summary.majority == "angry" and summary.describe().startswith("mostly angry (67% of 9.0 s of speech")
    mixed = summarize([_utterance("angry", 4.0), _utterance("sad", 3.0), _utterance("happy", 3.0)])
    assert mixed.majority is None
    assert mixed.describe() == "mixed: angry 40%, sad 30%, happy 30% (of 10.0 s of speech in 3 utterances)"
    half = summarize([_utterance("angry", 2.0), _utterance("sad", 2.0)])
    assert half.majority is None and half.describe(markdown=True).startswith("mixed: **angry** 50%, **sad** 50%")


def test_summary_weighs_utterances_by_voiced_time_not_by_count():
    summary = summarize([_utterance("angry", 5.0), *[_utterance("sad", 1.0) for _ in range(3)]])
    assert summary.majority == "angry" and summary.shares == pytest.approx({"angry": 0.625, "sad": 0.375})
    assert summarize([_utterance("sad", 9.0, final=False)]) is None  # provisional labels are not the summary
    assert summarize([]) is None


def test_seven_emotions_are_mixed_not_mostly_one():
    segments = [_utterance(label, 2.0 + i % 2) for i, label in enumerate(["angry", "sad", "happy"] * 2 + ["angry"])]
    summary = summarize(segments)
    assert isinstance(summary, Summary) and summary.majority is None and summary.describe().startswith("mixed")


# ------------------------------------------------------------------ bad input
def test_silence_only_gives_no_utterances(recognizer):
    assert recognizer.predict_timeline([silence(5.0)]) == []
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(5 * RATE)).astype(np.float32)  # -80 dBFS
    stream = recognizer.stream()
    assert stream.push(hiss) + stream.flush() == [] and not stream.speaking


def test_noise_only_is_handled(recognizer):
    noise = (0.05 * np.random.default_rng(1).standard_normal(12 * RATE)).astype(np.float32)
    segments = recognizer.predict_timeline([noise], max_utterance=5.0)
    assert all(s.end - s.start <= 5.0 + 1e-6 and s.label in recognizer.labels for s in segments)
    assert all(sum(s.scores.values()) == pytest.approx(1, abs=1e-5) for s in segments)


def test_silero_hears_no_speech_in_noise():
    pytest.importorskip("silero_vad")
    noise = (0.05 * np.random.default_rng(1).standard_normal(4 * RATE)).astype(np.float32)
    assert voiced_regions(noise, RATE, vad="silero") == []
    assert len(voiced_regions(noise, RATE)) >= 1  # WebRTC's detector takes steady noise for speech


def test_clipped_speech_is_recognised(recognizer):
    loud = np.concatenate([silence(0.5), synth_clip(5, 7, 1, seconds=1.5) * 30, silence(0.8)])
    for samples in (np.clip(loud, -1, 1), loud):  # clipped by the recorder, or float samples beyond full scale
        [segment] = recognizer.predict_timeline([samples.astype(np.float32)], adapt="off")
        assert segment.label == "angry"


def test_two_hours_stream_block_by_block_in_bounded_memory(recognizer):
    """A 2-hour recording, generated block by block (never whole): a short utterance every minute."""
    rate, block = RATE, 30 * RATE
    speech = synth_clip(5, 7, 1, seconds=0.8)

    def blocks(minutes: float):
        for b in range(int(minutes * 60 * rate) // block):
            out = np.zeros(block, np.float32)
            if b % 2 == 0:
                out[rate : rate + speech.size] = speech
            yield out

    def peak(minutes: float) -> tuple[int, int]:
        tracemalloc.start()
        count = sum(1 for _ in recognizer.iter_timeline(blocks(minutes), adapt="off"))
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return count, size

    short_count, short_peak = peak(10)
    count, long_peak = peak(120)
    assert (short_count, count) == (10, 120)
    assert long_peak < 1.5 * short_peak + 2**20 and long_peak < 16 * 2**20  # the file alone would be 460 MB


# ------------------------------------------------------------------ the CLI
def test_cli_timeline_prints_one_line_per_utterance(trained, recognizer, conversation_file, capsys):
    from ser_hf.cli import main

    assert main(["predict", "--model", str(trained.output_dir), "--timeline", str(conversation_file)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == LABELS
    assert all(line["final"] and line["adaptation"] == "online" and line["voiced"] > 1 for line in lines)
    assert [line["adapted"] for line in lines] == [s.adapted for s in recognizer.predict_timeline(conversation_file)]
    args = ["predict", "--model", str(trained.output_dir), "--timeline", str(conversation_file)]
    assert main([*args, "--adapt", "recording"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {line["adaptation"] for line in lines} == {"recording"} and lines[0]["adapted_seconds"] > 4
    assert main([*args, "--segmentation", "windows", "--adapt", "online"]) == 2
    assert "--adapt and --min-pause follow utterances" in capsys.readouterr().err


def test_listen_prints_provisional_and_final_labels(trained, monkeypatch, capsys):
    from test_live import MIC_RATE, fake_sounddevice

    from ser_hf.cli import main

    speech = np.concatenate([silence(0.3), synth_clip(5, 7, 1, seconds=2.5), silence(1.2)])
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(soxr.resample(speech, RATE, MIC_RATE)))
    assert main(["listen", "--model", str(trained.output_dir), "--duration", "4"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["final"] for line in lines] == [False, False, True]
    assert lines[-1]["label"] == "angry" and lines[-1]["adaptation"] == "online"
    assert "an emotion per utterance when you pause" in captured.err
