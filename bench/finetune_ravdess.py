"""Fine-tune on real RAVDESS (speaker-independent) and print UA, WA, macro-F1, wall time and clips/s.

    python bench/finetune_ravdess.py --data_dir ../shared/data/ravdess-16k \
        --model ../shared/models/whisper-tiny.en --output_dir runs/bench-finetune [any TrainingArguments flag]

Tests on actors 21-24, picks the best epoch on actors 19-20, trains on actors 1-18. Exits 0 with a
message when the data or model folder is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--output_dir", default="runs/bench-finetune")
    args, training_flags = parser.parse_known_args()
    for path in (args.data_dir, args.model):
        if not Path(path).exists():
            print(f"skipped: {path} not found (real data and weights live in ../shared)")
            return 0

    from ser_hf.training import parse_args, run_training

    defaults = ["--num_train_epochs", "6", "--learning_rate", "1e-4", "--per_device_train_batch_size", "8"]
    model_args, data_args, training_args = parse_args(
        ["--model_name_or_path", args.model, "--data_dir", args.data_dir, "--output_dir", args.output_dir]
        + ["--disable_tqdm", "true", "--resume", "false"]
        + defaults
        + training_flags
    )
    start = time.perf_counter()
    outcome = run_training(model_args, data_args, training_args)
    wall = time.perf_counter() - start
    history = outcome.trainer.state.log_history
    train_stats = next(h for h in reversed(history) if "train_runtime" in h)
    metrics = outcome.test_metrics
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    summary = {
        "model": args.model,
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "train_clips": len(outcome.trainer.train_dataset),
        "epochs": training_args.num_train_epochs,
        "best_validation_ua": outcome.trainer.state.best_metric,
        "test_ua": round(100 * metrics["test_ua"], 1),
        "test_wa": round(100 * metrics["test_wa"], 1),
        "test_macro_f1": round(100 * metrics["test_macro_f1"], 1),
        "wall_time_s": round(wall, 1),
        "train_runtime_s": round(train_stats["train_runtime"], 1),
        "train_samples_per_s": round(train_stats["train_samples_per_second"], 2),
        "bf16": training_args.bf16,
        "dataloader_num_workers": training_args.dataloader_num_workers,
    }
    if torch.cuda.is_available():
        summary["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print("\n| figure | value |\n| --- | --- |")
    for key, value in summary.items():
        print(f"| {key} | {value} |")
    Path(args.output_dir, "bench_summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
