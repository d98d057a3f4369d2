"""What `--fast_dropout` saves per training step: torch's dropout against ser_hf.fast_dropout, paired, in one process.

    flock /tmp/ser-hf-bench.lock python bench/dropout_speed.py --pairs 8

A wav2vec2-base-sized random-init classifier (`Wav2Vec2Config()`: dropout 0.1 on attention, activations and
hidden states, LayerDrop 0.1), CNN frozen, batch 8 of ``--seconds`` of noise, AdamW. Steps alternate between
the two dropouts (native, fast, native, fast, ...), so that slow drifts of a shared machine hit both alike; the
script prints each side's mean and median step time and the median of the per-pair ratios. It also times the
dropout calls alone: one ``F.dropout`` forward + backward on a (batch, frames, 3072) activation.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import environment
from paired import print_pairs, time_pairs

from ser_hf.fast_dropout import FastDropout, fast_dropout


def time_dropout_alone(frames: int, batch: int, repeats: int = 10) -> dict[str, float]:
    """Milliseconds for one dropout forward + backward on an FFN-sized activation, each way."""
    x = torch.randn(batch, frames, 3072, requires_grad=True)
    out = {}
    for name, fn in (("native", lambda: F.dropout(x, 0.1, True)), ("fast", lambda: fast_dropout(x, 0.1))):
        fn().sum().backward()
        began = time.perf_counter()
        for _ in range(repeats):
            fn().sum().backward()
        out[name] = (time.perf_counter() - began) / repeats * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8, help="Timed (native, fast) step pairs.")
    parser.add_argument("--seconds", type=float, default=4.25, help="Clip length (RAVDESS mean padded: 4.25 s).")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--bf16", action="store_true", help="Steps under CPU bf16 autocast (ser-hf's default on AMX).")
    args = parser.parse_args()
    print(environment())

    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(num_labels=8)
    model = Wav2Vec2ForSequenceClassification._from_config(config, attn_implementation=args.attn)
    model.freeze_feature_encoder()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    inputs = torch.randn(8, int(args.seconds * 16_000))
    labels = torch.randint(0, 8, (8,))

    def step(fast: bool) -> float:
        began = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
        with FastDropout() if fast else contextlib.nullcontext(), autocast:
            model(input_values=inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - began

    native, fast = time_pairs(lambda: step(False), lambda: step(True), args.pairs, ("native", "fast"))
    frames = int(model._get_feat_extract_output_lengths(torch.tensor(inputs.shape[1])))
    alone = time_dropout_alone(frames, 8)

    print("\n## Dropout and the training step: torch's dropout against ser_hf.fast_dropout\n")
    print(f"- wav2vec2-base-sized, {args.attn} attention, {'bf16 autocast' if args.bf16 else 'fp32'}, batch 8 x "
          f"{args.seconds} s ({frames} frames), {args.pairs} alternating pairs after one warm-up pair\n")  # fmt: skip
    print_pairs("dropout", ("torch (native)", "ser_hf.fast_dropout"), native, fast)
    print(f"One dropout forward + backward on (8, {frames}, 3072): native {alone['native']:.1f} ms, "
          f"fast {alone['fast']:.1f} ms ({alone['native'] / alone['fast']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
