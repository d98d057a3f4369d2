"""Property-based fuzzing of the audio input module: valid mono float32 audio or an `AudioError`, nothing else.

Random bytes, real files with corrupted headers and cut-off data, and random arrays of every dtype,
shape and value (NaN, inf, huge, empty) go through `load_audio`, `iter_blocks` and `audio_info`.
Warnings are errors here, so a stray overflow warning or an exception printed from a soundfile
callback fails the test too.
"""

import gc
import io
import sys
import traceback
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ser_hf import audio
from ser_hf.errors import AudioError

RATE = 16_000
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _file_bytes(fmt: str, subtype: str, rate: int = 8_000, frames: int = 400, channels: int = 2) -> bytes:
    buffer = io.BytesIO()
    samples = 0.1 * np.random.default_rng(0).standard_normal((frames, channels))
    sf.write(buffer, samples.astype(np.float32), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


#: Real files of several formats, the seeds that corruption starts from.
SEEDS = [
    _file_bytes(*spec)
    for spec in [
        ("WAV", "PCM_16"),
        ("WAV", "FLOAT"),
        ("WAV", "ULAW"),
        ("WAV", "PCM_U8"),
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("OGG", "VORBIS"),
        ("AIFF", "PCM_24"),
        ("AU", "PCM_16"),
    ]
]


def _check(produce) -> None:
    """Whatever ``produce`` returns must be valid audio; whatever it raises must be an `AudioError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = produce()
        except AudioError as err:
            assert err.source and err.problem  # names the input and the problem
            return
    blocks = result if isinstance(result, list) else [result]
    assert blocks
    for block in blocks:
        assert isinstance(block, np.ndarray) and block.dtype == np.float32 and block.ndim == 1
        assert block.size > 0 and np.isfinite(block).all()


def _all_ways(data: bytes) -> None:
    _check(lambda: audio.load_audio(data, RATE))
    _check(lambda: list(audio.iter_blocks(data, RATE, block_seconds=0.01)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            info = audio.audio_info(data)
            assert info.channels >= 1 and info.frames >= 0
        except AudioError:
            pass


@pytest.fixture(autouse=True)
def callback_exceptions_fail(monkeypatch):
    """An exception raised inside soundfile's virtual-I/O callbacks is only printed ("Exception ignored
    from cffi callback"): fail on it. (Other objects' finalizers, collected meanwhile, do not count.)"""
    gc.collect()
    seen = []

    def hook(unraisable):
        frames = traceback.extract_tb(unraisable.exc_traceback)
        if "callback" in (unraisable.err_msg or "") or any(f.filename.endswith("soundfile.py") for f in frames):
            seen.append(unraisable)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    yield
    assert not seen, [str(s.exc_value) for s in seen]


@FUZZ
@given(st.binary(max_size=1_000))
def test_random_bytes(data):
    _all_ways(data)


@FUZZ
@example(_file_bytes("AIFF", "PCM_24"), [(38, 0)], 0)  # libsndfile seeks before the start of this one
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=8),
    st.integers(0, 3_000),
)
def test_real_files_with_corrupted_headers_and_cut_data(seed, edits, keep):
    data = bytearray(seed[:keep] if keep else seed)
    for position, value in edits:
        if position < len(data):
            data[position] = value
    _all_ways(bytes(data))


dtypes = st.one_of(
    hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.complex_number_dtypes()
)
dtypes = st.one_of(dtypes, hnp.boolean_dtypes(), hnp.unicode_string_dtypes(), hnp.datetime64_dtypes())
rates = st.one_of(st.none(), st.integers(-10, 10_000_000), st.floats(allow_nan=True, allow_infinity=True))


@FUZZ
@given(hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40)), rates)
def test_random_arrays(array, rate):
    _check(lambda: audio.load_audio(array, RATE, source_sampling_rate=rate))
    _check(lambda: audio.load_audio({"array": array, "sampling_rate": rate}, RATE))


@FUZZ
@given(
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int16, torch.int64]),
    st.integers(0, 200),
    st.sampled_from([0.0, 1e-6, 0.5, 1e4, 1e38, float("inf"), float("nan")]),
)
def test_random_tensors(dtype, size, scale):
    tensor = (torch.randn(size, dtype=torch.float64) * scale).to(dtype)
    _check(lambda: audio.load_audio(tensor, RATE, source_sampling_rate=44_100))


@FUZZ
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.binary(max_size=8)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(["array", "sampling_rate", "path", "bytes", "raw"]), inner, max_size=3),
        ),
        max_leaves=8,
    )
)
def test_random_python_objects(value):
    _check(lambda: audio.load_audio(value, RATE))
