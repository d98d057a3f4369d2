"""How many unlabelled clips of a speaker does speaker adaptation need? RAVDESS, 6 folds by actor.

    python bench/speaker_adaptation.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Trains the frozen statistics head per fold twice on the same cached features (validation actors = the next
fold's, as in ``bench/cv_ravdess.py``): the per-clip head (``FrozenStrategy()``), and the speaker-adaptive one
(``FrozenStrategy(speaker_adaptive=True)``: training actors centred on their own mean). The adaptive head is
then scored with each test actor centred on the mean of N of their clips, drawn at random (any emotion;
``--seeds`` draws, averaged), as `EmotionRecognizer.adapt_to_speaker` would, and without adaptation (the
training actors' average). Scores cover all of the test actors' clips, the enrolment clips included.

Exits 0 with a message when the data or model folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--cache_dir", default="runs/bench-cv/feature-cache", help="Feature cache (shared with cv).")
    parser.add_argument("--clips", default="3,5,10,20", help="Enrolment sizes (clips per test actor).")
    parser.add_argument("--seeds", type=int, default=3, help="Random enrolment draws per size.")
    args = parser.parse_args()
    for path in (args.data_dir, args.model):
        if not Path(path).exists():
            print(f"skipped: {path} not found (real data and weights live in ../shared)")
            return 0

    from ser_hf import load_ravdess
    from ser_hf.crossval import fold_rows, make_folds
    from ser_hf.evaluation import unweighted_average_recall
    from ser_hf.frozen import FrozenStrategy, predict_head

    corpus = load_ravdess(args.data_dir)
    start = time.perf_counter()
    plain = FrozenStrategy(args.model, cache_dir=args.cache_dir)
    adaptive = FrozenStrategy(args.model, cache_dir=args.cache_dir, speaker_adaptive=True)
    per_clip, centred = plain.prepare(corpus), adaptive.prepare(corpus)
    print(f"features: {time.perf_counter() - start:.0f} s ({len(corpus)} clips)", file=sys.stderr)
    speakers, labels, n = centred.speakers, centred.labels, len(centred.label_names)
    raw = per_clip.features  # the same cached statistics, uncentred
    sizes = [int(k) for k in args.clips.split(",")]
    ua: dict[str, list[float]] = {}

    def record(name: str, logits: np.ndarray, rows: np.ndarray) -> None:
        ua.setdefault(name, []).append(100 * float(unweighted_average_recall(logits.argmax(-1), labels[rows], n)))

    rows_speakers = centred.dataset["speaker"]
    for fold in make_folds(rows_speakers, 6):
        fit, valid, test = fold_rows(rows_speakers, fold)
        per_clip_head = plain.fit(per_clip, fit, valid).head
        record("per-clip head (no adaptation)", predict_head(per_clip_head, per_clip.features[test]), test)
        head = adaptive.fit(centred, fit, valid).head
        reference = head.speaker_reference.numpy().reshape(raw.shape[1:])
        record("adaptive head, not adapted (training actors' average)", predict_head(head, raw[test] - reference), test)
        record("adaptive head, adapted on all 60 clips of the actor", predict_head(head, centred.features[test]), test)
        for size in sizes:
            scores = []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                x = raw[test].copy()
                for key in dict.fromkeys(speakers[test]):
                    own = np.flatnonzero(speakers[test] == key)
                    x[own] -= raw[test][rng.choice(own, size, replace=False)].mean(axis=0)
                logits = predict_head(head, x)
                scores.append(float(unweighted_average_recall(logits.argmax(-1), labels[test], n)))
            name = f"adaptive head, adapted on {size} random clips of the actor"
            ua.setdefault(name, []).append(100 * float(np.mean(scores)))
        print(f"fold {fold.index}: " + "  ".join(f"{v[-1]:.1f}" for v in ua.values()), file=sys.stderr, flush=True)

    print(f"\nRAVDESS, 6 folds by actor, {args.model}; UA % mean ± std over folds ({args.seeds} draws per size)\n")
    print("| head | UA % | per fold |\n| --- | --- | --- |")
    for name, values in ua.items():
        folds = " ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {np.mean(values):.1f} ± {np.std(values):.1f} | {folds} |")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
