"""Messy data: a corpus with broken files trains on the rest with a report; bad `predict` input is named."""

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import RATE, ravdess_name, synth_clip, write_corpus

from ser_hf import AudioError, EmotionRecognizer, Prediction, SerHfError, load_ravdess
from ser_hf.cli import main as cli_main
from ser_hf.errors import (
    AudioTooLongError,
    CorpusError,
    EmptyAudioError,
    InvalidSamplesError,
    UnreadableAudioError,
)
from ser_hf.features import prepare_audio
from ser_hf.trainer import SKIP_REPORT, finetune

TWO_HOURS = 2 * 3600


def write_long_wav(path: Path, seconds: int, rate: int = 8_000) -> Path:
    """A valid 16-bit mono WAV of ``seconds``: a 1 s tone, then digital silence stored as a sparse file.

    The header and the data are a real ``seconds``-long recording (every sample decodes), but the
    silent part takes no disk blocks and no time to write.
    """
    data_bytes = seconds * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    tone = (synth_clip(5, 1, 1, rate=rate, seconds=1.0) * 32767).astype("<i2")
    with open(path, "wb") as f:
        f.write(header + tone.tobytes())
        f.truncate(len(header) + data_bytes)
    return path


def _name(actor: int, emotion: int, repetition: int = 2) -> str:
    return f"Actor_{actor:02d}/{ravdess_name(emotion, actor, repetition)}.wav"


#: The broken files (actor 1) and why they must be skipped.
BROKEN = {
    _name(1, 1): "unreadable",  # truncated WAV header
    _name(1, 2): "unreadable",  # a text file named .wav
    _name(1, 3): "empty",  # zero bytes
    _name(1, 4): "invalid samples",  # NaN samples
    _name(1, 5): "too long",  # two hours
}
#: Odd but usable files (actor 2): they must be decoded, resampled and downmixed.
SIX_CHANNELS, EIGHT_KHZ, TWENTY_FOUR_BIT = _name(2, 1), _name(2, 2), _name(2, 3)
CHANNEL_GAINS = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0], np.float32)  # their mean is 0.5


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory) -> Path:
    """32 good clips (actors 1-4, one repetition; some 44.1 kHz stereo) + 5 broken + 3 odd-but-usable files."""
    root = write_corpus(tmp_path_factory.mktemp("messy"), actors=(1, 2, 3, 4), repetitions=(1,))
    truncated = root / _name(1, 1)
    sf.write(truncated, synth_clip(1, 1, 2), RATE)
    truncated.write_bytes(truncated.read_bytes()[:30])
    (root / _name(1, 2)).write_text("this is a text file, not audio\n")
    (root / _name(1, 3)).write_bytes(b"")
    nan = synth_clip(4, 1, 2)
    nan[100:200] = np.nan
    sf.write(root / _name(1, 4), nan, RATE, subtype="FLOAT")
    write_long_wav(root / _name(1, 5), TWO_HOURS)

    clip48 = synth_clip(1, 2, 2, rate=48_000)
    sf.write(root / SIX_CHANNELS, clip48[:, None] * CHANNEL_GAINS, 48_000)
    sf.write(root / EIGHT_KHZ, synth_clip(2, 2, 2, rate=8_000), 8_000)
    sf.write(root / TWENTY_FOUR_BIT, synth_clip(3, 2, 2), RATE, subtype="PCM_24")
    return root


def test_the_two_hour_file_is_real(messy_dir):
    info = sf.info(messy_dir / _name(1, 5))
    assert info.duration == TWO_HOURS and info.channels == 1
    with sf.SoundFile(messy_dir / _name(1, 5)) as f:
        f.seek(TWO_HOURS * 8_000 - 100)
        assert f.read(1000).size == 100  # its last samples decode


def test_messy_corpus_decodes_the_usable_files_and_reports_the_rest(messy_dir, tmp_path, caplog):
    corpus = load_ravdess(messy_dir)
    assert len(corpus) == 40
    with caplog.at_level(logging.WARNING, logger="ser_hf"):
        decoded, skipped = prepare_audio(corpus, RATE, cache_dir=tmp_path)

    assert {str(Path(s.path).relative_to(messy_dir)): s.reason for s in skipped} == BROKEN
    problems = {str(Path(s.path).relative_to(messy_dir)): s.problem for s in skipped}
    assert "7200 s long" in problems[_name(1, 5)] and "max_clip_seconds" in problems[_name(1, 5)]
    assert "NaN" in problems[_name(1, 4)] and "0 bytes" in problems[_name(1, 3)]
    assert "not readable" in problems[_name(1, 1)] and "not readable" in problems[_name(1, 2)]
    for name in BROKEN:  # the log names every skipped file
        assert str(messy_dir / name) in caplog.text
    assert "5 of 40 clips are unusable" in caplog.text

    assert len(decoded) == 35  # every usable file is kept
    rows = {str(Path(p).relative_to(messy_dir)): i for i, p in enumerate(decoded["path"])}
    six = np.asarray(decoded[rows[SIX_CHANNELS]]["waveform"], np.float32)
    expected = soxr.resample(0.5 * synth_clip(1, 2, 2, rate=48_000), 48_000, RATE)  # mean of the channels
    assert six.shape == expected.shape
    np.testing.assert_allclose(six, expected, atol=2e-3)
    eight = np.asarray(decoded[rows[EIGHT_KHZ]]["waveform"], np.float32)
    assert abs(eight.size - 2 * synth_clip(2, 2, 2, rate=8_000).size) <= 2
    deep = np.asarray(decoded[rows[TWENTY_FOUR_BIT]]["waveform"], np.float32)
    np.testing.assert_allclose(deep, synth_clip(3, 2, 2), atol=1e-5)
    assert set(decoded["length"]) and min(decoded["length"]) > 0


def test_strict_mode_stops_with_every_unusable_file_named(messy_dir, tmp_path):
    with pytest.raises(CorpusError, match="5 of 40 clips are unusable") as info:
        prepare_audio(load_ravdess(messy_dir), RATE, strict=True, cache_dir=tmp_path)
    for name in BROKEN:
        assert str(messy_dir / name) in str(info.value)
    assert len(info.value.skipped) == 5


def test_the_length_limit_is_a_setting(messy_dir, tmp_path):
    corpus = load_ravdess(messy_dir).filter(lambda row: "Actor_03" in row["path"])
    lengths = [sf.info(p).duration for p in corpus["path"]]
    limit = float(np.median(lengths))
    decoded, skipped = prepare_audio(corpus, RATE, max_seconds=limit, cache_dir=tmp_path)
    assert len(skipped) == sum(seconds > limit for seconds in lengths) > 0
    assert all(s.reason == "too long" for s in skipped) and len(decoded) + len(skipped) == len(corpus)


def test_training_on_a_messy_corpus_uses_every_usable_clip(messy_dir, tiny_wav2vec2, tmp_path):
    out = tmp_path / "out"
    outcome = finetune(
        tiny_wav2vec2,
        load_ravdess(messy_dir),
        output_dir=str(out),
        test_actors=[4],
        eval_actors=[3],
        disable_tqdm=True,
        decode_cache_dir=str(tmp_path / "decoded"),
        features_cache_dir=str(tmp_path / "features"),
    )
    assert len(outcome.skipped) == 5
    assert outcome.clips["train"] == 16 + 3  # actors 1-2: 16 good clips and the 3 odd ones
    report = json.loads((out / SKIP_REPORT).read_text())
    assert (report["clips"], report["used"], report["skipped"]) == (40, 35, 5)
    assert {str(Path(f["path"]).relative_to(messy_dir)): f["reason"] for f in report["files"]} == BROKEN
    assert isinstance(EmotionRecognizer.from_pretrained(out).predict(synth_clip(2, 4, 1)), Prediction)


# ------------------------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def model_dir(tiny_wav2vec2, tmp_path_factory) -> str:
    """A saved (untrained) tiny recognizer: input handling does not depend on what the head learned."""
    from ser_hf.labels import RAVDESS_EMOTIONS
    from ser_hf.modeling import load_backbone

    model, feature_extractor = load_backbone(tiny_wav2vec2, list(RAVDESS_EMOTIONS))
    folder = tmp_path_factory.mktemp("recognizer") / "model"
    EmotionRecognizer(model, feature_extractor, device="cpu").save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def recognizer(model_dir):
    return EmotionRecognizer.from_pretrained(model_dir, device="cpu")


@pytest.mark.parametrize(
    ("item", "error", "words"),
    [
        (_name(1, 1), UnreadableAudioError, "not readable"),
        (_name(1, 2), UnreadableAudioError, "not readable"),
        (_name(1, 3), EmptyAudioError, "0 bytes"),
        (_name(1, 4), InvalidSamplesError, "NaN"),
        (_name(1, 5), AudioTooLongError, "7200 s long"),
        ("Actor_09/missing.wav", UnreadableAudioError, "no such file"),
    ],
    ids=["truncated-header", "text-file", "zero-length", "nan", "two-hours", "missing"],
)
def test_predict_names_a_bad_file_and_its_problem(recognizer, messy_dir, item, error, words):
    path = messy_dir / item
    with pytest.raises(error, match=words) as info:
        recognizer.predict(path)
    assert info.value.source == str(path) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.ones(800, np.complex64), "dtype complex64"),
        (np.array(["a", "b"]), "dtype <U1"),
        (np.ones(800, np.bool_), "dtype bool"),
        (np.ones(800, np.uint64), "dtype uint64"),
        (np.full((2, 800), 0.1, np.float32), "1-D"),
        (np.full((800, 6), 0.1, np.float32), "1-D"),
        (np.float32(0.5), "1-D"),
        (np.zeros(0, np.float32), "no samples"),
        (np.array([0.1, np.nan, 0.2] * 100, np.float32), "NaN"),
        (np.zeros(1600, np.float32), "silent"),
        ([[0.1, 0.2], [0.3]], "not an array"),
    ],
    ids=["complex", "strings", "bool", "uint64", "2-D", "channels-last", "scalar", "empty", "nan", "silent", "ragged"],
)
def test_predict_names_a_bad_array_and_its_problem(recognizer, array, words):
    with pytest.raises(AudioError, match=words) as info:
        recognizer.predict({"array": array, "sampling_rate": RATE} if isinstance(array, list) else array)
    assert info.value.source.startswith("<")  # arrays are named by type, shape and dtype


def test_predict_refuses_empty_batches_and_bad_options(recognizer, messy_dir):
    for empty in ([], ()):
        with pytest.raises(SerHfError, match="empty list"):
            recognizer.predict(empty)
    with pytest.raises(ValueError, match="errors must be"):
        recognizer.predict(messy_dir / EIGHT_KHZ, errors="ignore")
    with pytest.raises(InvalidSamplesError, match="sampling rate 0"):
        recognizer.predict(synth_clip(1, 1, 1), sampling_rate=0)


def test_predict_uses_odd_but_usable_files(recognizer, messy_dir):
    for name in (SIX_CHANNELS, EIGHT_KHZ, TWENTY_FOUR_BIT):
        assert isinstance(recognizer.predict(messy_dir / name), Prediction)
    # 8-bit unsigned PCM arrays and bfloat16 tensors are audio too
    import torch

    clip = synth_clip(3, 1, 1)
    assert isinstance(recognizer.predict(np.round(clip * 127 + 128).astype(np.uint8)), Prediction)
    assert isinstance(recognizer.predict(torch.from_numpy(clip).to(torch.bfloat16)), Prediction)


def test_a_batch_with_one_bad_file_names_it_or_returns_its_error(recognizer, messy_dir):
    good = [messy_dir / _name(3, e, repetition=1) for e in (1, 2)]
    bad = messy_dir / _name(1, 4)
    batch = [good[0], bad, good[1]]
    with pytest.raises(InvalidSamplesError, match=r"item 1 of the batch") as info:
        recognizer.predict(batch)
    assert info.value.source == str(bad)

    results = recognizer.predict(batch, errors="return")
    assert isinstance(results[1], InvalidSamplesError) and results[1].source == str(bad)
    alone = recognizer.predict(good)
    for result, expected in zip((results[0], results[2]), alone, strict=True):
        assert result.label == expected.label and result.score == pytest.approx(expected.score, abs=1e-5)

    everything_bad = recognizer.predict([messy_dir / name for name in BROKEN], errors="return")
    assert [e.reason for e in everything_bad] == list(BROKEN.values())


def test_cli_reports_or_stops_on_bad_files(model_dir, messy_dir, capsys):
    model = model_dir
    files = [
        str(messy_dir / _name(3, 1, repetition=1)),
        str(messy_dir / _name(1, 3)),
        str(messy_dir / "Actor_01" / "nope.wav"),
    ]
    assert cli_main(["predict", "--model", model, *files]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == files
    assert "label" in lines[0]
    assert (lines[1]["reason"], lines[2]["reason"]) == ("empty", "unreadable")
    assert "no such file" in lines[2]["error"]

    assert cli_main(["predict", "--model", model, "--errors", "raise", *files]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "item 1 of the batch" in captured.err and files[1] in captured.err
