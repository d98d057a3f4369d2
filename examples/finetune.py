"""Fine-tune a pretrained speech encoder for emotion recognition on RAVDESS, speaker-independently.

    accelerate launch examples/finetune.py \
        --model_name_or_path facebook/wav2vec2-base --data_dir path/to/RAVDESS --output_dir out

Takes every `transformers.TrainingArguments` flag too. Validation actors (--eval_actors, default 19,20)
pick the best epoch by UA; the test actors (--test_actors, default 21-24) are scored once at the end,
and the best model is saved at the top of --output_dir (load it with EmotionRecognizer.from_pretrained)
with its model card (README.md, confusion_matrix.png). `--push_to_hub --hub_model_id user/name` pushes
that folder to the Hub once, after the test (the Trainer's own per-checkpoint pushes are turned off).
"""

import json

from transformers import HfArgumentParser

from ser_hf.training import DataArguments, ModelArguments, SERTrainingArguments, run_training


def main() -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, SERTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    outcome = run_training(model_args, data_args, training_args)
    if outcome.trainer.is_world_process_zero():
        print(json.dumps({k: round(v, 4) for k, v in outcome.test_metrics.items()}, indent=2))
        if outcome.hub_commit_url:  # --push_to_hub: pushed once by run_training, after the test, with the card
            print("pushed:", outcome.hub_commit_url)


if __name__ == "__main__":
    main()
