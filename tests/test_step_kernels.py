"""The kernels a training step runs with: fast dropout (masks, gradients, reach, the lever) and SDPA's backends."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import _tiny_wav2vec2_family

from ser_hf import fast_dropout as fd
from ser_hf.arguments import SERTrainingArguments
from ser_hf.trainer import SERTrainer


def test_keep_rate_and_scale_keep_the_mean():
    torch.manual_seed(0)
    for p in (0.05, 0.1, 0.5, 0.9):
        keep, scale = fd.keep_mask((4_000_000,), p)
        rate = keep.float().mean().item()
        sigma = (p * (1 - p) / 4_000_000) ** 0.5
        assert abs(rate - (1 - p)) < 6 * sigma + 2**-16, (p, rate)
        assert scale == pytest.approx(1 / (1 - p), rel=1e-4)
        out = fd.fast_dropout(torch.ones(4_000_000), p)
        assert out.mean().item() == pytest.approx(1.0, abs=6 * sigma * scale + 1e-4)
        values = out.unique()
        assert len(values) == 2 and values[0] == 0 and values[1].item() == pytest.approx(scale)


def test_masks_follow_the_default_generator():
    x = torch.randn(64, 333)
    torch.manual_seed(7)
    first = fd.fast_dropout(x, 0.3)
    torch.manual_seed(7)
    again = fd.fast_dropout(x, 0.3)
    other = fd.fast_dropout(x, 0.3)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert fd.fast_dropout(x, 0.0) is x
    assert torch.equal(fd.fast_dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        fd.fast_dropout(x, 1.5)


def test_mask_elements_are_independent():
    """No correlation between neighbours (four share one 64-bit draw), positions, or successive calls."""
    torch.manual_seed(1)
    first, _ = fd.keep_mask((4_000_000,), 0.5)
    second, _ = fd.keep_mask((4_000_000,), 0.5)
    a, b = first.float() * 2 - 1, second.float() * 2 - 1  # +-1: the mean of a product is its correlation
    sigma = 1 / 4_000_000**0.5
    for lag in (1, 2, 3, 4, 5, 8):
        assert abs((a[:-lag] * a[lag:]).mean().item()) < 6 * sigma, lag
    assert abs((a * b).mean().item()) < 6 * sigma
    for position in range(4):
        assert abs(a.view(-1, 4)[:, position].mean().item()) < 12 * sigma, position


def test_training_with_it_matches_torch_dropout():
    """A dropout MLP on a synthetic task ends at the same loss with either dropout (4 seeds each)."""
    data = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=data)
    y = (x[:, :4].argmax(dim=1) + (x[:, 4] > 1.0).long()) % 4

    def final_loss(fast: bool, seed: int) -> float:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(16, 128), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(128, 4)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            with fd.FastDropout() if fast else contextlib.nullcontext():
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
        with torch.no_grad():
            return F.cross_entropy(model.eval()(x), y).item()

    native = [final_loss(False, seed) for seed in range(4)]
    fast = [final_loss(True, seed) for seed in range(4)]
    spread = max(native) - min(native)
    assert abs(sum(fast) / 4 - sum(native) / 4) < max(spread, 0.02), (native, fast)


def test_gradient_passes_exactly_the_kept_elements_scaled():
    x = torch.randn(32, 50, requires_grad=True)
    out = fd.fast_dropout(x, 0.25)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    kept = out.detach() != 0
    scale = 1 / (1 - round(0.25 * 2**16) / 2**16)
    assert torch.allclose(out.detach(), torch.where(kept, x.detach() * scale, 0))
    assert torch.allclose(x.grad, torch.where(kept, upstream * scale, 0))


def test_mode_reroutes_cpu_dropout_and_leaves_the_rest_alone():
    x = torch.randn(16, 40)
    layer = torch.nn.Dropout(0.2)
    with fd.FastDropout():
        torch.manual_seed(3)
        routed = layer(x)
        layer.eval()
        assert torch.equal(layer(x), x)  # eval: no dropout at all
        assert torch.equal(F.dropout(x, 0.2, training=False), x)
    torch.manual_seed(3)
    assert torch.equal(routed, fd.fast_dropout(x, 0.2))
    torch.manual_seed(3)
    layer.train()
    assert not torch.equal(layer(x), routed)  # outside the mode: torch's own dropout


def test_attention_math_matches_sdpa_and_takes_its_dropout():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 9, 8), torch.randn(2, 4, 11, 8), torch.randn(2, 4, 11, 8)
    mask = torch.rand(2, 1, 9, 11) > 0.3
    mask[..., 0] = True
    mask[1, 0, 4] = False  # a query that may attend to nothing: SDPA gives zeros there
    for kwargs in ({}, {"attn_mask": mask}, {"attn_mask": torch.randn(2, 1, 9, 11)}, {"scale": 0.3}):
        expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
        assert torch.allclose(fd._attention_with_fast_dropout(q, k, v, **kwargs), expected, atol=1e-5), kwargs
    square = torch.randn(2, 4, 9, 8)
    causal = F.scaled_dot_product_attention(square, square, square, is_causal=True)
    assert torch.allclose(fd._attention_with_fast_dropout(square, square, square, is_causal=True), causal, atol=1e-5)
    grouped = F.scaled_dot_product_attention(q, k[:, :2], v[:, :2], enable_gqa=True)
    assert torch.allclose(fd._attention_with_fast_dropout(q, k[:, :2], v[:, :2], enable_gqa=True), grouped, atol=1e-5)
    with fd.FastDropout():
        torch.manual_seed(5)
        routed = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    torch.manual_seed(5)
    assert torch.equal(routed, fd._attention_with_fast_dropout(q, k, v, dropout_p=0.5))


def _tiny_classifier(attn: str):
    """conftest's tiny wav2vec2 with a 3-label head and dropout 0.2 everywhere."""
    from transformers import Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = _tiny_wav2vec2_family("wav2vec2", layer_norm=False)[0].config
    dropouts = ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout")
    config.update({**dict.fromkeys(dropouts, 0.2), "num_labels": 3})
    return Wav2Vec2ForSequenceClassification._from_config(config, attn_implementation=attn).train()


def test_checkpointed_layers_are_recomputed_outside_the_mode():
    """Why the lever stays off with gradient checkpointing: the backward pass recomputes without the mode."""
    model = _tiny_classifier("eager")
    model.gradient_checkpointing_enable()
    with fd.FastDropout(), pytest.raises(torch.utils.checkpoint.CheckpointError, match="different metadata"):
        model(input_values=torch.randn(3, 4000), labels=torch.tensor([0, 1, 2])).loss.backward()


def test_trainer_uses_it_on_the_cpu_unless_told_otherwise(tmp_path, monkeypatch):
    model = _tiny_classifier("eager")
    calls = []
    real = fd.fast_dropout
    monkeypatch.setattr(fd, "fast_dropout", lambda x, p: calls.append(p) or real(x, p))
    rows = [{"input_values": torch.randn(4000), "labels": label} for label in (0, 1)]
    quiet = {"use_cpu": True, "report_to": "none", "eval_strategy": "no", "load_best_model_at_end": False}

    def step(**kwargs) -> SERTrainer:
        args = SERTrainingArguments(
            output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, save_strategy="no",
            train_sampling_strategy="random", disable_tqdm=True, **quiet, **kwargs,
        )  # fmt: skip
        trainer = SERTrainer(model=model, args=args, train_dataset=rows)
        trainer.train()
        return trainer

    assert step().uses_fast_dropout() and calls  # unset: on, on a CPU
    calls.clear()
    assert not step(fast_dropout=False).uses_fast_dropout() and not calls
    for off in ({"torch_compile": True}, {"gradient_checkpointing": True}):
        args = SERTrainingArguments(output_dir=str(tmp_path), **quiet, **off)
        assert not SERTrainer(model=model, args=args).uses_fast_dropout(), off
    with pytest.raises(ValueError, match="cannot be combined with gradient_checkpointing"):
        SERTrainingArguments(output_dir=str(tmp_path), fast_dropout=True, gradient_checkpointing=True)
    assert not fd.fast_dropout_pays("cuda") and fd.fast_dropout_pays("cpu")


def test_cudnn_attention_is_kept_for_fixed_windows_only(tmp_path, monkeypatch):
    quiet = {"report_to": "none", "eval_strategy": "no", "load_best_model_at_end": False}

    def trainer(whisper: bool, **kwargs) -> SERTrainer:
        model = _tiny_classifier("sdpa")
        model.whisper = whisper  # what phase 2's TopLayers says of its encoder: a fixed window or not
        args = SERTrainingArguments(output_dir=str(tmp_path), **quiet, **kwargs)
        return SERTrainer(model=model, args=args)

    assert not trainer(False).uses_cudnn_attention() and trainer(True).uses_cudnn_attention()
    assert trainer(False, cudnn_attention=True).uses_cudnn_attention()
    assert not trainer(True, cudnn_attention=False).uses_cudnn_attention()

    on_varying, on_fixed = trainer(False), trainer(True)
    with on_varying.kernel_choices(training=False):
        assert torch.backends.cuda.cudnn_sdp_enabled()  # nothing to choose on a CPU
    monkeypatch.setattr(SERTrainingArguments, "device", property(lambda self: torch.device("cuda")))
    before = (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled())
    with on_varying.kernel_choices(training=False):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled()) == before
    with on_fixed.kernel_choices(training=True):
        assert torch.backends.cuda.cudnn_sdp_enabled()
