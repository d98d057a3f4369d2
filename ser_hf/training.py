"""Fine-tuning through `transformers.Trainer`: argument dataclasses, the trainer, and the run itself.

The same three dataclasses (`ModelArguments`, `DataArguments`, `SERTrainingArguments`) drive
`examples/finetune.py`, ``ser-hf train`` and `finetune`, so every option exists once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import is_torch_bf16_gpu_available

from .atomic import write_json_atomic
from .corpora import load_ravdess
from .errors import SerHfError
from .evaluation import flat_metrics, make_compute_metrics, score
from .fast_dropout import FastDropout, fast_dropout_pays
from .features import (
    AudioCollator,
    DecodeSettings,
    SkippedClip,
    clip_lengths,
    decoded_audio_key,
    is_fixed_window,
    min_input_samples,
    prepare_audio,
    skip_report,
    window_samples,
)
from .front_end import (
    FRONT_END_COLUMN,
    FrontEndCollator,
    add_front_end_features,
    front_end_bypassed,
    front_end_to_cache,
    output_frames,
)
from .hardware import bf16_supported
from .hub import defer_trainer_pushes, push_trained_model
from .model_card import ModelCardCallback, ModelCardFacts, build_model_card
from .modeling import freeze, is_whisper, load_backbone, shorten_whisper_window, whisper_window_seconds
from .recognizer import TRIM_SILENCE_CONFIG_KEY, EmotionRecognizer
from .splits import random_split, split_by_speaker

logger = logging.getLogger(__name__)

#: Written into output_dir by `run_training`: the corpus files left out, and why.
SKIP_REPORT = "skipped_audio.json"
#: The file the Trainer writes last into a checkpoint folder.
TRAINER_STATE_NAME = "trainer_state.json"


@dataclass
class ModelArguments:
    """Which pretrained encoder to fine-tune, and how much of it."""

    model_name_or_path: str = field(
        default="facebook/wav2vec2-base",
        metadata={"help": "Hub id or local folder of any AutoModelForAudioClassification backbone."},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Freeze the CNN feature encoder (wav2vec2, HuBERT, WavLM, data2vec)."}
    )
    cache_front_end: bool | None = field(
        default=None,
        metadata={
            "help": "Run the frozen CNN front end once per clip and train on its cached outputs (ser_hf.front_end; "
            "stored beside the decoded audio, reused by later epochs, folds and runs). Unset (the default): on "
            "when the model has a frozen CNN front end (wav2vec2, HuBERT, WavLM, data2vec-audio) and is not "
            "compiled. Clips are encoded one at a time, as at prediction.",
            "nargs": "?",
            "const": True,
        },
    )
    freeze_base_model: bool = field(
        default=False, metadata={"help": "Freeze the whole encoder and train only the classification head."}
    )
    use_weighted_layer_sum: bool = field(
        default=False, metadata={"help": "Classify a learned softmax-weighted sum of all hidden layers."}
    )
    new_head: bool = field(
        default=False,
        metadata={"help": "Train a fresh head even if the checkpoint's head predicts other labels."},
    )
    whisper_window_seconds: int | None = field(
        default=None,
        metadata={"help": "Whisper input window in seconds (default: the longest training clip, rounded up)."},
    )
    freeze_layers: int = field(
        default=0,
        metadata={
            "help": "Freeze the lowest N transformer layers and the front end beneath them (backprop stops at "
            "layer N: faster steps, a recipe choice; 0 trains them all)."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel: 'sdpa' (torch's fused scaled-dot-product attention), 'eager', ... "
            "(default: transformers' choice, which is 'sdpa' for every supported backbone)."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models."})
    model_revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})


@dataclass
class DataArguments:
    """Which corpus, which speakers for validation and test, and how to prepare the audio."""

    data_dir: str | None = field(
        default=None,
        metadata={"help": "Corpus folder, .zip or Hub dataset id; empty downloads RAVDESS from Zenodo."},
    )
    corpus: str = field(default="ravdess", metadata={"help": "Corpus format.", "choices": ["ravdess"]})
    test_actors: str = field(default="21,22,23,24", metadata={"help": "Speakers held out for the test."})
    eval_actors: str = field(
        default="19,20", metadata={"help": "Speakers held out to pick the best epoch (empty: keep the last)."}
    )
    split: str = field(
        default="speaker",
        metadata={"help": "'speaker' (honest) or 'random' (leaks speaker identity).", "choices": ["speaker", "random"]},
    )
    include_song: bool = field(default=False, metadata={"help": "Add the RAVDESS song clips."})
    on_invalid: str = field(
        default="raise",
        metadata={"help": "Files off the corpus naming scheme: 'raise' or 'skip'.", "choices": ["raise", "skip"]},
    )
    strict_audio: bool = field(
        default=False, metadata={"help": "Stop on unusable audio files instead of skipping them with a report."}
    )
    max_train_seconds: float | None = field(
        default=6.0, metadata={"help": "Randomly crop training clips longer than this (seconds)."}
    )
    max_clip_seconds: float | None = field(
        default=600.0,
        metadata={"help": "Skip (and report) clips longer than this (seconds); a longer file is rarely one utterance."},
    )
    trim_silence: bool = field(
        default=True,
        metadata={
            "help": "Trim leading and trailing silence (recorded in the model's config, so prediction trims too). "
            "On by default: on real RAVDESS it cost no UA (Whisper tiny.en, 2 epochs) and trained a "
            "wav2vec2-base-sized model 1.4x faster (bench/train_speed.py)."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for decoding."})
    pad_to_multiple_of_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Round each batch's padded length up to a multiple of this many seconds, so batches take few "
            "distinct shapes (for GPU kernels that plan per shape, e.g. cuDNN's). Off by default: on a CPU the "
            "padding is extra work, and on a GPU it is not measured yet. Fixed-window models (Whisper) ignore it."
        },
    )
    decode_cache_dir: str | None = field(default=None, metadata={"help": "Where decoded audio is cached."})


#: On a CPU, bf16 autocast pays only for models this wide (bench/train_speed.py on a 2-core AMX CPU: training
#: steps of a wav2vec2-base-sized model, width 768, ~1.4x cheaper; Whisper tiny, width 384, no gain; the
#: tiny test models slower).
BF16_CPU_MIN_HIDDEN_SIZE = 512


def _arg(default: Any, help_text: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass
class SERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults for speech emotion recognition (every flag still available)."""

    learning_rate: float = _arg(3e-5, "Peak learning rate (AdamW).")
    num_train_epochs: float = _arg(10.0, "Training epochs.")
    warmup_steps: float = _arg(0.1, "Warm-up: steps, or a fraction of all steps when below 1.")
    eval_strategy: str = _arg("epoch", "When to evaluate on the validation speakers.")
    save_strategy: str = _arg("epoch", "When to save a checkpoint.")
    logging_steps: float = _arg(10, "Log every N steps.")
    load_best_model_at_end: bool = _arg(True, "Keep the epoch with the best validation UA.")
    metric_for_best_model: str | None = _arg("ua", "Metric that picks the best epoch (UA: balanced accuracy).")
    greater_is_better: bool | None = _arg(True, "Whether a larger metric_for_best_model is better.")
    save_total_limit: int | None = _arg(2, "Checkpoints kept (the best one is always kept).")
    remove_unused_columns: bool = _arg(False, "ser-hf's collator needs the waveform column.")
    train_sampling_strategy: str = _arg(
        "group_by_length",
        "Sampler: 'group_by_length' batches clips of similar length (less padding).",
        choices=["random", "sequential", "group_by_length", "batch_rebalance"],
    )
    resume: bool = _arg(True, "Continue from the last checkpoint in output_dir when there is one.")
    bf16: bool | None = _arg(
        None,
        "bf16 mixed precision (autocast). Unset (the default): on where it pays, i.e. a CUDA GPU with bf16, or a "
        f"CPU with native bf16 (AMX-BF16/AVX512-BF16) and a model at least {BF16_CPU_MIN_HIDDEN_SIZE} wide; "
        "true/false forces it.",
        nargs="?",  # a bare --bf16 still means true, as in TrainingArguments
        const=True,
    )
    cudnn_attention: bool | None = _arg(
        None,
        "Let SDPA attention use cuDNN's kernels on a CUDA GPU. Unset (the default): only for fixed-window models "
        "(Whisper). cuDNN builds an execution plan for every new input shape, and length-grouped, trimmed batches "
        "change shape at almost every step (the suspected cause of the slow GPU defaults measured on an H200).",
        nargs="?",
        const=True,
    )
    fast_dropout: bool | None = _arg(
        None,
        "Draw dropout masks with 16 random bits per element instead of one random number (ser_hf.fast_dropout: "
        "the same keep probability to within 7.6e-6, the mean kept exactly). Unset (the default): on when "
        "training on the CPU without gradient checkpointing: a wav2vec2-base step 1.23x faster in fp32 and 1.35x "
        "under bf16 autocast on 2 cores (bench/dropout_speed.py). CUDA's dropout is already fused, and "
        "checkpointed layers would be recomputed with other masks.",
        nargs="?",
        const=True,
    )

    def __post_init__(self) -> None:
        if self.bf16 and not self.use_cpu and not torch.cuda.is_available() and not is_torch_bf16_gpu_available():
            self.use_cpu = True  # bf16 asked for on a machine without an accelerator: autocast on the CPU
        if self.fast_dropout and self.gradient_checkpointing:
            raise ValueError(
                "--fast_dropout true cannot be combined with --gradient_checkpointing: the backward pass "
                "recomputes checkpointed layers with torch's own dropout, so their masks would not match"
            )
        super().__post_init__()


def default_bf16(config: Any = None, *, use_cpu: bool = False, fp16: bool = False) -> bool:
    """ser-hf's bf16 default for a model ``config``: native bf16 hardware, and on a CPU a wide enough model."""
    if fp16:
        return False
    if torch.cuda.is_available() and not use_cpu:
        return bf16_supported("cuda")
    width = int(getattr(config, "hidden_size", 0) or 0)
    return bf16_supported("cpu") and width >= BF16_CPU_MIN_HIDDEN_SIZE


def resolve_bf16(training_args: TrainingArguments, model: Any) -> bool:
    """Settle an unset ``bf16`` for this model (see `default_bf16`); an accelerate config's choice wins."""
    if training_args.bf16 is None:
        if training_args.mixed_precision != "no":  # ACCELERATE_MIXED_PRECISION, e.g. from `accelerate launch`
            training_args.bf16 = training_args.mixed_precision == "bf16"
        else:
            training_args.bf16 = default_bf16(model.config, use_cpu=training_args.use_cpu, fp16=training_args.fp16)
            if training_args.bf16:
                training_args.mixed_precision = "bf16"
        logger.info("bf16 autocast %s", "on" if training_args.bf16 else "off")
    return bool(training_args.bf16)


@dataclass
class TrainingOutcome:
    """What a fine-tuning run produced."""

    recognizer: EmotionRecognizer
    test_metrics: dict[str, float]
    test_report: dict[str, Any]
    skipped: list[SkippedClip]
    trainer: Trainer
    hub_commit_url: str | None = None  # set when --push_to_hub pushed the model


class EpochSeededSampler(torch.utils.data.Sampler):
    """Reseeds a sampler's ``generator`` with seed + epoch before each pass.

    transformers' length-grouped sampler shuffles with the global RNG, which processes consume
    differently (dropout, crops), so from the second epoch on each process would draw its own
    order and data-parallel ranks would see some clips twice and others never. Seeded per epoch,
    every process draws the same order, and a resumed run the same order as the original.
    """

    def __init__(self, sampler: Any, seed: int):
        self.sampler, self.seed, self.epoch = sampler, seed, 0
        sampler.generator = torch.Generator()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        self.sampler.generator.manual_seed(self.seed + self.epoch)
        return iter(self.sampler)


#: SDPA's backends other than cuDNN's, in torch's order of preference.
NON_CUDNN_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class SERTrainer(Trainer):
    """A `Trainer` that crops training clips at random (its own collator) and evaluates on whole clips.

    With ``train_sampling_strategy="group_by_length"`` it groups by the decoded ``length`` column, read as
    one list (the stock sampler looks each length up row by row: ~5 s per epoch for 1080 clips). With
    ``front_end`` (`--cache_front_end`) batches carry the frozen CNN's cached outputs and every step runs with
    that CNN bypassed (`ser_hf.front_end`). Training steps on a CPU draw their dropout masks with
    `ser_hf.fast_dropout.FastDropout` (``--fast_dropout``), and on a CUDA GPU steps over varying input lengths
    keep SDPA off cuDNN's kernels (``--cudnn_attention``).
    """

    def __init__(
        self,
        *args: Any,
        train_collator: AudioCollator | None = None,
        front_end: torch.nn.Module | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.train_collator = train_collator
        self.front_end = front_end  # cached front end (--cache_front_end): batches carry its outputs

    def _length_grouped_sampler(self, dataset: Any, batch_size: int, generator: Any = None) -> Any:
        """`LengthGroupedSampler` over the precomputed ``length`` column read as one list (``None``: not applicable)."""
        column = self.args.length_column_name
        if (
            self.args.train_sampling_strategy != "group_by_length"
            or self.args.world_size > 1
            or not isinstance(dataset, Dataset)
            or column not in dataset.column_names
        ):
            return None
        return LengthGroupedSampler(batch_size, lengths=clip_lengths(dataset, column), generator=generator)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        sampler = self._length_grouped_sampler(dataset, batch_size)
        if sampler is None:
            sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler) and sampler.generator is None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededSampler(sampler, seed)
        return sampler

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        generator = torch.Generator().manual_seed(seed)
        sampler = self._length_grouped_sampler(eval_dataset, self.args.eval_batch_size, generator)
        return sampler if sampler is not None else super()._get_eval_sampler(eval_dataset)

    def uses_fast_dropout(self) -> bool:
        """Whether training steps draw dropout with `FastDropout` (``--fast_dropout``; unset: on a CPU)."""
        if self.args.torch_compile or self.args.gradient_checkpointing:
            return False  # a compiled graph draws its own dropout; see SERTrainingArguments.fast_dropout
        chosen = getattr(self.args, "fast_dropout", False)
        return fast_dropout_pays(self.args.device) if chosen is None else bool(chosen)

    def uses_cudnn_attention(self) -> bool:
        """Whether SDPA may pick cuDNN's attention (``--cudnn_attention``; unset: fixed-window inputs only)."""
        chosen = getattr(self.args, "cudnn_attention", True)
        if chosen is not None:
            return bool(chosen)
        collator = self.train_collator or self.data_collator
        return is_fixed_window(getattr(collator, "feature_extractor", None))

    def kernel_choices(self, training: bool) -> contextlib.ExitStack:
        """The context a step runs in: the cached front end bypassed, fast dropout (training, CPU), SDPA
        without cuDNN (CUDA, varying shapes)."""
        stack = contextlib.ExitStack()
        stack.enter_context(front_end_bypassed(self.front_end))
        if training and self.uses_fast_dropout():
            stack.enter_context(FastDropout())  # the step's backward pass runs inside it too
        if self.args.device.type == "cuda" and not self.uses_cudnn_attention():
            stack.enter_context(sdpa_kernel(NON_CUDNN_ATTENTION))
        return stack

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        with self.kernel_choices(training=True):
            return super().training_step(*args, **kwargs)

    def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.kernel_choices(training=False):
            return super().prediction_step(*args, **kwargs)

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        eval_collator, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = eval_collator


def load_corpus(data_args: DataArguments) -> Dataset:
    """The corpus named by the data arguments."""
    if data_args.corpus == "ravdess":
        return load_ravdess(data_args.data_dir, include_song=data_args.include_song, on_invalid=data_args.on_invalid)
    raise ValueError(f"unknown corpus {data_args.corpus!r}")


def make_splits(corpus: Dataset, data_args: DataArguments, seed: int = 42) -> DatasetDict:
    """Speaker-independent train/validation/test splits (or the leaky random split when asked)."""
    if data_args.split == "random":
        return random_split(corpus, seed=seed, eval_size=0.1 if data_args.eval_actors else 0.0)
    return split_by_speaker(corpus, test_speakers=data_args.test_actors, eval_speakers=data_args.eval_actors)


def check_launch(training_args: TrainingArguments) -> None:
    """Refuse a multi-process launch that the Trainer would run as independent single processes.

    Without a GPU, ``accelerate launch --multi_gpu`` / ``torchrun`` start N processes that each see
    one process (all training on everything and writing the same folder) unless the Trainer is told
    to use the CPU (gloo).
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise SerHfError(
            f"launched as {launched} processes, but each one trains alone (no GPU found); "
            "add --use_cpu true to train data-parallel on CPUs (gloo)"
        )


def check_checkpoint(checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint folder that a killed run left half-written (the Trainer writes its state last)."""
    state = Path(checkpoint) / TRAINER_STATE_NAME
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as err:
        problem = "does not exist" if not Path(checkpoint).is_dir() else f"has no readable {TRAINER_STATE_NAME}"
        raise SerHfError(f"{checkpoint}: not a complete checkpoint: it {problem} (an interrupted save?)") from err


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was completely written, or ``None``.

    A run killed while saving a checkpoint leaves it without its trainer state; resuming from
    it would fail, so it is skipped (with a warning) for the one before.
    """
    steps = {}
    for path in Path(output_dir).iterdir():
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", path.name)
        if match and path.is_dir():
            steps[path] = int(match.group(1))
    for checkpoint in sorted(steps, key=steps.get, reverse=True):
        try:
            check_checkpoint(checkpoint)
            return str(checkpoint)
        except SerHfError as err:
            logger.warning("Skipping %s", err)
    return None


def _training_columns(dataset: Dataset) -> Dataset:
    inputs = FRONT_END_COLUMN if FRONT_END_COLUMN in dataset.column_names else "waveform"
    return dataset.with_format("numpy", columns=[inputs, "label", "length"])


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: SERTrainingArguments,
    corpus: Dataset | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> TrainingOutcome:
    """Fine-tune, pick the best epoch on the validation speakers, score the test speakers, save to output_dir.

    ``callbacks`` are extra `transformers.TrainerCallback`s handed to the trainer (logging, timing, early stop).
    """
    set_seed(training_args.seed)
    check_launch(training_args)
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is not None:
        check_checkpoint(checkpoint)
    elif training_args.resume and os.path.isdir(training_args.output_dir):
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        if checkpoint:
            logger.warning("Resuming from %s", checkpoint)
    corpus = corpus if corpus is not None else load_corpus(data_args)
    label_names = list(corpus.features["label"].names)
    model, feature_extractor = load_backbone(
        model_args.model_name_or_path,
        label_names,
        use_weighted_layer_sum=model_args.use_weighted_layer_sum,
        new_head=model_args.new_head,
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        **({"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}),
    )
    freeze(
        model,
        feature_encoder=model_args.freeze_feature_encoder,
        base_model=model_args.freeze_base_model,
        lower_layers=model_args.freeze_layers,
    )
    resolve_bf16(training_args, model)
    # Inference trims silence by default exactly when training did (EmotionRecognizer.trim_silence).
    setattr(model.config, TRIM_SILENCE_CONFIG_KEY, bool(data_args.trim_silence))
    rate = int(feature_extractor.sampling_rate)

    with training_args.main_process_first(desc="decoding audio"):
        decoded, skipped = prepare_audio(
            corpus,
            rate,
            trim_silence=data_args.trim_silence,
            max_seconds=data_args.max_clip_seconds,
            strict=data_args.strict_audio,
            num_proc=data_args.preprocessing_num_workers,
            cache_dir=data_args.decode_cache_dir,
        )
    if training_args.should_save:
        report_path = write_json_atomic(
            os.path.join(training_args.output_dir, SKIP_REPORT), skip_report(skipped, len(corpus))
        )
        if skipped:
            logger.warning("The %d skipped file(s) are listed in %s", len(skipped), report_path)
    min_samples = min_input_samples(model.config)
    front_end = front_end_to_cache(model, model_args.cache_front_end, torch_compile=training_args.torch_compile)
    if front_end is not None:
        settings = DecodeSettings(rate, data_args.max_clip_seconds, data_args.trim_silence)
        with training_args.main_process_first(desc="running the frozen front end"):
            decoded = add_front_end_features(
                decoded,
                model,
                feature_extractor,
                audio_key=decoded_audio_key(corpus, settings, skipped, data_args.decode_cache_dir),
                min_samples=min_samples,
                cache_dir=data_args.decode_cache_dir,
                device=training_args.device,
            )
    splits = make_splits(decoded, data_args, seed=training_args.seed)
    if is_whisper(model):
        seconds = model_args.whisper_window_seconds or whisper_window_seconds(max(clip_lengths(splits["train"])) / rate)
        shorten_whisper_window(model, feature_extractor, seconds)

    if training_args.dataloader_pin_memory and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator
    has_validation = "validation" in splits
    if not has_validation:
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    window = window_samples(feature_extractor)
    multiple = round(data_args.pad_to_multiple_of_seconds * rate) if data_args.pad_to_multiple_of_seconds else None
    max_train = int(data_args.max_train_seconds * rate) if data_args.max_train_seconds else None
    if window:
        max_train = min(max_train or window, window)
    collator = AudioCollator
    if front_end is not None:
        collator = functools.partial(FrontEndCollator, frames_for=functools.partial(output_frames, model))
    card_facts = ModelCardFacts.for_run(
        model, feature_extractor, splits, model_args=model_args, data_args=data_args, training_args=training_args,
        skipped=len(skipped),
    )  # fmt: skip
    defer_trainer_pushes(training_args)  # one push at the end, with the card (see ser_hf.hub)
    trainer = SERTrainer(
        model=model,
        args=training_args,
        train_dataset=_training_columns(splits["train"]),
        eval_dataset=_training_columns(splits["validation"]) if has_validation else None,
        processing_class=feature_extractor,
        data_collator=collator(feature_extractor, window, min_samples=min_samples, pad_to_multiple_of=multiple),
        train_collator=collator(
            feature_extractor, max_train, random_crop=True, min_samples=min_samples, pad_to_multiple_of=multiple
        ),
        front_end=front_end,
        compute_metrics=make_compute_metrics(label_names),
        callbacks=[ModelCardCallback(card_facts), *(callbacks or ())],
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)

    prediction = trainer.predict(_training_columns(splits["test"]), metric_key_prefix="test")
    report = score(prediction.predictions.argmax(-1), prediction.label_ids, label_names)
    test_metrics = {f"test_{k}": v for k, v in flat_metrics(report).items()}
    test_metrics.update({k: v for k, v in prediction.metrics.items() if k not in test_metrics})
    trainer.log_metrics("test", test_metrics)
    trainer.save_metrics("test", test_metrics)

    recognizer = EmotionRecognizer(trainer.model, feature_extractor, device=trainer.args.device)
    hub_commit_url = None
    state_dict = None
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:  # every process helps gather the shards
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_world_process_zero():
        card_facts.test_report, card_facts.model_id = report, trainer.hub_model_id or card_facts.model_id
        recognizer.model_card = build_model_card(card_facts)
        recognizer.save_pretrained(training_args.output_dir, state_dict=state_dict)
        write_json_atomic(os.path.join(training_args.output_dir, "test_report.json"), report)
        if training_args.push_to_hub:
            hub_commit_url = push_trained_model(recognizer, trainer)
    return TrainingOutcome(recognizer, test_metrics, report, skipped, trainer, hub_commit_url)


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sort keyword arguments into model, data and training arguments by field name."""
    model_names = {f.name for f in fields(ModelArguments)}
    data_names = {f.name for f in fields(DataArguments)}
    parts: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    for key, value in kwargs.items():
        parts[0 if key in model_names else 1 if key in data_names else 2][key] = value
    return parts


def finetune(
    model_name_or_path: str,
    corpus: Dataset | str | None = None,
    *,
    output_dir: str,
    test_actors: str | Sequence[int] = "21,22,23,24",
    eval_actors: str | Sequence[int] = "19,20",
    **kwargs: Any,
) -> TrainingOutcome:
    """Fine-tune ``model_name_or_path`` on a corpus (a `Dataset` or a RAVDESS source) from Python.

    Extra keyword arguments are any field of `ModelArguments`, `DataArguments` or `TrainingArguments`.
    """
    model_kwargs, data_kwargs, training_kwargs = split_kwargs(kwargs)
    as_text = lambda actors: actors if isinstance(actors, str) else ",".join(str(a) for a in actors)  # noqa: E731
    data_args = DataArguments(test_actors=as_text(test_actors), eval_actors=as_text(eval_actors), **data_kwargs)
    if isinstance(corpus, (str, os.PathLike)):
        data_args.data_dir, corpus = str(corpus), None
    model_args = ModelArguments(model_name_or_path=model_name_or_path, **model_kwargs)
    training_args = SERTrainingArguments(output_dir=output_dir, **training_kwargs)
    return run_training(model_args, data_args, training_args, corpus=corpus)


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataArguments, SERTrainingArguments]:
    """Parse command-line flags (or a single .json file of them) into the three argument dataclasses."""
    parser = HfArgumentParser((ModelArguments, DataArguments, SERTrainingArguments))
    argv = list(argv) if argv is not None else None
    if argv and len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)
