"""The training-speed levers: what each one changes (and what it must not change), on tiny models."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import RATE, ravdess_name, synth_clip
from safetensors.torch import load_file
from transformers.trainer_pt_utils import LengthGroupedSampler

from ser_hf import hardware, load_ravdess
from ser_hf.corpora.base import read_column
from ser_hf.features import clip_lengths, prepare_audio
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.modeling import encoder_layers, freeze, load_backbone
from ser_hf.training import EpochSeededSampler, SERTrainingArguments, default_bf16, finetune, resolve_bf16


def _trainable(module: torch.nn.Module) -> set[bool]:
    return {p.requires_grad for p in module.parameters()}


def test_freeze_layers_freezes_exactly_the_lowest_n_wav2vec2(tiny_wav2vec2):
    model, _ = load_backbone(tiny_wav2vec2, RAVDESS_EMOTIONS)
    freeze(model, lower_layers=1)
    base = model.wav2vec2
    assert _trainable(base.encoder.layers[0]) == {False}
    assert _trainable(base.encoder.layers[1]) == {True}
    for below in (
        base.feature_extractor,
        base.feature_projection,
        base.encoder.pos_conv_embed,
        base.encoder.layer_norm,
    ):
        assert _trainable(below) == {False}  # everything that feeds layer 0
    assert _trainable(model.projector) == _trainable(model.classifier) == {True}
    with pytest.raises(ValueError, match="only 2 layers"):
        freeze(model, lower_layers=3)


def test_freeze_layers_on_whisper_keeps_the_final_norm_trainable(tiny_whisper):
    model, _ = load_backbone(tiny_whisper, RAVDESS_EMOTIONS)
    freeze(model, lower_layers=1)
    encoder = model.encoder
    assert len(encoder_layers(model)) == 2
    assert _trainable(encoder.conv1) == _trainable(encoder.conv2) == _trainable(encoder.layers[0]) == {False}
    assert _trainable(encoder.layers[1]) == _trainable(encoder.layer_norm) == {True}  # norm after the stack
    assert _trainable(model.classifier) == {True}


@pytest.fixture(scope="module")
def lever_run(tmp_path_factory, corpus, tiny_hubert):
    """Two steps of tiny HuBERT with freeze_layers=1, eager attention and gradient checkpointing.

    (HuBERT-large-style models take an attention mask, so batches reveal each clip's real length.)
    """
    out = tmp_path_factory.mktemp("levers") / "out"
    outcome = finetune(
        tiny_hubert,
        corpus,
        output_dir=str(out),
        test_actors=[8],
        eval_actors=[],
        max_steps=2,
        learning_rate=1e-2,
        freeze_layers=1,
        attn_implementation="eager",
        gradient_checkpointing=True,
        decode_cache_dir=str(tmp_path_factory.mktemp("decoded")),
        disable_tqdm=True,
    )
    return outcome, tiny_hubert


def test_freeze_layers_trains_only_the_layers_above(lever_run):
    """Also with gradient checkpointing on: gradients still reach the unfrozen layers."""
    outcome, checkpoint = lever_run
    before = load_file(f"{checkpoint}/model.safetensors")  # a bare HubertModel: no "hubert." prefix
    trained = {name.removeprefix("hubert."): p.detach() for name, p in outcome.trainer.model.named_parameters()}

    def changed(prefix: str) -> bool:
        names = [name for name in before if name.startswith(prefix)]
        assert names, prefix
        return any(not torch.equal(trained[name], before[name]) for name in names)

    assert not changed("encoder.layers.0.")
    assert not changed("feature_projection.")
    assert changed("encoder.layers.1.")


def test_padding_to_a_multiple_rounds_batches_up_and_masks_the_rest(tmp_path, corpus, tiny_hubert):
    outcome = finetune(
        tiny_hubert, corpus, output_dir=str(tmp_path / "out"), test_actors=[8], eval_actors=[7], max_steps=1,
        pad_to_multiple_of_seconds=0.25, decode_cache_dir=str(tmp_path / "decoded"), disable_tqdm=True,
    )  # fmt: skip
    trainer = outcome.trainer
    assert trainer.train_collator.pad_to_multiple_of == trainer.data_collator.pad_to_multiple_of == 4000
    clips = [np.ones(5000, np.float32), np.ones(9100, np.float32)]
    batch = trainer.train_collator.encode(clips)
    assert batch["input_values"].shape == (2, 12000)  # 9100 rounded up to 3 x 4000
    assert batch["attention_mask"].sum(dim=1).tolist() == [5000, 9100]
    plain = dataclasses.replace(trainer.train_collator, pad_to_multiple_of=None).encode(clips)
    assert plain["input_values"].shape == (2, 9100)


def test_attn_implementation_reaches_the_model(lever_run):
    outcome, _ = lever_run
    assert outcome.trainer.model.config._attn_implementation == "eager"


def test_group_by_length_sees_every_clip_exactly_once_per_epoch(lever_run):
    outcome, _ = lever_run
    trainer = outcome.trainer
    train = trainer.train_dataset
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, EpochSeededSampler)  # main's per-epoch seeding wraps the fast sampler
    assert isinstance(sampler.sampler, LengthGroupedSampler)
    assert all(type(n) is int for n in sampler.sampler.lengths)  # one Arrow read, not a row lookup per clip
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == orders[2] != orders[1]  # reproducible per epoch, new each epoch
    expected = Counter(zip(read_column(train, "label"), clip_lengths(train)))
    padding = []
    for _ in range(2):  # two epochs: each sees every clip once, in a different order
        seen: Counter = Counter()
        for batch in trainer.get_train_dataloader():
            real = batch["attention_mask"].sum(-1)
            seen.update(zip(batch["labels"].tolist(), real.tolist()))
            padding.append(int((batch["attention_mask"].shape[-1] - real).sum()))
        assert seen == expected
    lengths = np.array(clip_lengths(train))
    rng = np.random.default_rng(0)
    shuffled = [
        sum(int(chunk.max() - chunk.sum() / len(chunk)) * len(chunk) for chunk in np.array_split(perm, len(perm) // 8))
        for perm in (lengths[rng.permutation(len(lengths))] for _ in range(20))
    ]
    assert np.mean(padding) * len(padding) / 2 < 0.6 * np.mean(shuffled)  # grouped batches pad much less


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
    trimmed, _ = prepare_audio(corpus, RATE, trim_silence=True, cache_dir=tmp_path / "cache")
    assert read_column(trimmed, "label") == read_column(plain, "label")
    assert read_column(trimmed, "path") == read_column(plain, "path")
    for full, short in zip(clip_lengths(plain), clip_lengths(trimmed)):
        assert full == int(2.0 * RATE)
        assert 0.8 * RATE <= short <= 1.05 * RATE  # the tone plus at most 0.1 s margin each side


def test_bf16_default_follows_the_hardware_and_the_model(monkeypatch, tmp_path, tiny_wav2vec2):
    from types import SimpleNamespace

    wide, narrow = SimpleNamespace(hidden_size=768), SimpleNamespace(hidden_size=384)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma3"}))
    assert not hardware.bf16_supported() and not default_bf16(wide)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert hardware.bf16_supported("cpu") and default_bf16(wide)
    assert not default_bf16(narrow) and not default_bf16(wide, fp16=True)

    model, _ = load_backbone(tiny_wav2vec2, RAVDESS_EMOTIONS)
    args = SERTrainingArguments(output_dir=str(tmp_path))
    assert args.bf16 is None and args.mixed_precision == "no"  # settled once the model is known
    model.config.hidden_size = 768
    assert resolve_bf16(args, model) and args.mixed_precision == "bf16"
    forced = SERTrainingArguments(output_dir=str(tmp_path), bf16=False)
    assert not resolve_bf16(forced, model) and forced.mixed_precision == "no"
    asked = SERTrainingArguments(output_dir=str(tmp_path), bf16=True)
    assert asked.use_cpu and asked.mixed_precision == "bf16"  # bf16 on a CPU-only machine runs on the CPU


def test_tiny_models_train_in_fp32_by_default(lever_run):
    outcome, _ = lever_run
    assert outcome.trainer.args.bf16 is False or hardware.bf16_supported("cuda")


def test_read_column_respects_selection_and_order(corpus):
    picked = corpus.select([5, 0, 3]).with_format("numpy")
    assert read_column(picked, "path") == [corpus[i]["path"] for i in (5, 0, 3)]
