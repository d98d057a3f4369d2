"""Which training defaults? Each candidate scored on the validation speakers of the 6 RAVDESS folds.

    python bench/choose_defaults.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Every candidate runs the whole training pipeline per fold (`EmotionTrainer.fit`): fold k tests actors 4k-3…4k and
validates on the next fold's actors. The validation UA (what the validation actors saw when they chose the L2
strength or the epoch, before the refit) chooses the default; the test UA of the refitted model is printed
beside it, never used to choose. The wall time of one training run (prepare from a cold cache, then one fit,
as `make finetune` does) is measured for the budget: at most 5 minutes on 2 CPU cores.

Candidates: the probe (phase 1) without loudness normalisation or speaker adaptation; with loudness
normalisation; with both (per-clip accuracy must not drop for the adaptation); the probe plus phase 2 on the
top 1 and top 2 encoder layers (``--phase2_layers``, ``--phase2_epochs``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
from common import environment, missing, table, target

BUDGET_SECONDS = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--phase2_layers", default="1,2", help="Phase-2 candidates: top N layers ('' for none).")
    parser.add_argument("--phase2_epochs", type=int, default=3)
    parser.add_argument("--folds", default="1,2,3,4,5,6", help="Folds to run (a shorter check: e.g. '6').")
    args = parser.parse_args()
    if message := missing(args.data_dir, args.model):
        print(message)
        return 0

    from ser_hf import load_ravdess
    from ser_hf.arguments import arguments
    from ser_hf.crossval import fold_rows, make_folds
    from ser_hf.evaluation import score
    from ser_hf.trainer import EmotionTrainer

    print(environment())
    corpus = load_ravdess(args.data_dir)
    wanted = {int(k) for k in args.folds.split(",")}
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    candidates = [
        ("probe; no loudness normalisation, no speaker adaptation", {"loudness_db": None, "speaker_adaptive": False}),
        ("probe; loudness normalised", {"speaker_adaptive": False}),
        ("probe; loudness normalised, speaker-adaptive (the default)", {}),
    ]
    for layers in [n for n in args.phase2_layers.split(",") if n.strip()]:
        candidates.append(
            (
                f"probe + phase 2, top {layers} layer(s), {args.phase2_epochs} epochs",
                {"finetune_layers": layers, "num_train_epochs": args.phase2_epochs},
            )
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="ser-hf-defaults-") as cache:
        for name, options in candidates:
            fields = {"decode_cache_dir": cache, "features_cache_dir": cache, "disable_tqdm": True, **options}
            trainer = EmotionTrainer(
                *arguments(model_name_or_path=args.model, output_dir=f"{cache}/out", **fields), corpus=corpus,
                progress=say,
            )  # fmt: skip
            start = time.perf_counter()
            encoded = trainer.prepare()
            prepare_seconds = time.perf_counter() - start
            plan = [f for f in make_folds(encoded.speakers, 6) if f.index in wanted]
            validation, test, fit_seconds = [], [], []
            for fold in plan:
                fit, valid, held_out = fold_rows(encoded.speakers, fold)
                started = time.perf_counter()
                fitted = trainer.fit(encoded, fit, valid)
                fit_seconds.append(time.perf_counter() - started)
                history = fitted.phases.get("phase2", {}).get("validation_ua_by_epoch")
                validation.append(max(history) if history else fitted.phases["phase1"]["validation_ua"])
                logits = trainer.logits(fitted, encoded, held_out)
                test.append(score(logits.argmax(-1), encoded.labels[held_out], encoded.label_names)["ua"])
                say(
                    f"{name}: fold {fold.index}: validation UA {100 * validation[-1]:.1f}, test UA {100 * test[-1]:.1f}"
                )
            one_run = prepare_seconds + float(np.mean(fit_seconds))
            rows.append((name, np.mean(validation), np.std(validation), np.mean(test), prepare_seconds, one_run))
    print(
        f"\nRAVDESS speech, Whisper encoder {args.model}; folds {sorted(wanted)} (validation: the next fold's actors)\n"
    )
    print(
        table(
            ["candidate", "validation UA %", "test UA % (refitted)", "prepare s (cold)", "one training run s"],
            [
                (n, f"{100 * v:.1f} ± {100 * s:.1f}", f"{100 * t:.1f}", f"{p:.0f}", f"{r:.0f}")
                for n, v, s, t, p, r in rows
            ],
        )
    )
    within = [row for row in rows if row[5] <= BUDGET_SECONDS]
    best = max(within, key=lambda row: row[1]) if within else None
    print("\nthe default is the candidate with the best validation UA within the budget:")
    if best is not None:
        print(f"  {best[0]} (validation UA {100 * best[1]:.1f})")
    print(target(f"one training run within {BUDGET_SECONDS:.0f} s for the chosen default", best is not None))
    adaptive, plain = rows[2], rows[1]
    print(
        target(
            "speaker adaptation costs no per-clip validation UA (within 0.5 points)",
            adaptive[1] >= plain[1] - 0.005,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
