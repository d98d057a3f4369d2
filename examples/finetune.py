"""Train a speech emotion recognizer, speaker-independently: ser-hf's two-phase pipeline from the command line.

    accelerate launch examples/finetune.py \
        --model_name_or_path openai/whisper-tiny.en --data_dir path/to/RAVDESS --output_dir runs/finetune

Phase 1 fits the head on the encoder's cached features; ``--finetune_layers N`` adds phase 2, the top N
encoder layers fine-tuned through `transformers.Trainer` (where several GPUs and ``accelerate launch`` pay).
Validation speakers (``--eval_speakers``; RAVDESS: actors 19-20) choose, the test speakers (``--test_speakers``;
RAVDESS: 21-24) are scored once, and the model is saved at the top of ``--output_dir`` with its card, ready for
``EmotionRecognizer.from_pretrained``. Takes every `transformers.TrainingArguments` flag too (``--help``).
"""

import contextlib
import json
import sys

from ser_hf.arguments import SERArgumentParser
from ser_hf.trainer import EmotionTrainer


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    model_args, data_args, training_args = SERArgumentParser().parse_args_into_dataclasses()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs: stdout keeps the results
        outcome = EmotionTrainer(model_args, data_args, training_args, progress=progress).train()
    if training_args.should_save:
        print(json.dumps({k: round(v, 4) for k, v in outcome.test_metrics.items()}, indent=2))
        print(f"model saved to {outcome.output_dir} (EmotionRecognizer.from_pretrained({str(outcome.output_dir)!r}))")
        if outcome.hub_commit_url:  # --push_to_hub: one commit, after the test, with the card
            print("pushed:", outcome.hub_commit_url)


if __name__ == "__main__":
    main()
