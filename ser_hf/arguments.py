"""Every option of ser-hf's training, in three dataclasses and one parser.

`ModelArguments` (which encoder, which head, how much of the encoder to fine-tune), `DataArguments` (which
corpora, which speakers are held out, how clips are prepared) and `SERTrainingArguments` (a
`transformers.TrainingArguments` with ser-hf's defaults and its phase-1 and phase-2 settings) drive
``examples/finetune.py``, ``ser-hf train``, ``ser-hf evaluate --cv``, `ser_hf.finetune`,
`EmotionRecognizer.finetune` and `ser_hf.crossval.cross_validate` alike. `SERArgumentParser` shows ser-hf's
own options first, grouped, with the Trainer's below; every flag takes both ``--snake_case`` and
``--kebab-case`` spellings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available

#: What the default statistics head's validation speakers choose the L2 strength from.
DEFAULT_L2_GRID = "0.001,0.003,0.01,0.03,0.1"
#: The loudness every clip is brought to by default (dBFS RMS).
DEFAULT_LOUDNESS_DB = -30.0
#: On a CPU, bf16 autocast pays only for models this wide (training steps of a wav2vec2-base-sized model,
#: width 768, ~1.4x cheaper on a 2-core AMX CPU; Whisper tiny, width 384, no gain).
BF16_CPU_MIN_HIDDEN_SIZE = 512


def _arg(default: Any, help_text: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass
class ModelArguments:
    """Which pretrained encoder, which head, and how much of the encoder phase 2 fine-tunes."""

    _argument_group_name = "Model"

    model_name_or_path: str = _arg(
        "openai/whisper-tiny.en",
        "Hub id or local folder of a pretrained speech encoder (any AutoModelForAudioClassification backbone: "
        "Whisper, wav2vec2, HuBERT, WavLM, data2vec-audio).",
        aliases=["--model"],
    )
    head: str = _arg(
        "stats",
        "stats: the mean and standard deviation of every encoder layer over the clip's real frames, then a "
        "linear classifier (a LayerStatsForAudioClassification; plain transformers loads it with "
        "trust_remote_code=True). weighted: transformers' own weighted-layer-sum head (a plain "
        "*ForAudioClassification checkpoint; lower accuracy).",
        choices=["stats", "weighted"],
    )
    finetune_layers: str = _arg(
        "0",
        "Phase 2: fine-tune the top N encoder layers and the head after the probe ('all' for every layer; 0 "
        "stops after the probe, the default, which scored best within the time budget on 2 CPU cores: "
        "bench/choose_defaults.py).",
    )
    speaker_adaptive: bool = _arg(
        True,
        "Train the statistics head on every clip twice, as heard and mapped onto the training speakers' average "
        "voice, so the model also adapts to a speaker it hears (adapt_to_speaker, live streams). Costs no "
        "per-clip accuracy (bench/choose_defaults.py).",
    )
    window_seconds: int | None = _arg(
        None, "Whisper input window in seconds (default: the longest prepared training clip, rounded up)."
    )
    attn_implementation: str | None = _arg(None, "Attention kernel for phase 2: 'sdpa', 'eager', ...")
    cache_dir: str | None = _arg(None, "Where downloaded models are cached.")
    model_revision: str | None = _arg(None, "Model revision (branch, tag or commit).")

    def layers_to_finetune(self, depth: int) -> int:
        """`finetune_layers` as a number of layers, for an encoder ``depth`` layers deep."""
        text = str(self.finetune_layers).strip().lower()
        count = depth if text == "all" else int(text)
        if not 0 <= count <= depth:
            raise ValueError(
                f"finetune_layers must be 0..{depth} or 'all' for this encoder, not {self.finetune_layers}"
            )
        return count


@dataclass
class DataArguments:
    """Which corpora, which speakers are held out, and how each clip is prepared."""

    _argument_group_name = "Data"

    data_dir: list[str] | None = _arg(  # noqa: RUF009
        None,
        "Corpus folders, archives, manifests or Hub dataset ids: repeat the flag or separate them with commas to "
        "train on several at once. Empty: RAVDESS, downloaded from Zenodo.",
        aliases=["--data"],
        action="extend",
    )
    corpus: str = _arg("auto", "Corpus format: auto, ravdess, emovo, crema-d, tess, savee, emodb, folders or manifest.")
    labels: str = _arg(
        "shared",
        "With several corpora: 'shared' keeps the emotions every corpus has; 'union' keeps them all and ignores, "
        "for each clip, the emotions its corpus never annotates.",
        choices=["shared", "union"],
    )
    test_speakers: str = _arg(
        "auto",
        "Speakers held out for the test ('auto': RAVDESS actors 21-24; for other corpora the last sixth of "
        "each corpus' speakers). Comma-separated; several corpora: 'ravdess:21,emovo:m3'. Empty: no test.",
        aliases=["--test_actors", "--test-actors"],
    )
    eval_speakers: str = _arg(
        "auto",
        "Speakers held out to choose hyper-parameters and epochs ('auto': RAVDESS actors 19-20; otherwise the "
        "twelfth of each corpus' speakers before the test ones). Empty: no validation.",
        aliases=["--eval_actors", "--eval-actors", "--validation_speakers"],
    )
    split: str = _arg(
        "speaker",
        "'speaker' (whole speakers held out: honest) or 'random' (clips: leaks speaker identity).",
        choices=["speaker", "random"],
    )
    trim_silence: bool | None = _arg(
        None,
        "Cut leading and trailing silence; the saved feature extractor does it too, so every way of predicting "
        "agrees. Unset: on with the statistics head, off with --head weighted (a checkpoint without custom code).",
        nargs="?",
        const=True,
    )
    loudness_db: float | None = _arg(
        DEFAULT_LOUDNESS_DB,
        "Bring every clip to this RMS level in dBFS, as the saved feature extractor does at prediction ('none': "
        "off; --head weighted: off unless given). Helps on recordings made at other levels at no cost "
        "in-corpus (bench/cross_corpus.py).",
    )
    speaker_pattern: str | None = _arg(
        None,
        "Label folders: a regular expression whose first group finds each clip's speaker in its path relative to "
        r"the corpus folder, e.g. '^[^/]+/([^/]+)/' for <label>/<speaker>/<clip>.",
    )
    augment: int = _arg(
        0,
        "Add this many augmented copies of every training clip (speed 0.9-1.1x, noise, rooms: ser_hf.augment). "
        "Off by default: each copy costs another encoding of the corpus, which the time budget of the default "
        "run does not leave room for (bench/cross_corpus.py measures the gain).",
    )
    include_song: bool = _arg(False, "Add RAVDESS's song clips.")
    on_invalid: str = _arg(
        "raise", "Files off the corpus' naming scheme: 'raise' or 'skip'.", choices=["raise", "skip"]
    )
    strict_audio: bool = _arg(False, "Stop on unusable audio files instead of skipping them with a report.")
    max_clip_seconds: float | None = _arg(
        600.0, "Skip (and report) clips longer than this; a longer file is rarely one labelled utterance."
    )
    speaker_column: str = _arg("speaker", "The corpus column that names each clip's speaker.")
    preprocessing_num_workers: int | None = _arg(None, "Processes for decoding.")
    decode_cache_dir: str | None = _arg(None, "Where decoded audio is cached (default: the datasets cache).")
    features_cache_dir: str | None = _arg(None, "Where encoder features are cached (default: the datasets cache).")
    # cross-validation and cross-corpus evaluation (ser-hf evaluate)
    cv: int | None = _arg(None, "Cross-validate over this many folds of whole speakers (RAVDESS: 6).")
    folds: str | None = _arg(None, "Test speakers of each fold, e.g. '1,2,3,4;5,6,7,8;...'.")
    validation: str = _arg(
        "next", "Cross-validation: validate on the next fold's speakers ('next') or on N training speakers."
    )
    only_folds: str | None = _arg(None, "Cross-validation: run only these folds (1-based, comma-separated).")
    test_corpus: str | None = _arg(
        None, "Leave one corpus out: train on the others and test on this one, over the emotions they share."
    )

    def preparation(self, head: str) -> tuple[bool, float | None]:
        """(trim silence, loudness dBFS) for a model with this head: the statistics head's defaults prepare
        clips; the weighted head's keep its checkpoint free of custom code unless asked otherwise."""
        plain = head == "weighted"
        trim = (not plain) if self.trim_silence is None else bool(self.trim_silence)
        loudness = None if plain and self.loudness_db == DEFAULT_LOUDNESS_DB else self.loudness_db
        return trim, loudness

    def sources(self) -> list[str]:
        """The corpus sources, comma-separated lists split."""
        out: list[str] = []
        for item in self.data_dir or []:
            out += [part.strip() for part in str(item).split(",") if part.strip()]
        return out


@dataclass
class SERTrainingArguments(TrainingArguments):
    """`TrainingArguments` with ser-hf's defaults, plus the probe's and phase 2's own settings."""

    output_dir: str | None = _arg("runs/ser-hf", "Where the model, its card and the test results are written.")
    # phase 1: the probe
    l2_grid: str = _arg(DEFAULT_L2_GRID, "Probe: L2 strengths the validation speakers choose from.")
    refit: bool = _arg(True, "Once the validation speakers have chosen, fit the final model again with them included.")
    # phase 2
    learning_rate: float = _arg(2e-5, "Phase 2: peak learning rate of the top encoder layer (AdamW).")
    head_learning_rate: float = _arg(1e-4, "Phase 2: peak learning rate of the head.")
    layer_decay: float = _arg(0.7, "Phase 2: each layer below learns at this times the rate of the one above.")
    num_train_epochs: float = _arg(3.0, "Phase 2: epochs (the validation speakers choose among 0..N).")
    per_device_train_batch_size: int = _arg(16, "Phase 2: clips per batch and device.")
    per_device_eval_batch_size: int = _arg(32, "Clips per evaluation batch and device.")
    warmup_steps: float = _arg(0.1, "Phase 2: warm-up steps, or a fraction of all steps when below 1.")
    weight_decay: float = _arg(0.01, "Phase 2: AdamW weight decay.")
    layer_dropout: float = _arg(0.1, "Phase 2: dropout inside the trained encoder layers.")
    time_mask_fraction: float = _arg(0.15, "Phase 2: share of each clip's positions masked in training.")
    time_mask_spans: int = _arg(2, "Phase 2: masked spans per clip.")
    lr_scheduler_type: str = _arg("cosine", "Phase 2: learning-rate schedule after the warm-up.")
    eval_strategy: str = _arg("epoch", "Phase 2: when to score the validation speakers.")
    save_strategy: str = _arg("epoch", "Phase 2: when to save a checkpoint (to resume a killed run).")
    save_total_limit: int | None = _arg(1, "Phase 2: checkpoints kept besides the best one.")
    logging_steps: float = _arg(10, "Log every N steps.")
    metric_for_best_model: str | None = _arg("ua", "The validation metric that chooses (UA: balanced accuracy).")
    greater_is_better: bool | None = _arg(True, "Whether a larger metric_for_best_model is better.")
    remove_unused_columns: bool = _arg(False, "ser-hf's collator needs every column it is given.")
    report_to: str | None = _arg("none", "Where the Trainer reports its logs (tensorboard, wandb, all, ...).")
    train_sampling_strategy: str = _arg(
        "group_by_length",
        "Phase 2 sampler: 'group_by_length' batches clips of similar length (less padding).",
        choices=["random", "sequential", "group_by_length"],
    )
    keep_checkpoints: bool = _arg(False, "Keep phase 2's checkpoints once the model is saved (removed by default).")
    resume: bool = _arg(True, "Continue a killed run from its last complete checkpoint in output_dir.")
    bf16: bool | None = _arg(
        None,
        "bf16 autocast in phase 2. Unset: on where it pays (a CUDA GPU with bf16, or a CPU with native bf16 and a "
        f"model at least {BF16_CPU_MIN_HIDDEN_SIZE} wide).",
        nargs="?",
        const=True,
    )
    cudnn_attention: bool | None = _arg(
        None,
        "Let SDPA attention use cuDNN's kernels on a CUDA GPU. Unset: only for fixed-window models (Whisper); "
        "cuDNN plans per input shape, and varying lengths change shape at almost every step.",
        nargs="?",
        const=True,
    )
    fast_dropout: bool | None = _arg(
        None,
        "Draw phase-2 dropout masks with 16 random bits per element (ser_hf.fast_dropout). Unset: on when "
        "training on a CPU without gradient checkpointing (bench/dropout_speed.py).",
        nargs="?",
        const=True,
    )

    def __post_init__(self) -> None:
        if self.bf16 and not self.use_cpu and not torch.cuda.is_available() and not is_torch_bf16_gpu_available():
            self.use_cpu = True  # bf16 asked for on a machine without an accelerator: autocast on the CPU
        if self.fast_dropout and self.gradient_checkpointing:
            raise ValueError(
                "fast_dropout cannot be combined with gradient_checkpointing: the backward pass recomputes "
                "checkpointed layers with torch's own dropout, so their masks would not match"
            )
        super().__post_init__()

    def l2_values(self) -> tuple[float, ...]:
        values = tuple(float(v) for v in str(self.l2_grid).replace(";", ",").split(",") if v.strip())
        if not values or any(v <= 0 for v in values):
            raise ValueError(f"l2_grid must list positive numbers, not {self.l2_grid!r}")
        return values


ARGUMENT_CLASSES = (ModelArguments, DataArguments, SERTrainingArguments)
#: The fields ser-hf adds or re-defaults in `SERTrainingArguments` (shown first, in their own group).
SER_TRAINING_FIELDS = frozenset(SERTrainingArguments.__annotations__)


class SERArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over the three dataclasses, ser-hf's options first and grouped, the Trainer's last."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("usage", "%(prog)s [--model_name_or_path M] [--data_dir DIR ...] [--output_dir D] [options]")
        super().__init__(ARGUMENT_CLASSES, **kwargs)

    def _add_dataclass_arguments(self, dtype: Any) -> None:
        if dtype is not SERTrainingArguments:
            return super()._add_dataclass_arguments(dtype)
        from typing import get_type_hints

        hints = get_type_hints(dtype)
        ours = self.add_argument_group("Training (ser-hf: phase 1, the probe; phase 2, the top layers)")
        theirs = self.add_argument_group("Every other transformers.TrainingArguments option")
        for item in dataclasses.fields(dtype):
            if not item.init:
                continue
            item.type = hints[item.name]
            self._parse_dataclass_field(ours if item.name in SER_TRAINING_FIELDS else theirs, item)
        return None

    @staticmethod
    def _parse_dataclass_field(parser: Any, item: dataclasses.Field) -> None:
        args = getattr(item.type, "__args__", ())
        HfArgumentParser._parse_dataclass_field(parser, item)
        number = next((t for t in args if t in (int, float)), None)
        if number is not None and type(None) in args:  # an optional number also takes 'none'
            action = next(a for a in parser._actions if a.dest == item.name)
            action.type = _optional(number)


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if str(text).strip().lower() in ("none", "null", "off", "") else kind(text)

    parse.__name__ = f"optional {kind.__name__}"
    return parse


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, SERTrainingArguments]:
    """Command-line flags (or a single .json file of them) → the three argument dataclasses."""
    parser = SERArgumentParser()
    argv = list(argv) if argv is not None else None
    if argv and len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def arguments(
    *, output_dir: str | None = None, **kwargs: Any
) -> tuple[ModelArguments, DataArguments, SERTrainingArguments]:
    """The three dataclasses from keyword arguments (any field of any of them), for the Python API.

    An unknown name is a `TypeError` that names it.
    """
    names = [{f.name for f in fields(cls) if f.init} for cls in ARGUMENT_CLASSES]
    aliases = {"test_actors": "test_speakers", "eval_actors": "eval_speakers", "model": "model_name_or_path"}
    parts: list[dict[str, Any]] = [{}, {}, {}]
    for key, value in kwargs.items():
        key = aliases.get(key, key)
        where = next((i for i, group in enumerate(names) if key in group), None)
        if where is None:
            raise TypeError(
                f"unknown option {key!r}: not a field of ModelArguments, DataArguments or TrainingArguments"
            )
        if key in ("test_speakers", "eval_speakers") and not isinstance(value, str):
            value = ",".join(str(v) for v in value)
        if key == "data_dir" and value is not None and not isinstance(value, (list, tuple)):
            value = [os.fspath(value)]
        parts[where][key] = value
    if output_dir is not None:
        parts[2]["output_dir"] = output_dir
    return ModelArguments(**parts[0]), DataArguments(**parts[1]), SERTrainingArguments(**parts[2])


def default_bf16(config: Any = None, *, use_cpu: bool = False, fp16: bool = False) -> bool:
    """ser-hf's bf16 default for a model ``config``: native bf16 hardware, and on a CPU a wide enough model."""
    from .hardware import bf16_supported

    if fp16:
        return False
    if torch.cuda.is_available() and not use_cpu:
        return bf16_supported("cuda")
    width = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0) or 0)
    return bf16_supported("cpu") and width >= BF16_CPU_MIN_HIDDEN_SIZE


__all__ = [
    "ARGUMENT_CLASSES",
    "DataArguments",
    "ModelArguments",
    "SERArgumentParser",
    "SERTrainingArguments",
    "arguments",
    "default_bf16",
    "parse_args",
]
