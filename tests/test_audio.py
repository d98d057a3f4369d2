"""Audio input: every supported source decodes to mono float32 at the target rate; bad input is named."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import RATE, synth_clip

from ser_hf import audio
from ser_hf.errors import (
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    InvalidSamplesError,
    SilentAudioError,
    UnreadableAudioError,
)


@pytest.fixture
def clip() -> np.ndarray:
    return synth_clip(3, 1, 1, seconds=0.5)


@pytest.mark.parametrize(("ext", "subtype"), [(".wav", "PCM_16"), (".wav", "PCM_24"), (".flac", None), (".ogg", None)])
def test_file_formats_decode_to_float32_mono(tmp_path, clip, ext, subtype):
    path = tmp_path / f"a{ext}"
    sf.write(path, clip, RATE, subtype=subtype)
    out = audio.load_audio(path, RATE)
    assert out.dtype == np.float32 and out.ndim == 1 and out.size == clip.size
    if ext != ".ogg":  # lossless formats give the samples back
        np.testing.assert_allclose(out, clip, atol=1e-3)


def test_stereo_is_downmixed_and_resampled(tmp_path, clip):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([clip, np.zeros_like(clip)], axis=1), 8_000)
    out = audio.load_audio(path, RATE)
    assert out.ndim == 1
    assert abs(out.size - 2 * clip.size) <= 2  # 8 kHz -> 16 kHz doubles the samples
    assert np.abs(out).max() == pytest.approx(np.abs(clip).max() / 2, rel=0.1)  # mean of the two channels


def test_six_channels_and_44k(tmp_path, clip):
    path = tmp_path / "six.wav"
    sf.write(path, np.repeat(clip[:, None], 6, axis=1), 44_100)
    out = audio.load_audio(path, RATE)
    assert out.ndim == 1 and abs(out.size - round(clip.size * RATE / 44_100)) <= 2


def test_bytes_file_objects_arrays_tensors_and_dicts(tmp_path, clip):
    buffer = io.BytesIO()
    sf.write(buffer, clip, RATE, format="WAV")
    raw = buffer.getvalue()
    from_bytes = audio.load_audio(raw, RATE)
    from_file_object = audio.load_audio(io.BytesIO(raw), RATE)
    from_array = audio.load_audio(clip, RATE)
    from_tensor = audio.load_audio(torch.from_numpy(clip), RATE)
    from_dict = audio.load_audio({"array": clip.astype(np.float64), "sampling_rate": RATE}, RATE)
    from_int16 = audio.load_audio((clip * 32767).astype(np.int16), RATE)
    for out in (from_bytes, from_file_object, from_array, from_tensor, from_dict, from_int16):
        np.testing.assert_allclose(out, clip, atol=1e-3)
    resampled = audio.load_audio(clip, RATE, source_sampling_rate=8_000)
    assert abs(resampled.size - 2 * clip.size) <= 2


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda p: p / "missing.wav", UnreadableAudioError, "no such file"),
        (
            lambda p: (p / "text.wav").write_text("hello, not audio") and p / "text.wav",
            UnreadableAudioError,
            "not readable",
        ),
        (lambda p: (p / "zero.wav").write_bytes(b"") or p / "zero.wav", EmptyAudioError, "empty file (0 bytes)"),
        (
            lambda p: sf.write(p / "empty.wav", np.zeros(0, np.float32), RATE) or p / "empty.wav",
            EmptyAudioError,
            "no samples",
        ),
        (
            lambda p: sf.write(p / "nan.wav", np.full(800, np.nan, np.float32), RATE, subtype="FLOAT") or p / "nan.wav",
            InvalidSamplesError,
            "NaN",
        ),
        (
            lambda p: sf.write(p / "silent.wav", np.zeros(8000, np.float32), RATE) or p / "silent.wav",
            SilentAudioError,
            "silent",
        ),
        (lambda p: p, UnreadableAudioError, "directory"),
    ],
    ids=["missing", "text", "zero-length", "header-only", "nan", "silent", "directory"],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, make, error, words):
    path = make(tmp_path)
    with pytest.raises(error) as info:
        audio.load_audio(path, RATE)
    assert str(path) in str(info.value) and words in str(info.value)
    assert isinstance(info.value, AudioError)


def test_truncated_wav_header(tmp_path, clip):
    path = tmp_path / "truncated.wav"
    sf.write(path, clip, RATE)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioError, match="truncated.wav"):
        audio.load_audio(path, RATE)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((2, 800), np.float32) + 0.1, "1-D"),
        (np.array(["a", "b"]), "dtype"),
        (np.ones(800, dtype=np.complex64), "dtype"),
        (np.array([0.1, np.inf, 0.2], np.float32), "NaN or infinite"),
        (np.zeros(0, np.float32), "no samples"),
    ],
)
def test_bad_arrays(array, words):
    with pytest.raises(AudioError, match=words):
        audio.load_audio(array, RATE)


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.full(RATE * 3, 0.1, np.float32), RATE)
    with pytest.raises(AudioTooLongError, match="predict_timeline"):
        audio.load_audio(path, RATE, max_seconds=2)


def test_iter_blocks_matches_whole_file(tmp_path):
    path = tmp_path / "long.wav"
    signal = np.concatenate([synth_clip(e, 1, 1, rate=44_100, seconds=0.7) for e in range(1, 9)])
    sf.write(path, signal, 44_100)
    whole = audio.load_audio(path, RATE)
    blocks = list(audio.iter_blocks(path, RATE, block_seconds=0.5))
    assert len(blocks) > 5
    joined = np.concatenate(blocks)
    assert abs(joined.size - whole.size) <= 2
    n = min(joined.size, whole.size)
    np.testing.assert_allclose(joined[:n], whole[:n], atol=2e-3)


def test_trim_silence_cuts_leading_and_trailing_quiet():
    clip = synth_clip(4, 2, 1, seconds=1.0)
    padded = np.concatenate([np.zeros(RATE), clip, np.zeros(RATE // 2)]).astype(np.float32)
    trimmed = audio.trim_silence(padded, RATE, margin_seconds=0.05)
    assert clip.size <= trimmed.size <= clip.size + int(0.15 * RATE)


def test_audio_info(tmp_path, clip):
    path = tmp_path / "a.flac"
    sf.write(path, clip, RATE)
    info = audio.audio_info(path)
    assert (info.sampling_rate, info.channels, info.frames) == (RATE, 1, clip.size)
    assert info.duration == pytest.approx(0.5)
