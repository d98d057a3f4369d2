"""Speaker-independent 6-fold cross-validation on real RAVDESS: ser-hf's defaults, and phase 2 beside them.

    python bench/cv_ravdess.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Runs what ``ser-hf evaluate --cv 6`` runs (fold k tests actors 4k-3…4k; each fold chooses on the next fold's
actors, never on its test actors) and prints UA / WA / macro-F1 (mean ± std over the folds) with wall times:

- the defaults, timed from a cold cache (decoding, encoding and the six fits all in the time); a speaker-adaptive
  model is also scored with each test actor adapted to from their own 60 unlabelled clips, another protocol,
  printed apart;
- transformers' own weighted-layer head on the same encoder (``--skip_weighted`` leaves it out);
- phase 2 on the top N layers (``--phase2_layers 1,2``; ``--phase2_epochs``; ``--skip_phase2`` leaves it out).

Exits 0 with a message when the data or model folder is absent. Reports go to --output_dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import environment, missing, table, target

#: Published frozen baselines on the same 6-fold protocol (EmoBox, unweighted average recall).
PUBLISHED = [
    ("published, frozen WavLM-large + small head (EmoBox)", "72.0"),
    ("published, frozen Whisper-large-v3 + small head (EmoBox)", "75.3"),
]
UA_TARGET, SECONDS_TARGET = 76.5, 120.0


def _row(name: str, result, seconds: float, note: str = "") -> tuple[str, ...]:
    def fmt(metric: str, stats=None) -> str:
        stats = stats or result.mean_std(metric)
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"

    return (name, fmt("ua"), fmt("wa"), fmt("macro_f1"), f"{seconds:.0f} s{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--output_dir", default="runs/bench-cv")
    parser.add_argument("--skip_weighted", action="store_true")
    parser.add_argument("--skip_phase2", action="store_true")
    parser.add_argument("--phase2_layers", default="1,2")
    parser.add_argument("--phase2_epochs", type=int, default=3)
    parser.add_argument("--phase2_folds", default=None, help="Phase 2 on these folds only, e.g. '6' (shorter).")
    args = parser.parse_args()
    if message := missing(args.data_dir, args.model):
        print(message)
        return 0

    from ser_hf import load_ravdess
    from ser_hf.crossval import cross_validate

    print(environment())
    out = Path(args.output_dir)
    corpus = load_ravdess(args.data_dir)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    print(f"RAVDESS speech: {len(corpus)} clips, 24 actors; encoder {args.model}")
    results, seconds, rows = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="ser-hf-cv-") as cold:
        caches = {"decode_cache_dir": cold, "features_cache_dir": cold, "disable_tqdm": True}
        start = time.perf_counter()
        results["defaults"] = cross_validate(
            corpus, args.model, n_folds=6, output_dir=out / "defaults", progress=say, **caches
        )
        seconds["defaults"] = time.perf_counter() - start
        default = results["defaults"]
        rows.append(_row("ser-hf defaults (statistics head, the probe)", default, seconds["defaults"], " (cold cache)"))
        if default.adapted:
            adapted = {m: default.adapted_mean_std(m) for m in ("ua", "wa", "macro_f1")}
            rows.append(
                (
                    "*another protocol:* the same models adapted to each test actor (their 60 unlabelled clips)",
                    *(f"{100 * adapted[m]['mean']:.1f} ± {100 * adapted[m]['std']:.1f}" for m in adapted),
                    "(same run)",
                )
            )
        if not args.skip_weighted:
            start = time.perf_counter()
            results["weighted"] = cross_validate(
                corpus, args.model, n_folds=6, head="weighted", output_dir=out / "weighted", progress=say, **caches
            )
            seconds["weighted"] = time.perf_counter() - start
            rows.append(
                _row("transformers' weighted-layer head (--head weighted)", results["weighted"], seconds["weighted"])
            )
        if not args.skip_phase2:
            for layers in [n for n in args.phase2_layers.split(",") if n.strip()]:
                key = f"phase2-top{layers}"
                start = time.perf_counter()
                results[key] = cross_validate(
                    corpus, args.model, n_folds=6, finetune_layers=layers, num_train_epochs=args.phase2_epochs,
                    only_folds=args.phase2_folds, output_dir=out / key, progress=say, **caches,
                )  # fmt: skip
                seconds[key] = time.perf_counter() - start
                scope = "" if not args.phase2_folds else f", folds {args.phase2_folds} only"
                name = f"probe + phase 2, top {layers} layer(s), {args.phase2_epochs} epochs, refitted{scope}"
                rows.append(_row(name, results[key], seconds[key]))

    print("\n6 folds by actor (fold k tests actors 4k-3…4k); mean ± std over the folds\n")
    print(
        table(["method", "UA %", "WA %", "macro-F1 %", "wall time"], rows + [(n, v, "", "", "") for n, v in PUBLISHED])
    )
    print("\nper fold UA %:")
    for key, result in results.items():
        print(f"  {key:14s} " + "  ".join(f"{f.fold.index}: {100 * f.scores['ua']:.1f}" for f in result.folds))
        for f in result.folds:
            phase2 = f.info.get("phase2")
            if phase2:
                history = " ".join(f"{100 * v:.1f}" for v in phase2["validation_ua_by_epoch"])
                print(f"  {'':14s}   fold {f.fold.index}: validation UA by epoch (0 = the probe) {history}; "
                      f"kept {phase2['chosen_epoch']}")  # fmt: skip
    ua = 100 * default.mean_std("ua")["mean"]
    print("\ntargets (ser-hf evaluate --cv 6 with the defaults):")
    print(target(f"mean UA >= {UA_TARGET} (got {ua:.1f})", ua >= UA_TARGET))
    print(target(f"from a cold cache in <= {SECONDS_TARGET:.0f} s (took {seconds['defaults']:.0f} s)",
                 seconds["defaults"] <= SECONDS_TARGET))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: {**r.summary(), "seconds": seconds[k], "timings": r.timings} for k, r in results.items()}
    (out / "bench_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
