"""ser-hf's one training pipeline, in two phases (the shape of SetFit's trainer).

1. **Prepare.** Decode every clip once and encode it once (`ser_hf.encoding.encode_corpus`, cached): the
   statistics of every encoder layer, and, when phase 2 runs, the input of the first layer it trains.
2. **Phase 1, the probe.** Fit the head on the cached features to convergence (`ser_hf.heads`): the
   statistics head's L2 strength, or the weighted head's epochs, chosen on the validation speakers.
3. **Phase 2 (optional, ``finetune_layers``).** `transformers.Trainer` fine-tunes the top encoder layers
   and the head on the cached inputs (`ser_hf.top_layers`), starting from the probe, with layer-wise learning
   rates. Validation UA is reported every epoch; epoch 0, the probe alone, is a candidate; the best is kept.
   This is where ``accelerate launch`` and several GPUs matter: DDP, resume and checkpoints are the Trainer's.
4. **Refit.** Once the validation speakers have chosen, the probe and that many epochs run again with them.
5. **Output.** A `LayerStatsForAudioClassification` (or, with ``head="weighted"``, a plain
   ``*ForAudioClassification``), its `SERFeatureExtractor`, a model card, ``test_results.json`` and
   ``test_report.json``, at the top of ``output_dir``.

`SERTrainer` is phase 2's `Trainer`; `EmotionTrainer` runs the pipeline (`train` for one model, `fit`
per cross-validation fold); `finetune` is the same from keyword arguments.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import Trainer, TrainerCallback, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .arguments import DataArguments, ModelArguments, SERTrainingArguments, arguments, default_bf16
from .atomic import write_json_atomic
from .encoding import EncodedCorpus, encode_corpus
from .errors import CorpusError, SerHfError
from .evaluation import flat_metrics, make_compute_metrics, score
from .fast_dropout import FastDropout, fast_dropout_pays
from .features import SkippedClip, skip_report
from .heads import (
    HeadFit,
    ProbeData,
    SpeakerNormalizer,
    StatsHead,
    StatsHeadConfig,
    WeightedHeadConfig,
    balance_weights,
    export_stats_model,
    export_weighted_model,
    label_masks,
    predict_head,
    refit_stats_head,
    select_stats_head,
    select_weighted_head,
)
from .hub import create_model_repo, push_recognizer
from .modeling import encoder_layers
from .top_layers import CachedClips, CachedCollator, TopLayers, export_top, predict_top, replay_check

logger = logging.getLogger(__name__)

#: Written into output_dir: the corpus files left out, and why.
SKIP_REPORT = "skipped_audio.json"
#: The file the Trainer writes last into a checkpoint folder.
TRAINER_STATE_NAME = "trainer_state.json"
#: Phase 2's checkpoints, under output_dir (removed once the model is saved, unless keep_checkpoints).
CHECKPOINTS = "checkpoints"
#: SDPA's backends other than cuDNN's, in torch's order of preference.
NON_CUDNN_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


# ------------------------------------------------------------------------------------------ phase 2
class EpochSeededSampler(torch.utils.data.Sampler):
    """Reseeds a sampler's ``generator`` with seed + epoch before each pass, so that every process of a
    data-parallel run (and a resumed run) draws the same order."""

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


class SERTrainer(Trainer):
    """Phase 2's `Trainer`: `TopLayers` on cached inputs, with layer-wise learning rates.

    It batches clips of similar length (``train_sampling_strategy="group_by_length"``), masks spans of the
    training clips (its own training collator), draws CPU dropout with `ser_hf.fast_dropout.FastDropout`
    (``fast_dropout``) and keeps SDPA off cuDNN's kernels for varying lengths on a GPU (``cudnn_attention``).
    """

    def __init__(self, *args: Any, train_collator: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_collator = train_collator

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None and not hasattr(self.model, "parameter_groups"):
            return super().create_optimizer()
        if self.optimizer is None:
            args = self.args
            top = self.model
            groups = top.parameter_groups(args.learning_rate, args.head_learning_rate, args.layer_decay)
            self.optimizer = torch.optim.AdamW(
                groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                weight_decay=args.weight_decay,
            )  # fmt: skip
        return self.optimizer

    def _seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _length_grouped_sampler(self, dataset: Any, batch_size: int, generator: Any = None) -> Any:
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, CachedClips):
            return None
        return LengthGroupedSampler(batch_size, lengths=dataset.lengths, generator=generator)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        sampler = self._length_grouped_sampler(dataset, batch_size)
        if sampler is None:
            sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler) and sampler.generator is None:
            return EpochSeededSampler(sampler, self._seed())
        return sampler

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        generator = torch.Generator().manual_seed(self._seed())
        sampler = self._length_grouped_sampler(eval_dataset, self.args.eval_batch_size, generator)
        return sampler if sampler is not None else super()._get_eval_sampler(eval_dataset)

    def uses_fast_dropout(self) -> bool:
        if self.args.torch_compile or self.args.gradient_checkpointing:
            return False
        chosen = getattr(self.args, "fast_dropout", None)
        return fast_dropout_pays(self.args.device) if chosen is None else bool(chosen)

    def uses_cudnn_attention(self) -> bool:
        chosen = getattr(self.args, "cudnn_attention", None)
        return bool(getattr(self.model, "whisper", False)) if chosen is None else bool(chosen)

    def kernel_choices(self, training: bool) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if training and self.uses_fast_dropout():
            stack.enter_context(FastDropout())
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


class _StopAfterEpochs(TrainerCallback):
    """End training after ``epochs`` epochs of a longer schedule (the refit runs the chosen epochs only)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.epoch is not None and state.epoch >= self.epochs - 1e-6:
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"


class _KeepBest(TrainerCallback):
    """Keep the best-scoring weights in memory (when no checkpoints are saved to choose from)."""

    def __init__(self, metric: str):
        self.metric, self.best, self.state = f"eval_{metric}", -float("inf"), None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        if value is not None and model is not None and value > self.best:
            self.best = value
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def check_checkpoint(checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint folder that a killed run left half-written (the Trainer writes its state last)."""
    state = Path(checkpoint) / TRAINER_STATE_NAME
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as err:
        problem = "does not exist" if not Path(checkpoint).is_dir() else f"has no readable {TRAINER_STATE_NAME}"
        raise SerHfError(f"{checkpoint}: not a complete checkpoint: it {problem} (an interrupted save?)") from err


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``folder`` that was completely written (a killed save is skipped, with a
    warning, for the one before), or ``None``."""
    steps = {}
    if not Path(folder).is_dir():
        return None
    for path in Path(folder).iterdir():
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


def check_launch(training_args: Any) -> None:
    """Refuse a multi-process launch that the Trainer would run as independent single processes (no GPU and
    no ``--use_cpu``: each process would train alone on everything and write the same folder)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise SerHfError(
            f"launched as {launched} processes, but each one trains alone (no GPU found); "
            "add --use_cpu true to train data-parallel on CPUs (gloo)"
        )


# --------------------------------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    """A fitted model on cached features: the probe's head, or phase 2's `TopLayers`, and what was chosen."""

    head: nn.Module
    top: TopLayers | None
    phases: dict[str, Any]
    probe: HeadFit
    #: The trainer of phase 2's last run (None when phase 2 did not run).
    trainer: SERTrainer | None = None

    @property
    def speakers(self) -> SpeakerNormalizer | None:
        return getattr(self.head, "speakers", None)


class EmotionTrainer:
    """The training pipeline over the three argument dataclasses (see the module docstring).

    >>> trainer = EmotionTrainer(*arguments(model_name_or_path="openai/whisper-tiny.en", data_dir="RAVDESS/"))
    >>> outcome = trainer.train()     # saved at the top of output_dir, scored on the test speakers
    """

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DataArguments,
        training_args: SERTrainingArguments,
        *,
        corpus: Dataset | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        progress: Callable[[str], None] | None = None,
    ):
        if model_args.head not in ("stats", "weighted"):
            raise ValueError(f"head must be 'stats' or 'weighted', not {model_args.head!r}")
        self.model_args, self.data_args, self.args = model_args, data_args, training_args
        self.corpus = corpus
        self.callbacks = list(callbacks)
        self.say = progress or logger.info

    # ---------------------------------------------------------------- prepare
    def load_corpus(self) -> Dataset:
        """The corpus (or corpora) the data arguments name; RAVDESS from Zenodo when none is named."""
        if self.corpus is not None:
            return self.corpus
        from .corpora import load_corpora, load_ravdess

        sources = self.data_args.sources()
        if not sources:
            self.corpus = load_ravdess(None, include_song=self.data_args.include_song)
        else:
            options: dict[str, Any] = {"include_song": True} if self.data_args.include_song else {}
            if self.data_args.speaker_pattern:
                options["speaker_pattern"] = self.data_args.speaker_pattern
            self.corpus = load_corpora(
                sources, self.data_args.corpus, labels=self.data_args.labels, on_invalid=self.data_args.on_invalid,
                **options,
            )  # fmt: skip
        return self.corpus

    def phase2_layers(self, model: nn.Module) -> int:
        return self.model_args.layers_to_finetune(len(encoder_layers(model)))

    def prepare(self, corpus: Dataset | None = None) -> EncodedCorpus:
        """Decode and encode the corpus once (both cached), keeping what phase 2 needs when it runs."""
        corpus = corpus if corpus is not None else self.load_corpus()
        trim, loudness = self.data_args.preparation(self.model_args.head)
        text = str(self.model_args.finetune_layers).strip().lower()
        keep = None if text in ("0", "") else (-1 if text == "all" else int(text))
        hub = {"cache_dir": self.model_args.cache_dir, "revision": self.model_args.model_revision}
        if self.model_args.attn_implementation:
            hub["attn_implementation"] = self.model_args.attn_implementation
        started = time.perf_counter()
        encoded = encode_corpus(
            corpus, self.model_args.model_name_or_path, trim_silence=trim, loudness_db=loudness,
            window_seconds=self.model_args.window_seconds, keep_layer_from_top=keep, proj_size=32,
            augment=self.data_args.augment,
            max_clip_seconds=self.data_args.max_clip_seconds, strict_audio=self.data_args.strict_audio,
            speaker_column=self.data_args.speaker_column, cache_dir=self.data_args.features_cache_dir,
            decode_cache_dir=self.data_args.decode_cache_dir, num_proc=self.data_args.preprocessing_num_workers,
            device=self.args.device, hub_kwargs=hub, main_process_first=self.args.main_process_first,
        )  # fmt: skip
        self.say(
            f"prepared {len(encoded)} clips ({len(encoded.skipped)} skipped) of {len(set(encoded.speakers))} "
            f"speakers in {time.perf_counter() - started:.0f} s"
        )
        return encoded

    # ---------------------------------------------------------------- fitting
    def probe_data(self, encoded: EncodedCorpus) -> ProbeData:
        """The probe's view of the corpus: its head's features, labels, speakers, corpora and label masks."""
        stats = self.model_args.head == "stats"
        corpora = encoded.corpora
        several = len(set(corpora.tolist())) > 1
        masks = None
        if several and self.data_args.labels == "union":
            sets = {c: sorted(set(encoded.labels[corpora == c].tolist())) for c in dict.fromkeys(corpora.tolist())}
            masks = label_masks(corpora, sets, len(encoded.label_names))
        return ProbeData(
            encoded.statistics if stats else encoded.window_means, encoded.labels, encoded.speakers,
            len(encoded.label_names), groups=corpora if several else None, masks=masks,
        )  # fmt: skip

    def _stats_config(self) -> StatsHeadConfig:
        return StatsHeadConfig(l2_grid=self.args.l2_values(), speaker_adaptive=self.model_args.speaker_adaptive)

    def _probe(
        self, data: ProbeData, fit_rows: np.ndarray, valid_rows: np.ndarray, refit: bool, refit_rows: np.ndarray
    ) -> HeadFit:
        if self.model_args.head == "stats":
            return select_stats_head(
                data, fit_rows, valid_rows, self._stats_config(), refit=refit, refit_rows=refit_rows
            )
        config = WeightedHeadConfig(seed=self.args.seed)
        return select_weighted_head(data, fit_rows, valid_rows, config, refit=refit, refit_rows=refit_rows)

    def _refit_probe(self, chosen: HeadFit, data: ProbeData, rows: np.ndarray) -> HeadFit:
        if self.model_args.head == "stats":
            return refit_stats_head(chosen, data, rows, self._stats_config())
        config = WeightedHeadConfig(seed=self.args.seed)
        return select_weighted_head(
            data, rows, np.zeros(0, dtype=int), dataclasses.replace(config, epochs=chosen.chosen["epochs"])
        )

    def fit(
        self,
        encoded: EncodedCorpus,
        fit_rows: np.ndarray,
        valid_rows: np.ndarray,
        *,
        output_dir: str | os.PathLike | None = None,
        save_checkpoints: bool = False,
    ) -> FitResult:
        """Phase 1, then (with ``finetune_layers``) phase 2, choosing on ``valid_rows``, then the refit.

        ``fit_rows`` and ``valid_rows`` are rows of the corpus' own clips; their augmented copies (if any) train
        too, and never validate.
        """
        set_seed(self.args.seed)
        data = self.probe_data(encoded)
        layers = self.phase2_layers(encoded.model)
        refit = self.args.refit and len(valid_rows) > 0
        started = time.perf_counter()
        refit_rows = np.concatenate([encoded.with_copies(fit_rows), encoded.with_copies(valid_rows)])
        fit_rows = encoded.with_copies(fit_rows)
        probe = self._probe(data, fit_rows, valid_rows, refit=refit and not layers, refit_rows=refit_rows)
        phases: dict[str, Any] = {
            "phase1": {
                "head": self.model_args.head,
                **probe.chosen,
                "validation_ua": probe.validation_ua,
                "speaker_adaptive": bool(getattr(probe.head, "speakers", None) is not None),
                "refitted_with_validation_speakers": bool(refit and not layers),
                "seconds": round(time.perf_counter() - started, 2),
            }
        }
        shown = f"; validation UA {100 * probe.validation_ua:.1f}" if probe.validation_ua is not None else ""
        self.say(f"phase 1, the probe: {_describe(probe.chosen)}{shown} [{time.perf_counter() - started:.1f} s]")
        if not layers:
            return FitResult(probe.head, None, phases, probe)
        return self._phase2(
            encoded, data, probe, fit_rows, valid_rows, refit_rows, layers, phases, output_dir, save_checkpoints
        )

    def _phase2_args(self, output_dir: str | os.PathLike | None, save: bool, evaluate: bool) -> SERTrainingArguments:
        args = copy.copy(self.args)
        args.output_dir = str(output_dir) if output_dir is not None else args.output_dir
        args.eval_strategy = args.eval_strategy if evaluate else "no"
        if not save:
            args.save_strategy = "no"
        args.load_best_model_at_end = bool(save and evaluate and args.save_strategy == args.eval_strategy)
        args.push_to_hub = False
        args.label_names = ["labels"]
        if args.dataloader_pin_memory and not torch.cuda.is_available():
            args.dataloader_pin_memory = False  # pinning needs an accelerator
        return args

    def _phase2(
        self,
        encoded: EncodedCorpus,
        data: ProbeData,
        probe: HeadFit,
        fit_rows: np.ndarray,
        valid_rows: np.ndarray,
        refit_rows: np.ndarray,
        layers: int,
        phases: dict[str, Any],
        output_dir: str | os.PathLike | None,
        save: bool,
    ) -> FitResult:
        first = len(encoder_layers(encoded.model)) - layers
        if encoded.keep_layer != first:
            raise SerHfError(f"the corpus was encoded for phase 2 from layer {encoded.keep_layer}, not {first}")
        norm_after = replay_check(encoded.model, encoded.feature_extractor, first)
        hidden = encoded.hidden_states()
        lower = (encoded.statistics if isinstance(probe.head, StatsHead) else encoded.window_means)[:, :first]
        self._resolve_bf16(encoded.model)

        def clips(rows: np.ndarray, weighted: bool) -> CachedClips:
            groups = None if data.groups is None else data.groups[rows]
            weights = balance_weights(data.y[rows], data.num_labels, groups) if weighted else None
            return CachedClips(hidden, lower, encoded.positions, encoded.labels, rows, weights, data.masks)

        def run(head: nn.Module, rows: np.ndarray, epochs: int | None, folder: Path | None, evaluate: bool):
            top = TopLayers(encoded.model, first, head, norm_after=norm_after)
            top.set_dropout(self.args.layer_dropout)
            args = self._phase2_args(folder, save and folder is not None, evaluate)
            keep_best = _KeepBest(args.metric_for_best_model or "ua") if evaluate else None
            callbacks = [cb for cb in (keep_best, _StopAfterEpochs(epochs) if epochs else None) if cb]
            trainer = SERTrainer(
                model=top, args=args, train_dataset=clips(rows, True),
                eval_dataset=clips(valid_rows, False) if evaluate else None,
                data_collator=CachedCollator(),
                train_collator=CachedCollator(self.args.time_mask_fraction, self.args.time_mask_spans, training=True),
                compute_metrics=make_compute_metrics(encoded.label_names),
                callbacks=[*callbacks, *self.callbacks],
            )  # fmt: skip
            resume = self._checkpoint_to_resume(folder) if save and folder is not None else None
            probe_ua = trainer.evaluate()[f"eval_{args.metric_for_best_model or 'ua'}"] if evaluate else None
            trainer.train(resume_from_checkpoint=resume)
            return trainer, keep_best, probe_ua

        evaluate = len(valid_rows) > 0 and self.args.eval_strategy != "no"
        root = Path(output_dir) / CHECKPOINTS if output_dir is not None else None
        started = time.perf_counter()
        epochs_planned = int(np.ceil(self.args.num_train_epochs))
        trainer, keep_best, probe_ua = run(probe.head, fit_rows, None, root / "selection" if root else None, evaluate)
        history = [float(probe_ua)] if probe_ua is not None else []
        history += [float(e["eval_ua"]) for e in trainer.state.log_history if "eval_ua" in e and e.get("epoch")]
        best_epoch = int(np.argmax(history)) if history else epochs_planned
        phase2 = {
            "layers": layers,
            "first_layer": first,
            "epochs": epochs_planned,
            "validation_ua_by_epoch": [round(v, 4) for v in history],
            "chosen_epoch": best_epoch,
        }
        self.say(
            "phase 2, the top "
            f"{layers} layer(s): validation UA by epoch (0 = the probe) "
            + (", ".join(f"{100 * v:.1f}" for v in history) or "not measured")
            + f"; kept epoch {best_epoch} [{time.perf_counter() - started:.0f} s]"
        )
        top = trainer.model
        if evaluate and not (self.args.refit and best_epoch):
            if best_epoch == 0:
                top = None
            elif not trainer.args.load_best_model_at_end and keep_best is not None and keep_best.state is not None:
                top.load_state_dict(keep_best.state)
        final_probe = probe
        if evaluate and self.args.refit:
            rows = refit_rows
            final_probe = self._refit_probe(probe, data, rows)
            top = None
            if best_epoch:
                self.say(f"refit with the validation speakers: the probe, then {best_epoch} epoch(s)")
                trainer, _, _ = run(final_probe.head, rows, best_epoch, root / "refit" if root else None, False)
                top = trainer.model
            phase2["refitted_with_validation_speakers"] = True
        phase2["seconds"] = round(time.perf_counter() - started, 1)
        phases["phase2"] = phase2
        if top is None:
            return FitResult(final_probe.head, None, phases, probe, trainer)
        top = top.to("cpu").eval()
        if isinstance(top.head, StatsHead) and self.model_args.speaker_adaptive:
            rows = refit_rows if self.args.refit else fit_rows
            statistics = top_statistics(top, encoded, rows)
            top.head.speakers = SpeakerNormalizer.fit(statistics, encoded.speakers[rows])
        return FitResult(top.head, top, phases, probe, trainer)

    def _checkpoint_to_resume(self, folder: Path) -> str | None:
        if self.args.resume_from_checkpoint:
            check_checkpoint(self.args.resume_from_checkpoint)
            if Path(self.args.resume_from_checkpoint).parent == folder:
                return str(self.args.resume_from_checkpoint)
            return None
        if self.args.resume:
            found = last_complete_checkpoint(folder)
            if found:
                logger.warning("Resuming from %s", found)
            return found
        return None

    def _resolve_bf16(self, model: nn.Module) -> None:
        args = self.args
        if args.bf16 is None:
            if getattr(args, "mixed_precision", "no") not in ("no", None):
                args.bf16 = args.mixed_precision == "bf16"
            else:
                args.bf16 = default_bf16(model.config, use_cpu=args.use_cpu, fp16=args.fp16)
                if args.bf16:
                    args.mixed_precision = "bf16"

    # ---------------------------------------------------------------- predicting from the cache
    def logits(self, fitted: FitResult, encoded: EncodedCorpus, rows: np.ndarray) -> np.ndarray:
        """Per-clip logits (each clip as heard) of the fitted model, from the cache."""
        if fitted.top is not None:
            return _top_logits(fitted.top, encoded, rows)
        data = self.probe_data(encoded)
        return predict_head(fitted.head, data.x[rows])

    def adapted_logits(self, fitted: FitResult, encoded: EncodedCorpus, rows: np.ndarray) -> np.ndarray | None:
        """Logits with every speaker's clips mapped onto the reference voice from all of their clips here (the
        speaker-adapted protocol); ``None`` for a model that does not adapt."""
        normalizer = fitted.speakers
        if normalizer is None:
            return None
        x = top_statistics(fitted.top, encoded, rows) if fitted.top is not None else encoded.statistics[rows]
        x = normalizer.normalize(x, encoded.speakers[rows])
        return predict_head(fitted.head, x)

    def export(self, fitted: FitResult, encoded: EncodedCorpus) -> nn.Module:
        """The model to save: the encoder under the fitted head (and fine-tuned layers)."""
        if fitted.top is not None:
            model = export_top(fitted.top, encoded.model)
        elif isinstance(fitted.head, StatsHead):
            model = export_stats_model(fitted.head, encoded.model)
        else:
            model = export_weighted_model(fitted.head, copy.deepcopy(encoded.model))
        return model.eval()

    # ---------------------------------------------------------------- one model
    def split_rows(self, encoded: EncodedCorpus) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
        """(fit, validation, test) rows and the test and validation speakers, as the data arguments ask."""
        from .splits import default_heldout_speakers, parse_speakers

        if self.data_args.split == "random":
            return _random_rows(encoded, self.args.seed, bool(self.data_args.eval_speakers))
        asked = {"test": self.data_args.test_speakers, "validation": self.data_args.eval_speakers}
        if any(str(v).strip().lower() == "auto" for v in asked.values()):
            defaults = dict(
                zip(
                    ("test", "validation"),
                    default_heldout_speakers(encoded.dataset, speaker_column=self.data_args.speaker_column),
                )
            )
            asked = {k: defaults[k] if str(v).strip().lower() == "auto" else v for k, v in asked.items()}
        test, validation = parse_speakers(asked["test"]), parse_speakers(asked["validation"])
        present = set(encoded.speakers.tolist())
        missing = sorted(set(test + validation) - present)
        if missing:
            shown = ", ".join(sorted(present)[:12]) + (", ..." if len(present) > 12 else "")
            raise CorpusError(f"speakers {missing} are not in the corpus (it has {shown})")
        if set(test) & set(validation):
            raise ValueError(f"speakers {sorted(set(test) & set(validation))} are in both the test and validation sets")
        original = encoded.is_original
        is_test = np.isin(encoded.speakers, test) & original
        is_valid = np.isin(encoded.speakers, validation) & original
        fit = np.flatnonzero(~is_test & ~is_valid & original)
        if len(fit) == 0:
            raise CorpusError("no speakers left for training")
        return fit, np.flatnonzero(is_valid), np.flatnonzero(is_test), test, validation

    def train(self) -> TrainingOutcome:
        """Prepare, fit (phase 1, phase 2, refit), score the test speakers, save everything to output_dir."""
        from .model_card import ModelCardFacts, build_model_card
        from .recognizer import EmotionRecognizer

        args = self.args
        set_seed(args.seed)
        check_launch(args)
        if args.resume_from_checkpoint:
            check_checkpoint(args.resume_from_checkpoint)  # refused by name before any work
        if args.push_to_hub and args.should_save:
            create_model_repo(args)
        started = time.perf_counter()
        corpus = self.load_corpus()
        encoded = self.prepare(corpus)
        output_dir = Path(args.output_dir)
        if args.should_save:
            output_dir.mkdir(parents=True, exist_ok=True)
            report_path = write_json_atomic(output_dir / SKIP_REPORT, skip_report(encoded.skipped, len(corpus)))
            if encoded.skipped:
                logger.warning("The %d skipped file(s) are listed in %s", len(encoded.skipped), report_path)
        fit_rows, valid_rows, test_rows, test_speakers, validation_speakers = self.split_rows(encoded)
        fitted = self.fit(encoded, fit_rows, valid_rows, output_dir=output_dir, save_checkpoints=True)
        report, adapted = None, None
        test_metrics: dict[str, float] = {}
        if len(test_rows):
            logits = self.logits(fitted, encoded, test_rows)
            report = score(logits.argmax(-1), encoded.labels[test_rows], encoded.label_names)
            test_metrics = {f"test_{k}": v for k, v in flat_metrics(report).items()}
            adapted_logits = self.adapted_logits(fitted, encoded, test_rows)
            if adapted_logits is not None:
                adapted = score(adapted_logits.argmax(-1), encoded.labels[test_rows], encoded.label_names)
                test_metrics["test_adapted_ua"] = float(adapted["ua"])
        model = self.export(fitted, encoded)
        recognizer = EmotionRecognizer(model, encoded.feature_extractor, device="cpu")
        seconds = time.perf_counter() - started
        facts = ModelCardFacts.for_training(
            model, encoded.feature_extractor, model_args=self.model_args, data_args=self.data_args,
            training_args=args, corpus=corpus, speakers={
                "train": sorted(set(encoded.speakers[fit_rows].tolist())), "validation": validation_speakers,
                "test": test_speakers,
            }, clips={"train": len(fit_rows), "validation": len(valid_rows), "test": len(test_rows)},
            phases=fitted.phases, test_report=report, adapted_report=adapted, skipped=len(encoded.skipped),
        )  # fmt: skip
        hub_commit_url = None
        if args.should_save:
            recognizer.model_card = build_model_card(facts)
            recognizer.save_pretrained(output_dir)
            results = {**test_metrics, "train_seconds": round(seconds, 1)}
            write_json_atomic(output_dir / "test_results.json", results)
            write_json_atomic(
                output_dir / "test_report.json",
                {**(report or {}), "adapted": adapted, "phases": fitted.phases, "test_speakers": test_speakers,
                 "validation_speakers": validation_speakers},
            )  # fmt: skip
            if not args.keep_checkpoints:
                shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
            if args.push_to_hub:
                hub_commit_url = push_recognizer(recognizer, args)
        self.say(f"saved the model to {output_dir} [{time.perf_counter() - started:.0f} s in all]")
        clips = {"train": len(fit_rows), "validation": len(valid_rows), "test": len(test_rows)}
        return TrainingOutcome(
            recognizer, test_metrics, report or {}, encoded.skipped, fitted.phases, output_dir, clips, adapted,
            hub_commit_url,
        )  # fmt: skip


def top_statistics(top: TopLayers, encoded: EncodedCorpus, rows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The statistics of every layer (the fine-tuned ones recomputed) for cached rows."""
    lower = encoded.statistics[:, : top.first_layer]
    clips = CachedClips(encoded.hidden_states(), lower, encoded.positions, encoded.labels, np.asarray(rows))
    collate = CachedCollator()
    out = []
    top.eval()
    with torch.inference_mode():
        for start in range(0, len(clips), batch_size):
            batch = collate([clips[i] for i in range(start, min(len(clips), start + batch_size))])
            out.append(top.pooled(batch["hidden_state"], batch["lower"], batch["positions"]).numpy())
    return np.concatenate(out) if out else np.zeros((0, *encoded.statistics.shape[1:]), dtype=np.float32)


def _top_logits(top: TopLayers, encoded: EncodedCorpus, rows: np.ndarray) -> np.ndarray:
    lower = (encoded.statistics if top.pooling == "stats" else encoded.window_means)[:, : top.first_layer]
    clips = CachedClips(encoded.hidden_states(), lower, encoded.positions, encoded.labels, np.asarray(rows))
    return predict_top(top, clips)


def _random_rows(encoded: EncodedCorpus, seed: int, with_validation: bool):
    from .splits import random_split

    table = Dataset.from_dict({"row": list(range(len(encoded))), "label": encoded.labels.tolist()})
    table = table.cast_column("label", encoded.dataset.features["label"])
    parts = random_split(table, seed=seed, eval_size=0.1 if with_validation else 0.0)
    rows = {name: np.asarray(part["row"], dtype=int) for name, part in parts.items()}
    return rows["train"], rows.get("validation", np.zeros(0, dtype=int)), rows["test"], [], []


def _describe(chosen: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items()) or "fitted"


@dataclass
class TrainingOutcome:
    """What a training run produced: the recognizer, test figures, what each phase chose, where it is saved."""

    recognizer: Any
    test_metrics: dict[str, float]
    test_report: dict[str, Any]
    skipped: list[SkippedClip]
    phases: dict[str, Any]
    output_dir: Path
    #: Clips per split (train, validation, test).
    clips: dict[str, int]
    #: Test scores with every test speaker adapted to from their own clips (another protocol; None: not adaptive).
    adapted_report: dict[str, Any] | None = None
    hub_commit_url: str | None = None


def finetune(
    model_name_or_path: str = "openai/whisper-tiny.en",
    corpus: Dataset | str | Sequence[str] | None = None,
    *,
    output_dir: str | os.PathLike = "runs/ser-hf",
    **kwargs: Any,
) -> TrainingOutcome:
    """Train a recognizer from Python: any field of `ModelArguments`, `DataArguments` or
    `SERTrainingArguments` as a keyword (``finetune_layers=1``, ``test_speakers="21,22"``, ...).

    ``corpus`` is a `datasets.Dataset` (e.g. from `ser_hf.load_corpus`) or one or several corpus sources.
    """
    if isinstance(corpus, (str, os.PathLike)) or (isinstance(corpus, (list, tuple)) and corpus):
        kwargs["data_dir"] = [os.fspath(c) for c in ([corpus] if isinstance(corpus, (str, os.PathLike)) else corpus)]
        corpus = None
    model_args, data_args, training_args = arguments(
        model_name_or_path=model_name_or_path, output_dir=os.fspath(output_dir), **kwargs
    )
    return EmotionTrainer(model_args, data_args, training_args, corpus=corpus).train()


__all__ = [
    "EmotionTrainer",
    "FitResult",
    "SERTrainer",
    "TrainingOutcome",
    "check_checkpoint",
    "check_launch",
    "finetune",
    "last_complete_checkpoint",
    "top_statistics",
]
