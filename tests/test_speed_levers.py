"""What makes training fast, and what each lever must not change: decoding and encoding once, length-grouped
phase-2 batches, the bf16 default, the attention kernel (tiny models)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import soundfile as sf
import torch
from conftest import RATE, ravdess_name, synth_clip
from transformers.trainer_pt_utils import LengthGroupedSampler

from ser_hf import hardware, load_ravdess
from ser_hf.arguments import SERTrainingArguments, arguments, default_bf16
from ser_hf.corpora.base import read_column
from ser_hf.features import clip_lengths, prepare_audio
from ser_hf.trainer import EmotionTrainer, EpochSeededSampler


def test_trimming_changes_lengths_not_labels(tmp_path):
    root = tmp_path / "quiet"
    for actor in (1, 2):
        (root / f"Actor_{actor:02d}").mkdir(parents=True)
        for emotion in (1, 5, 8):
            clip = synth_clip(emotion, actor, 1, seconds=0.8)
            silence = np.zeros(int(0.6 * RATE), dtype=np.float32)
            sf.write(
                root / f"Actor_{actor:02d}" / f"{ravdess_name(emotion, actor)}.wav", np.r_[silence, clip, silence], RATE
            )
    corpus = load_ravdess(root)
    plain, _ = prepare_audio(corpus, RATE, cache_dir=tmp_path / "cache")
    trimmed, _ = prepare_audio(corpus, RATE, trim_silence=True, loudness_db=-30.0, cache_dir=tmp_path / "cache")
    assert read_column(trimmed, "label") == read_column(plain, "label")
    assert read_column(trimmed, "path") == read_column(plain, "path")
    for full, short in zip(clip_lengths(plain), clip_lengths(trimmed)):
        assert full == int(2.0 * RATE)
        assert 0.8 * RATE <= short <= 1.05 * RATE  # the tone plus at most 0.1 s margin each side
    level = [20 * np.log10(np.sqrt(np.mean(np.square(w)))) for w in trimmed.with_format("numpy")["waveform"]]
    np.testing.assert_allclose(level, -30.0, atol=1e-3)  # every clip at the same loudness


def test_bf16_default_follows_the_hardware_and_the_model(monkeypatch, tmp_path, tiny_wav2vec2):
    from types import SimpleNamespace

    wide, narrow = SimpleNamespace(hidden_size=768), SimpleNamespace(hidden_size=384)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma3"}))
    assert not hardware.bf16_supported() and not default_bf16(wide)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert hardware.bf16_supported("cpu") and default_bf16(wide)
    assert not default_bf16(narrow) and not default_bf16(wide, fp16=True)
    assert not default_bf16(SimpleNamespace(d_model=384))  # Whisper tiny's width

    trainer = EmotionTrainer(*arguments(output_dir=str(tmp_path)))
    assert trainer.args.bf16 is None and trainer.args.mixed_precision == "no"  # settled once the model is known
    trainer._resolve_bf16(SimpleNamespace(config=wide))
    assert trainer.args.bf16 and trainer.args.mixed_precision == "bf16"
    forced = EmotionTrainer(*arguments(output_dir=str(tmp_path), bf16=False))
    forced._resolve_bf16(SimpleNamespace(config=wide))
    assert forced.args.bf16 is False and forced.args.mixed_precision == "no"
    asked = SERTrainingArguments(output_dir=str(tmp_path), bf16=True)
    assert asked.use_cpu and asked.mixed_precision == "bf16"  # bf16 on a CPU-only machine runs on the CPU


def test_phase_2_batches_group_lengths_and_see_every_clip_once_per_epoch(tiny_hubert, corpus, tmp_path):
    """HuBERT-large-style encoders take an attention mask: clips keep their own lengths in the cache."""
    cache = str(tmp_path / "cache")
    args = arguments(
        model_name_or_path=tiny_hubert, output_dir=str(tmp_path / "out"), test_speakers="8", eval_speakers="",
        finetune_layers="1", num_train_epochs=1, per_device_train_batch_size=8, attn_implementation="eager",
        decode_cache_dir=cache, features_cache_dir=cache, disable_tqdm=True,
    )  # fmt: skip
    pipeline = EmotionTrainer(*args, corpus=corpus)
    encoded = pipeline.prepare()
    fit, valid, _, _, _ = pipeline.split_rows(encoded)
    fitted = pipeline.fit(encoded, fit, valid)
    trainer = fitted.trainer
    assert trainer.model.config._attn_implementation == "eager"  # the kernel asked for reaches phase 2
    assert trainer.args.bf16 is False or hardware.bf16_supported("cuda")  # tiny models train in fp32
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, EpochSeededSampler) and isinstance(sampler.sampler, LengthGroupedSampler)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == orders[2] != orders[1]  # reproducible per epoch, new each epoch
    train = trainer.train_dataset
    expected = Counter((int(encoded.labels[r]), int(encoded.positions[r])) for r in train.rows)
    padding = []
    for _ in range(2):  # two epochs: each sees every clip once, in a different order
        seen: Counter = Counter()
        for batch in trainer.get_train_dataloader():
            seen.update(zip(batch["labels"].tolist(), batch["positions"].tolist()))
            padding.append(int((batch["hidden_state"].shape[1] - batch["positions"]).sum()))
        assert seen == expected
    lengths = np.array(train.lengths)
    rng = np.random.default_rng(0)
    shuffled = [
        sum(int(chunk.max() - chunk.sum() / len(chunk)) * len(chunk) for chunk in np.array_split(perm, len(perm) // 8))
        for perm in (lengths[rng.permutation(len(lengths))] for _ in range(20))
    ]
    assert np.mean(padding) * len(padding) / 2 < 0.6 * np.mean(shuffled)  # grouped batches pad much less


def test_read_column_respects_selection_and_order(corpus):
    picked = corpus.select([5, 0, 3]).with_format("numpy")
    assert read_column(picked, "path") == [corpus[i]["path"] for i in (5, 0, 3)]
