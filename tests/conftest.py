"""Offline fixtures: tiny random-init speech models saved as "pretrained" checkpoints, and a synthetic
RAVDESS-named corpus whose emotions differ in a learnable acoustic way (pitch and loudness contour)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RATE = 16_000
#: One base pitch per RAVDESS emotion code 01..08.
PITCHES = (140.0, 190.0, 260.0, 340.0, 440.0, 560.0, 720.0, 900.0)


def synth_clip(
    emotion: int, actor: int, repetition: int, *, rate: int = RATE, seconds: float | None = None
) -> np.ndarray:
    """A harmonic tone whose pitch encodes the emotion, varied per actor and repetition, with noise."""
    rng = np.random.default_rng(emotion * 1000 + actor * 10 + repetition)
    seconds = seconds if seconds is not None else 0.6 + 0.4 * rng.random()
    t = np.arange(int(seconds * rate)) / rate
    f0 = PITCHES[emotion - 1] * (1.0 + 0.04 * (actor % 5 - 2)) * (1.0 + 0.02 * rng.standard_normal())
    tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6.28) / k for k in (1, 2, 3))
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.05)
    signal = 0.3 * tone * envelope + 0.01 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def ravdess_name(emotion: int, actor: int, repetition: int = 1, *, channel: int = 1, intensity: int = 1) -> str:
    return f"03-{channel:02d}-{emotion:02d}-{intensity:02d}-01-{repetition:02d}-{actor:02d}"


def write_corpus(
    root: Path,
    *,
    actors: tuple[int, ...] = tuple(range(1, 9)),
    repetitions: tuple[int, ...] = (1, 2),
    emotions: tuple[int, ...] = tuple(range(1, 9)),
    ext: str = ".wav",
) -> Path:
    """Write a RAVDESS-layout folder (``Actor_XX/03-01-EE-...``) of synthetic clips; some 44.1 kHz stereo."""
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion in emotions:
            for repetition in repetitions:
                clip = synth_clip(emotion, actor, repetition)
                name = ravdess_name(emotion, actor, repetition) + ext
                if (emotion + actor) % 4 == 0:  # exercise resampling and downmixing
                    import soxr

                    stereo = soxr.resample(clip, RATE, 44_100)
                    sf.write(folder / name, np.stack([stereo, 0.8 * stereo], axis=1), 44_100)
                else:
                    sf.write(folder / name, clip, RATE)
    return root


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Eight actors × eight emotions × two repetitions (128 clips, 0.6-1.0 s)."""
    return write_corpus(tmp_path_factory.mktemp("ravdess"))


@pytest.fixture(scope="session")
def corpus(corpus_dir):
    from ser_hf import load_ravdess

    return load_ravdess(corpus_dir)


def _tiny_wav2vec2_family(model_type: str, *, layer_norm: bool):
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    config = AutoConfig.for_model(
        model_type,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 8, 4),
        conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
        classifier_proj_size=16,
        mask_time_prob=0.0,
        layerdrop=0.0,
    )
    model = AutoModel.from_config(config)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=layer_norm
    )
    return model, extractor


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> str:
    """A 2-layer random wav2vec2-base-style encoder (group norm: no attention mask), saved like a Hub checkpoint."""
    import torch

    torch.manual_seed(0)
    model, extractor = _tiny_wav2vec2_family("wav2vec2", layer_norm=False)
    path = tmp_path_factory.mktemp("tiny-wav2vec2")
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory) -> str:
    """A 2-layer random HuBERT-large-style encoder (layer norm: takes an attention mask)."""
    import torch

    torch.manual_seed(0)
    model, extractor = _tiny_wav2vec2_family("hubert", layer_norm=True)
    path = tmp_path_factory.mktemp("tiny-hubert")
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    """A 2-layer random Whisper encoder-decoder with the real 80-mel feature extractor (30 s window)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        vocab_size=64,
        max_target_positions=32,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        decoder_start_token_id=2,
        suppress_tokens=[],
        begin_suppress_tokens=[],
        classifier_proj_size=16,
    )
    path = tmp_path_factory.mktemp("tiny-whisper")
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus, tiny_wav2vec2):
    """A tiny wav2vec2 recognizer trained by the default pipeline on the synthetic corpus (test actors 7-8,
    validation actor 6): the probe, speaker-adaptive, saved with its card; a few seconds."""
    from ser_hf.trainer import finetune

    out = tmp_path_factory.mktemp("trained") / "out"
    cache = str(tmp_path_factory.mktemp("cache"))
    return finetune(
        tiny_wav2vec2, corpus, output_dir=str(out), test_speakers=[7, 8], eval_speakers=[6], seed=0,
        decode_cache_dir=cache, features_cache_dir=cache, disable_tqdm=True,
    )  # fmt: skip


@pytest.fixture
def clip_path(tmp_path) -> Path:
    path = tmp_path / "clip.wav"
    sf.write(path, synth_clip(5, 3, 1), RATE)
    return path


def shared_path(*parts: str) -> Path:
    return SHARED.joinpath(*parts)
