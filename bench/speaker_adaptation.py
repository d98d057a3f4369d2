"""How much speech of a speaker does adaptation need, and how much should the training voices count?

    python bench/speaker_adaptation.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

RAVDESS, 6 folds by actor (validation actors = the next fold's), the default model per fold. Each test actor is
adapted to from N of their clips drawn at random (any emotion; ``--seeds`` draws, averaged), the training voices
counting as ``prior_clips`` clips of evidence (`ser_hf.adaptation.SpeakerProfile`), then all of the actor's clips
are scored (the enrolment clips included). This is what `EmotionRecognizer.adapt_to_speaker` does, and what a
stream does as it hears a speaker. Without adaptation the model scores the per-clip UA (first row).

Exits 0 with a message when the data or model folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np
from common import environment, missing, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--clips", default="1,3,5,10,20,60", help="Enrolment sizes (clips per test actor).")
    parser.add_argument("--priors", default="0,1,2,5", help="prior_clips values to compare.")
    parser.add_argument("--seeds", type=int, default=3, help="Random enrolment draws per size.")
    args = parser.parse_args()
    if message := missing(args.data_dir, args.model):
        print(message)
        return 0

    from ser_hf import load_ravdess
    from ser_hf.arguments import arguments
    from ser_hf.crossval import fold_rows, make_folds
    from ser_hf.evaluation import unweighted_average_recall
    from ser_hf.heads import predict_head
    from ser_hf.trainer import EmotionTrainer

    print(environment())
    sizes = [int(n) for n in args.clips.split(",")]
    priors = [float(p) for p in args.priors.split(",")]
    corpus = load_ravdess(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="ser-hf-adapt-") as cache:
        trainer = EmotionTrainer(
            *arguments(model_name_or_path=args.model, output_dir=f"{cache}/out", decode_cache_dir=cache,
                       features_cache_dir=cache),
            corpus=corpus,
        )  # fmt: skip
        encoded = trainer.prepare()
        n_labels = len(encoded.label_names)
        per_clip = []
        scores = {(n, p): [] for n in sizes for p in priors}
        for fold in make_folds(encoded.speakers, 6):
            fit, valid, test = fold_rows(encoded.speakers, fold)
            fitted = trainer.fit(encoded, fit, valid)
            head, normalizer = fitted.head, fitted.speakers
            x, y = encoded.statistics[test], encoded.labels[test]
            per_clip.append(unweighted_average_recall(predict_head(head, x).argmax(-1), y, n_labels))
            speakers = encoded.speakers[test]
            for n in sizes:
                for prior in priors:
                    draws = []
                    for seed in range(args.seeds):
                        rng = np.random.default_rng(seed)
                        mapped = np.empty_like(x)
                        for speaker in set(speakers.tolist()):
                            rows = np.flatnonzero(speakers == speaker)
                            chosen = rng.choice(rows, size=min(n, len(rows)), replace=False)
                            normalizer.prior_clips = prior
                            mapped[rows] = normalizer.apply(x[rows], *normalizer.estimate(x[chosen]))
                        draws.append(unweighted_average_recall(predict_head(head, mapped).argmax(-1), y, n_labels))
                    scores[(n, prior)].append(float(np.mean(draws)))
    print("\nUA % over the 6 folds (mean ± std), each test actor adapted to from N random clips of theirs\n")
    rows = [
        (
            "not adapted (each clip as heard)",
            *([f"{100 * np.mean(per_clip):.1f} ± {100 * np.std(per_clip):.1f}"] * len(priors)),
        )
    ]
    for n in sizes:
        rows.append(
            (
                f"{n} clip(s)",
                *(f"{100 * np.mean(scores[(n, p)]):.1f} ± {100 * np.std(scores[(n, p)]):.1f}" for p in priors),
            )
        )
    print(table(["enrolment", *(f"prior_clips={p:g}" for p in priors)], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
