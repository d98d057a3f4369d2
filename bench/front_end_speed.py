"""What `--cache_front_end` saves per training step: the frozen CNN run every step against its cached outputs,
paired, in one process.

    flock /tmp/ser-hf-bench.lock python bench/front_end_speed.py --pairs 8

A wav2vec2-base-sized random-init classifier (`Wav2Vec2Config()`), CNN frozen, SDPA attention, fast dropout
(ser-hf's CPU default), AdamW, batch 8 of ``--seconds`` of noise. Steps alternate between feeding the
waveforms (the CNN runs inside the step, as without the cache) and feeding the same clips' front-end outputs,
computed once per clip before timing, through `ser_hf.front_end.FrontEndCollator` and `front_end_bypassed`
(as `SERTrainer` does with the cache). Alternating lets slow drifts of a shared machine hit both sides alike;
the script prints each side's mean and median step time, the median per-pair ratio, and the one-off cost of
encoding the clips.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paired import print_pairs, time_pairs

from ser_hf.fast_dropout import FastDropout
from ser_hf.front_end import FRONT_END_COLUMN, FrontEndCollator, front_end_bypassed, output_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8, help="Timed (CNN every step, cached) step pairs.")
    parser.add_argument("--seconds", type=float, default=4.25, help="Clip length (RAVDESS mean padded: 4.25 s).")
    parser.add_argument("--bf16", action="store_true", help="Steps under CPU bf16 autocast (ser-hf's default on AMX).")
    args = parser.parse_args()

    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    model = Wav2Vec2ForSequenceClassification._from_config(Wav2Vec2Config(num_labels=8), attn_implementation="sdpa")
    model.freeze_feature_encoder()
    model.train()
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    clips = [np.random.default_rng(i).standard_normal(int(args.seconds * 16_000)).astype(np.float32) for i in range(8)]
    labels = torch.randint(0, 8, (8,))
    waveforms = extractor(clips, sampling_rate=16_000, return_tensors="pt")["input_values"]

    front_end = model.base_model.feature_extractor
    began = time.perf_counter()
    with torch.inference_mode():  # what add_front_end_features stores: each clip's output, alone
        encoded = [front_end(waveforms[i : i + 1])[0].transpose(0, 1).numpy() for i in range(8)]
    encode_s = time.perf_counter() - began
    collator = FrontEndCollator(extractor, frames_for=functools.partial(output_frames, model))
    rows = [{FRONT_END_COLUMN: f, "length": clip.size, "label": 0} for f, clip in zip(encoded, clips, strict=True)]
    features = collator(rows)["input_values"]

    def step(cached: bool) -> float:
        began = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
        inputs = features if cached else waveforms
        with front_end_bypassed(front_end if cached else None), FastDropout(), autocast:
            model(input_values=inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - began

    every, cached = time_pairs(lambda: step(False), lambda: step(True), args.pairs, ("CNN every step", "cached"))

    print(f"\n## The frozen front end and the training step (bench/front_end_speed.py; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")  # fmt: skip
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(f"- wav2vec2-base-sized, SDPA, fast dropout, {precision}, batch 8 x {args.seconds} s "
          f"({features.shape[2]} frames), {args.pairs} alternating pairs after one warm-up pair\n")  # fmt: skip
    print_pairs("front end", ("CNN run every step", "cached outputs (--cache_front_end)"), every, cached)
    print(f"Encoding the 8 clips once, one at a time: {encode_s:.2f} s (the cache's one-off cost for them)")


if __name__ == "__main__":
    main()
