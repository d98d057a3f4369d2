"""Speaker-independent 6-fold cross-validation on real RAVDESS: ser-hf's frozen path and fine-tuning recipe.

    python bench/cv_ravdess.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Fold k tests actors 4k-3 … 4k; each fold's epoch is chosen on the next fold's actors (taken from its
training actors), never on its test actors. Prints UA / WA / macro-F1 (mean ± std over the folds) and
wall times for:

- the frozen path (strategy="frozen") with silence trimmed and the Whisper window fitted to the clips,
  timed from a cold feature cache (decoding + encoding every clip + 6 heads);
- the same at Whisper's full 30 s window, untrimmed (what a plain WhisperForAudioClassification does);
- ser-hf's fine-tuning recipe (strategy="finetune"; `--skip_finetune` leaves it out).

Exits 0 with a message when the data or model folder is absent. Reports go to --output_dir.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

#: Measured on this kind of machine (2 CPU cores), from the issue: Whisper tiny.en frozen, weighted layer
#: sum, mean pool over real frames, linear head; 10 min features (30 s input), 1 min heads.
REFERENCE = ("reference: Whisper tiny.en frozen, linear head (issue)", "73.2 ± 7.1", "", "", "~11 min")


def _row(name: str, result, seconds: float, note: str = "") -> tuple[str, str, str, str, str]:
    def fmt(metric: str) -> str:
        stats = result.mean_std(metric)
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"

    return (name, fmt("ua"), fmt("wa"), fmt("macro_f1"), f"{seconds:.0f} s{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--output_dir", default="runs/bench-cv")
    parser.add_argument(
        "--cache_dir",
        default=None,
        help="Persistent feature cache for the 30 s and fine-tuning runs (default: under --output_dir).",
    )
    parser.add_argument("--skip_finetune", action="store_true", help="Leave out the fine-tuning recipe.")
    parser.add_argument("--skip_30s", action="store_true", help="Leave out the 30 s window comparison.")
    args = parser.parse_args()
    for path in (args.data_dir, args.model):
        if not Path(path).exists():
            print(f"skipped: {path} not found (real data and weights live in ../shared)")
            return 0

    from ser_hf import load_ravdess
    from ser_hf.crossval import cross_validate

    out = Path(args.output_dir)
    cache = Path(args.cache_dir) if args.cache_dir else out / "feature-cache"
    corpus = load_ravdess(args.data_dir)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"RAVDESS speech: {len(corpus)} clips, {len(set(corpus['speaker']))} actors; model {args.model}; {device}")
    rows, summary = [REFERENCE], {}

    # 1. Frozen path from a cold cache: decoding, encoding and the six heads are all in the time.
    cold = Path(tempfile.mkdtemp(prefix="ser-hf-cold-"))
    try:
        start = time.perf_counter()
        frozen = cross_validate(
            corpus, args.model, strategy="frozen", n_folds=6, output_dir=out / "frozen", progress=say,
            cache_dir=cold / "features", decode_cache_dir=cold / "decoded",
        )  # fmt: skip
        frozen_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cold, ignore_errors=True)
    window = frozen.settings["window_seconds"]
    rows.append(_row(f"ser-hf frozen (trimmed, {window} s window)", frozen, frozen_seconds, " (cold cache)"))
    summary["frozen"] = {**frozen.summary(), "seconds": frozen_seconds, "timings": frozen.timings}

    # 2. The same head at Whisper's full 30 s window, untrimmed (features cached across runs).
    if not args.skip_30s:
        start = time.perf_counter()
        full = cross_validate(
            corpus, args.model, strategy="frozen", n_folds=6, output_dir=out / "frozen-30s", progress=say,
            window_seconds=30, trim_silence=False, cache_dir=cache,
        )  # fmt: skip
        full_seconds = time.perf_counter() - start
        encode = full.timings["prepare (decode + cache features)"]
        rows.append(_row("ser-hf frozen, 30 s window, untrimmed", full, full_seconds, f" (features {encode:.0f} s)"))
        summary["frozen_30s"] = {**full.summary(), "seconds": full_seconds, "timings": full.timings}

    # 3. The fine-tuning recipe.
    if not args.skip_finetune:
        start = time.perf_counter()
        tuned = cross_validate(
            corpus, args.model, strategy="finetune", n_folds=6, output_dir=out / "finetune", progress=say,
            cache_dir=cache,
        )  # fmt: skip
        tuned_seconds = time.perf_counter() - start
        rows.append(
            _row(f"ser-hf fine-tuning recipe ({tuned.settings['window_seconds']} s window)", tuned, tuned_seconds)
        )
        summary["finetune"] = {**tuned.summary(), "seconds": tuned_seconds, "timings": tuned.timings}

    print("\n6 folds by actor (fold k tests actors 4k-3…4k); mean ± std over folds\n")
    print("| method | UA % | WA % | macro-F1 % | wall time |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nper fold UA %:")
    for name, key in (("frozen", "frozen"), ("frozen 30 s", "frozen_30s"), ("finetune", "finetune")):
        result = {"frozen": frozen, "frozen_30s": locals().get("full"), "finetune": locals().get("tuned")}[key]
        if result is not None:
            print(f"  {name:12s} " + "  ".join(f"{100 * f.scores['ua']:.1f}" for f in result.folds))

    targets = [("frozen UA >= 73 (6-fold mean)", 100 * frozen.mean_std("ua")["mean"] >= 73)]
    targets.append(("frozen 6-fold CV incl. features <= 180 s", frozen_seconds <= 180))
    if "frozen_30s" in summary:
        full_encode = summary["frozen_30s"]["timings"]["prepare (decode + cache features)"]
        fitted_encode = summary["frozen"]["timings"]["prepare (decode + cache features)"]
        delta = 100 * (frozen.mean_std("ua")["mean"] - full.mean_std("ua")["mean"])
        print(
            f"\nwindow: fitted {window} s vs 30 s: UA {delta:+.1f} points; feature time {fitted_encode:.0f} s vs "
            f"{full_encode:.0f} s" + (" (30 s features were cached by an earlier run)" if full_encode < 60 else "")
        )
    if "finetune" in summary:
        targets.append(("fine-tuning recipe UA >= 78 (6-fold mean)", 100 * tuned.mean_std("ua")["mean"] >= 78))
    print("\ntargets:")
    for text, met in targets:
        print(f"  [{'met' if met else 'NOT met'}] {text}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
