"""Speaker-independent 6-fold cross-validation on real RAVDESS: ser-hf's frozen path and fine-tuning recipe.

    python bench/cv_ravdess.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Fold k tests actors 4k-3 … 4k; each fold's epoch is chosen on the next fold's actors (taken from its
training actors), never on its test actors. Prints UA / WA / macro-F1 (mean ± std over the folds) and
wall times for:

- the frozen path (strategy="frozen", its default statistics head) with silence trimmed and the Whisper
  window fitted to the clips, timed from a cold feature cache (decoding + encoding every clip + 6 heads);
- the same features with transformers' own weighted-layer head (``head_type="weighted"``, a plain
  WhisperForAudioClassification checkpoint; `--skip_weighted` leaves it out);
- the speaker-adaptive statistics head (``speaker_adaptive=True``; `--skip_adaptive` leaves it out): each
  actor's clips centred on that actor's mean, the test actors' included (unlabelled), so a different
  protocol from the per-clip rows, printed apart from the targets (``bench/speaker_adaptation.py`` measures
  how many clips of a speaker it needs);
- the statistics head at Whisper's full 30 s window, untrimmed;
- ser-hf's fine-tuning recipe (strategy="finetune"; `--skip_finetune` leaves it out; `--finetune_folds 6
  --finetune_epochs 2` runs a shorter check on fold 6 only, labelled as such).

`--skip_frozen` / `--skip_30s` leave out the first and third runs.

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
#: Published frozen baselines on the same 6-fold protocol (EmoBox): the fine-tuning target's bar.
PUBLISHED = ("published best frozen (EmoBox, Whisper-large-v3)", "75.3", "", "", "")


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
    parser.add_argument("--skip_frozen", action="store_true", help="Leave out the cold-cache frozen run.")
    parser.add_argument("--skip_finetune", action="store_true", help="Leave out the fine-tuning recipe.")
    parser.add_argument("--skip_30s", action="store_true", help="Leave out the 30 s window comparison.")
    parser.add_argument("--skip_weighted", action="store_true", help="Leave out the standard weighted-layer head.")
    parser.add_argument("--skip_adaptive", action="store_true", help="Leave out the speaker-adaptive statistics head.")
    parser.add_argument(
        "--finetune_folds",
        default=None,
        help="Run the recipe on these folds only, e.g. '6' or '1,6' (a shorter run; default: all six).",
    )
    parser.add_argument("--finetune_epochs", type=int, default=None, help="Recipe epochs (default: RecipeConfig's).")
    parser.add_argument(
        "--finetune_layers", type=int, default=None, help="Recipe: top layers fine-tuned (default: RecipeConfig's)."
    )
    parser.add_argument(
        "--finetune_no_refit",
        action="store_true",
        help="Recipe: keep the model fitted without the validation speakers (default: refit with them).",
    )
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
    rows = [REFERENCE, PUBLISHED]

    results, seconds = {}, {}

    # 1. Frozen path from a cold cache: decoding, encoding and the six heads are all in the time.
    if not args.skip_frozen:
        cold = Path(tempfile.mkdtemp(prefix="ser-hf-cold-"))
        try:
            start = time.perf_counter()
            results["frozen"] = cross_validate(
                corpus, args.model, strategy="frozen", n_folds=6, output_dir=out / "frozen", progress=say,
                cache_dir=cold / "features", decode_cache_dir=cold / "decoded",
            )  # fmt: skip
            seconds["frozen"] = time.perf_counter() - start
        finally:
            shutil.rmtree(cold, ignore_errors=True)
        window = results["frozen"].settings["window_seconds"]
        name = f"ser-hf frozen, statistics head (trimmed, {window} s window)"
        rows.append(_row(name, results["frozen"], seconds["frozen"], " (cold cache)"))

    # 1b. transformers' own weighted-layer head on the same kind of features (a plain checkpoint).
    if not args.skip_weighted:
        start = time.perf_counter()
        results["frozen_weighted"] = cross_validate(
            corpus, args.model, strategy="frozen", head_type="weighted", n_folds=6, output_dir=out / "frozen-weighted",
            progress=say, cache_dir=cache,
        )  # fmt: skip
        seconds["frozen_weighted"] = time.perf_counter() - start
        window_w = results["frozen_weighted"].settings["window_seconds"]
        name = f"ser-hf frozen, standard weighted-layer head (trimmed, {window_w} s window)"
        rows.append(_row(name, results["frozen_weighted"], seconds["frozen_weighted"]))

    # 1c. Speaker-adaptive statistics head: a different protocol (test actors' unlabelled clips centre them).
    if not args.skip_adaptive:
        start = time.perf_counter()
        results["frozen_adaptive"] = cross_validate(
            corpus, args.model, strategy="frozen", speaker_adaptive=True, n_folds=6, output_dir=out / "frozen-adaptive",
            progress=say, cache_dir=cache,
        )  # fmt: skip
        seconds["frozen_adaptive"] = time.perf_counter() - start
        name = "ser-hf frozen, statistics head, speaker-adaptive (each test actor centred on their 60 clips)"
        rows.append(_row(name, results["frozen_adaptive"], seconds["frozen_adaptive"]))

    # 2. The statistics head at Whisper's full 30 s window, untrimmed (features cached across runs).
    if not args.skip_30s:
        start = time.perf_counter()
        results["frozen_30s"] = cross_validate(
            corpus, args.model, strategy="frozen", n_folds=6, output_dir=out / "frozen-30s", progress=say,
            window_seconds=30, trim_silence=False, cache_dir=cache,
        )  # fmt: skip
        seconds["frozen_30s"] = time.perf_counter() - start
        encode = results["frozen_30s"].timings["prepare (decode + cache features)"]
        name = "ser-hf frozen, statistics head, 30 s window, untrimmed"
        rows.append(_row(name, results["frozen_30s"], seconds["frozen_30s"], f" (features {encode:.0f} s)"))

    # 3. The fine-tuning recipe.
    if not args.skip_finetune:
        groups = [[str(a) for a in range(4 * k - 3, 4 * k + 1)] for k in range(1, 7)]
        chosen = [int(k) for k in args.finetune_folds.split(",")] if args.finetune_folds else list(range(1, 7))
        options = {"epochs": args.finetune_epochs} if args.finetune_epochs else {}
        if args.finetune_layers:
            options["trainable_layers"] = args.finetune_layers
        if args.finetune_no_refit:
            options["refit"] = False
        start = time.perf_counter()
        results["finetune"] = tuned = cross_validate(
            corpus, args.model, strategy="finetune", folds=groups, output_dir=out / "finetune", progress=say,
            cache_dir=cache, only_folds=chosen, **options,
        )  # fmt: skip
        seconds["finetune"] = time.perf_counter() - start
        only = "" if len(chosen) == 6 else f", fold {','.join(map(str, chosen))} only"
        epochs = tuned.settings["recipe"]["epochs"]
        epochs = f"{epochs} epoch" + ("s" if epochs != 1 else "")
        layers = tuned.settings["recipe"]["trainable_layers"]
        window_s = tuned.settings["window_seconds"]
        refit = ", refitted" if tuned.settings["recipe"]["refit"] else ""
        name = f"ser-hf fine-tuning recipe ({window_s} s window, top {layers} layers, {epochs}{refit}{only})"
        encode = tuned.timings["prepare (decode + cache features)"]
        rows.append(_row(name, tuned, seconds["finetune"], f" (features {encode:.0f} s)"))
        print("recipe validation UA by epoch (0 = linear probe) per fold:")
        for f in tuned.folds:
            history = " ".join(f"{100 * v:.1f}" for v in f.info.get("validation_history", []))
            print(f"  fold {f.fold.index}: {history}  (kept epoch {f.info.get('epoch')})")

    print("\n6 folds by actor (fold k tests actors 4k-3…4k); mean ± std over folds\n")
    print("| method | UA % | WA % | macro-F1 % | wall time |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nper fold UA %:")
    for key, result in results.items():
        print(f"  {key:16s} " + "  ".join(f"{f.fold.index}: {100 * f.scores['ua']:.1f}" for f in result.folds))
        if any("l2" in f.info for f in result.folds):
            print(f"  {'':16s} L2 chosen on validation: " + ", ".join(str(f.info.get("l2")) for f in result.folds))

    targets = []
    if "frozen" in results:
        targets.append(("frozen UA >= 73 (6-fold mean)", 100 * results["frozen"].mean_std("ua")["mean"] >= 73))
        targets.append(("frozen 6-fold CV incl. features <= 180 s", seconds["frozen"] <= 180))
    if "frozen" in results and "frozen_30s" in results:
        full_encode = results["frozen_30s"].timings["prepare (decode + cache features)"]
        fitted_encode = results["frozen"].timings["prepare (decode + cache features)"]
        delta = 100 * (results["frozen"].mean_std("ua")["mean"] - results["frozen_30s"].mean_std("ua")["mean"])
        print(
            f"\nwindow: fitted {window} s vs 30 s: UA {delta:+.1f} points; feature time {fitted_encode:.0f} s vs "
            f"{full_encode:.0f} s" + (" (30 s features were cached by an earlier run)" if full_encode < 60 else "")
        )
    if "finetune" in results:
        scope = "6-fold mean" if len(tuned.folds) == 6 else f"mean of {len(tuned.folds)} of the 6 folds only"
        targets.append((f"fine-tuning recipe UA >= 78 ({scope})", 100 * tuned.mean_std("ua")["mean"] >= 78))
    print("\ntargets:")
    for text, met in targets:
        print(f"  [{'met' if met else 'NOT met'}] {text}")
    if "frozen_adaptive" in results:
        print("  (the speaker-adaptive row counts for no target: it centres test actors on their own clips)")
    summary = {
        key: {**result.summary(), "seconds": seconds[key], "timings": result.timings} for key, result in results.items()
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
