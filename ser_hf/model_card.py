"""Model cards: facts collected while training, rendered into the Hub's ``README.md`` (plus a confusion-matrix PNG).

`ModelCardFacts` holds what a card says; `ModelCardFacts.for_training` fills it from a training run
(`ser_hf.trainer.EmotionTrainer.train`: base model, corpora, speakers, what each phase chose, the test scores);
`build_model_card` renders it with ``huggingface_hub.ModelCard`` and the template in
``templates/model_card.md``. The metadata says ``library_name: transformers``: the checkpoint is a
transformers model, so the Hub's "use this model" snippet and download counter are the transformers ones
(ser-hf's layer-statistics model ships its modeling code: the card adds the ``custom_code`` tag and
``trust_remote_code=True`` to its snippet); the ``ser-hf`` tag makes ser-hf models findable.
"""

from __future__ import annotations

import io
import logging
import os
import platform
import re
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.modelcard import make_markdown_table

from .corpora.base import is_hub_id
from .corpora.info import CorpusInfo, corpus_info, label_codes
from .corpora.ravdess import is_ravdess
from .features import window_samples
from .layer_stats import MODEL_TYPE

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
#: The confusion-matrix image saved beside ``README.md``.
CONFUSION_PNG = "confusion_matrix.png"
LIBRARY_NAME = "transformers"
#: How to install ser-hf (until a release is on PyPI).
INSTALL_LINE = 'pip install "ser-hf @ git+https://github.com/ser-hf/ser-hf"'
PIPELINE_TAG = "audio-classification"
#: Images a card may carry beside it: a plain file name in the model folder, nothing above it.
_FIGURE_NAME = re.compile(r"[\w.-]+\.png")

#: What a card says about the limits of a model trained on a corpus it knows (besides its licence).
CAVEATS: dict[str, str] = {
    "ravdess": """\
- **Acted speech.** 24 professional actors (12 female, 12 male) read two fixed sentences in a studio. The
  emotions are portrayed, not felt, and clearer than in everyday speech: expect much lower accuracy on
  spontaneous, noisy, far-field or telephone speech.
- **One accent, one language.** North American English only; other accents, languages, children and older
  speakers are not represented.
- **Few speakers.** 24 voices is a small sample; accuracy varies from speaker to speaker.""",
    "emovo": """\
- **Acted Italian speech.** 6 actors (3 female, 3 male) read 14 sentences, some of them nonsense, in a studio.
- **Very few speakers.** 6 voices: accuracy varies much from speaker to speaker.""",
}
RESPONSIBLE_USE = (
    "A predicted label is a guess about how a voice sounds, not a measure of what someone feels: do not use it "
    "to make decisions about people."
)

UNKNOWN_CORPUS_NOTES = """\
The licence of the training data was not recorded: check it, and whether it allows sharing a model trained
on it, before you publish this model. Emotion corpora are small and often acted: expect lower accuracy on
speech unlike the training data, and do not use the predictions to make decisions about people."""


def framework_versions() -> dict[str, str]:
    """Versions of Python and the libraries a ser-hf model was trained with."""
    versions = {"Python": platform.python_version()}
    for name in ("ser-hf", "transformers", "torch", "datasets", "huggingface_hub", "accelerate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def training_hyperparameters(args: Any) -> dict[str, Any]:
    """The hyper-parameters worth reporting from a `TrainingArguments`."""
    world = int(getattr(args, "world_size", 1) or 1)
    hyper: dict[str, Any] = {
        "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * world * args.gradient_accumulation_steps,
        "optimizer": _plain(args.optim) + (f" ({args.optim_args})" if args.optim_args else ""),
        "weight_decay": args.weight_decay,
        "lr_scheduler_type": _plain(args.lr_scheduler_type),
        "seed": args.seed,
    }
    if 0 < args.warmup_steps < 1:
        hyper["warmup_fraction (of all steps)"] = args.warmup_steps
    else:
        hyper["warmup_steps"] = int(args.warmup_steps)
    if world > 1:
        hyper["num_devices"] = world
    if args.max_steps and args.max_steps > 0:
        hyper["training_steps"] = args.max_steps
    else:
        hyper["num_epochs"] = args.num_train_epochs
    if args.bf16 or args.fp16:
        hyper["mixed_precision"] = "bf16" if args.bf16 else "fp16"
    if args.label_smoothing_factor:
        hyper["label_smoothing_factor"] = args.label_smoothing_factor
    return hyper


def _speaker_key(speaker: str) -> tuple[int, Any]:
    return (0, int(speaker)) if str(speaker).isdigit() else (1, str(speaker))


def describe_speakers(speakers: list[str]) -> str:
    """``["21", "22", "23", "24"]`` → ``"21–24"``; runs of consecutive numbers are shortened."""
    names = sorted({str(s) for s in speakers}, key=_speaker_key)
    if not all(name.isdigit() for name in names):
        return ", ".join(names)
    numbers = [int(name) for name in names]
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


@dataclass
class ModelCardFacts:
    """Everything a ser-hf model card says, gathered while the model is trained (or read off a model)."""

    labels: list[str]
    architecture: str
    model_type: str | None = None
    #: Whether transformers needs the modeling code shipped with the weights (``trust_remote_code=True``).
    custom_code: bool = False
    #: Whether the head expects statistics centred on the speaker (``adapt_to_speaker``; tested that way).
    speaker_adaptive: bool = False
    sampling_rate: int = 16_000
    window_seconds: float | None = None
    #: Whether the feature extractor trims silence or sets the loudness (ser-hf's SERFeatureExtractor).
    prepared_input: bool = False
    #: Where the model is loaded from in the usage snippets (the Hub id once pushed).
    model_id: str | None = None
    #: The pretrained encoder's Hub id (metadata ``base_model``); ``None`` when it came from a local folder.
    base_model: str | None = None
    base_model_name: str | None = None
    corpus: str | None = None
    #: The Hub dataset id when the corpus was loaded from the Hub (metadata ``datasets``).
    dataset_id: str | None = None
    protocol: str | None = None
    #: What the validation speakers chose, in the protocol sentence.
    selection: str = "best epoch chosen"
    #: Whether the final model was fitted again with the validation speakers once they had chosen.
    refitted: bool = False
    speakers: dict[str, list[str]] = field(default_factory=dict)
    clips: dict[str, int] = field(default_factory=dict)
    skipped_clips: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_log: list[dict[str, Any]] = field(default_factory=list)
    test_report: dict[str, Any] | None = None
    #: Test scores with each test speaker adapted to from their own unlabelled clips (another protocol).
    adapted_report: dict[str, Any] | None = None
    #: Every corpus the model was trained on (registry names, e.g. ``["ravdess", "emovo"]``).
    corpora: list[str] = field(default_factory=list)
    #: What each training phase did and chose (`ser_hf.trainer.FitResult.phases`).
    phases: dict[str, Any] = field(default_factory=dict)
    #: The model's name (card title and model-index): the Hub id's name, else base model + data + "ser".
    model_name: str | None = None
    versions: dict[str, str] = field(default_factory=framework_versions)

    @classmethod
    def from_model(cls, model: Any, feature_extractor: Any, *, model_id: str | None = None) -> ModelCardFacts:
        """The facts a model itself tells: labels, architecture, input rate and window."""
        config = model.config
        rate = int(getattr(feature_extractor, "sampling_rate", 16_000) or 16_000)
        window = window_samples(feature_extractor) if feature_extractor is not None else None
        return cls(
            labels=[config.id2label[i] for i in range(len(config.id2label))],
            architecture=type(model).__name__,
            model_type=getattr(config, "model_type", None),
            custom_code=bool(getattr(config, "auto_map", None)) or getattr(config, "model_type", None) == MODEL_TYPE,
            speaker_adaptive=bool(getattr(config, "speaker_adaptive", False)),
            sampling_rate=rate,
            window_seconds=round(window / rate, 2) if window else None,
            prepared_input=bool(getattr(feature_extractor, "does_preparation", False)),
            model_id=model_id,
        )

    @classmethod
    def for_training(
        cls,
        model: Any,
        feature_extractor: Any,
        *,
        model_args: Any,
        data_args: Any,
        training_args: Any,
        corpus: Any,
        speakers: dict[str, list[str]],
        clips: dict[str, int],
        phases: dict[str, Any],
        test_report: dict[str, Any] | None,
        adapted_report: dict[str, Any] | None = None,
        skipped: int = 0,
    ) -> ModelCardFacts:
        """The facts of a model trained by `ser_hf.trainer.EmotionTrainer`: base model, corpora, speakers,
        what each phase did and chose, and the test scores."""
        push = bool(getattr(training_args, "push_to_hub", False))
        facts = cls.from_model(model, feature_extractor)
        name = str(model_args.model_name_or_path).rstrip("/")
        local = os.path.exists(name)
        facts.base_model = name if not local and is_hub_id(name) else None
        facts.base_model_name = Path(name).name if local else name  # no local directories in a public card
        sources = list(data_args.sources()) if hasattr(data_args, "sources") else []
        hub_sources = [s for s in sources if not os.path.exists(s) and is_hub_id(s)]
        facts.dataset_id = hub_sources[0] if len(hub_sources) == 1 else None
        facts.corpora = corpus_names(corpus)
        facts.corpus = facts.corpora[0] if len(facts.corpora) == 1 else None
        facts.protocol = getattr(data_args, "split", None)
        facts.speakers = {split: list(names) for split, names in speakers.items() if names}
        facts.clips, facts.skipped_clips = dict(clips), skipped
        facts.test_report, facts.adapted_report = test_report, adapted_report
        facts.phases = phases
        facts.selection = "hyper-parameters and epoch chosen" if "phase2" in phases else "hyper-parameters chosen"
        facts.refitted = bool(
            phases.get("phase2", phases.get("phase1", {})).get("refitted_with_validation_speakers", False)
        )
        hub_name = training_args.hub_model_id.split("/")[-1] if push and training_args.hub_model_id else None
        facts.model_name = hub_name or default_model_name(facts.base_model_name, facts.corpora)
        facts.model_id = (training_args.hub_model_id if push else None) or str(training_args.output_dir)
        trim, loudness = data_args.preparation(model_args.head)
        hyper: dict[str, Any] = {
            "head": model_args.head,
            "speaker_adaptive": bool(phases.get("phase1", {}).get("speaker_adaptive")),
            "trim_silence": trim,
            "loudness_db": loudness,
            "labels": getattr(data_args, "labels", None) if len(facts.corpora) > 1 else None,
            **{f"probe {k}": v for k, v in phases.get("phase1", {}).items() if k in ("l2", "epochs")},
        }
        phase2 = phases.get("phase2")
        if phase2:
            hyper.update(training_hyperparameters(training_args))
            hyper.update(
                {
                    "fine-tuned top layers": phase2.get("layers"),
                    "head_learning_rate": getattr(training_args, "head_learning_rate", None),
                    "layer_decay": getattr(training_args, "layer_decay", None),
                    "epochs kept (0 = the probe)": phase2.get("chosen_epoch"),
                }
            )
            facts.training_log = [
                {"Epoch": epoch, "Validation UA": _fmt(ua)}
                for epoch, ua in enumerate(phase2.get("validation_ua_by_epoch") or [])
            ]
        facts.hyperparameters = hyper
        return facts

    # ---------------------------------------------------------------- derived text
    @property
    def infos(self) -> list[CorpusInfo]:
        """What ser-hf knows about each training corpus (the ones it knows)."""
        names = self.corpora or ([self.corpus] if self.corpus else [])
        return [info for info in (corpus_info(name) for name in names) if info is not None]

    @property
    def corpus_name(self) -> str | None:
        names = self.corpora or ([self.corpus] if self.corpus else [])
        if len(names) != 1:
            return None
        info = corpus_info(names[0])
        return info.display_name if info else names[0]

    def _speakers(self, split: str) -> str:
        """E.g. ``"actors 21–24"`` or ``"actor 3"``; empty when the split's speakers are unknown."""
        speakers = self.speakers.get(split)
        if not speakers:
            return ""
        infos = self.infos
        word = infos[0].speaker_word if len(infos) == 1 and len(self.corpora) <= 1 else "speakers"
        return f"{word if len(speakers) > 1 else word.removesuffix('s')} {describe_speakers(speakers)}"

    @property
    def split_description(self) -> str:
        """E.g. ``"speaker-independent, test actors 21–24"`` (named in the model-index)."""
        if self.protocol == "random":
            return "random clip-level split, test speakers also heard in training"
        test = self._speakers("test")
        return f"speaker-independent, test {test}" if test else "held-out test split"

    @property
    def protocol_sentence(self) -> str:
        test_clips = f" ({self.clips['test']} clips)" if "test" in self.clips else ""
        if self.protocol == "random":
            return (
                f"**Random clip-level split**{test_clips}: the test speakers were also heard in training, so these "
                "figures overestimate accuracy on new voices (on RAVDESS by 10 points or more)."
            )
        parts = [f"trained on {self._speakers('train')}" if self._speakers("train") else "trained"]
        if self._speakers("validation"):
            refit = ", then the final model fitted with them too" if self.refitted else ""
            parts.append(f"{self.selection} on {self._speakers('validation')}{refit}")
        parts.append(f"tested once on {self._speakers('test') or 'the test split'}{test_clips}")
        adapted = (
            " **Speaker-adaptive**: each test speaker's clips were centred on the mean of their own clips "
            "(unlabelled), as `adapt_to_speaker` does."
            if self.speaker_adaptive
            else ""
        )
        return f"**Speaker-independent**: {', '.join(parts)}; no test speaker was heard in training.{adapted}"

    @property
    def corpus_names_shown(self) -> str:
        names = [(corpus_info(c).display_name if corpus_info(c) else c) for c in self.corpora] or (
            [self.corpus_name] if self.corpus_name else []
        )
        return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)

    @property
    def title(self) -> str:
        if self.model_name:
            return self.model_name
        base = Path(self.base_model_name).name if self.base_model_name else (self.model_type or self.architecture)
        corpus = f" on {self.corpus_names_shown}" if self.corpus_names_shown else ""
        return f"{base} for speech emotion recognition{corpus}"

    @property
    def index_name(self) -> str:
        return self.model_name or (Path(self.model_id).name if self.model_id else self.title)

    @property
    def encoder_sentence(self) -> str:
        """How the encoder was used: frozen under a fitted head, or with its top layers fine-tuned."""
        base = f"`{self.base_model_name}`" if self.base_model_name else "a pretrained encoder"
        phase2 = self.phases.get("phase2") if self.phases else None
        if phase2 and phase2.get("chosen_epoch"):
            return f"the top {phase2['layers']} layer(s) of {base} fine-tuned with a head fitted on its features"
        if phase2:
            return f"{base} kept frozen (phase 2 ran, but the validation speakers kept the head alone)"
        return f"{base} kept frozen, with a head fitted on the statistics of its layers"


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], title: str) -> bytes | None:
    """The confusion matrix as a PNG (shaded by row share, annotated with counts); ``None`` without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'ser-hf[report]'): no confusion-matrix image")
        return None
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = 1.5 + 0.65 * len(labels)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if recall[row, column] > 0.5 else "black"
        axes.text(column, row, f"{int(count)}", ha="center", va="center", color=colour, fontsize=9)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="share of the true class")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


class SERModelCard(ModelCard):
    """A `huggingface_hub.ModelCard` that also carries the images it shows (saved beside ``README.md``)."""

    def __init__(self, content: str, ignore_metadata_errors: bool = False):
        super().__init__(content, ignore_metadata_errors=ignore_metadata_errors)
        self.figures: dict[str, bytes] = {}

    def save(self, filepath: str | Path) -> None:
        super().save(filepath)
        for name, data in self.figures.items():
            (Path(filepath).parent / name).write_bytes(data)


def _eval_results(facts: ModelCardFacts) -> list[EvalResult]:
    report = facts.test_report or {}
    corpus = facts.corpus_name or "custom corpus"
    common = {
        "task_type": PIPELINE_TAG,
        "task_name": "Speech Emotion Recognition",
        "dataset_type": facts.dataset_id or (facts.corpus or "custom").lower(),
        "dataset_name": f"{corpus} ({facts.split_description})",
        "dataset_split": "test",
        "dataset_args": {
            "protocol": "random" if facts.protocol == "random" else "speaker-independent",
            **{f"{split}_speakers": describe_speakers(s) for split, s in facts.speakers.items()},
        },
    }
    macro = {"average": "macro"}
    figures = (
        ("recall", "UA (unweighted average recall)", "ua", macro),
        ("accuracy", "WA (accuracy)", "wa", None),
        ("f1", "Macro-F1", "macro_f1", macro),
    )
    return [
        EvalResult(
            metric_type=kind, metric_name=name, metric_args=args, metric_value=round(float(report[k]), 4), **common
        )
        for kind, name, k, args in figures
    ]


def _table(rows: list[dict[str, Any]]) -> str:
    """A left-aligned Markdown table (transformers' `make_markdown_table` centres every column)."""
    return make_markdown_table(rows).replace("-:|", "--|").strip()


def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}"


def _evaluation_sections(facts: ModelCardFacts) -> dict[str, Any]:
    report = facts.test_report
    if not report:
        return {}
    recall = report["per_class_recall"]
    matrix = report["confusion_matrix"]
    confusion_rows = [
        {"true \\ predicted": label, **{other: int(count) for other, count in zip(facts.labels, row)}}
        for label, row in zip(facts.labels, matrix)
    ]
    return {
        "metrics_table": _table(
            [
                {
                    "Test split": facts.split_description,
                    "UA (%)": _percent(report["ua"]),
                    "WA (%)": _percent(report["wa"]),
                    "Macro-F1 (%)": _percent(report["macro_f1"]),
                    "Clips": facts.clips.get("test", int(np.sum(matrix))),
                }
            ]
        ),
        "recall_table": _table(
            [
                {"Emotion": label, "Recall (%)": _percent(recall.get(label)), "Test clips": int(sum(row))}
                for label, row in zip(facts.labels, matrix)
            ]
        ),
        "confusion_table": _table(confusion_rows),
        "chance_ua": f"{100 / len(facts.labels):.1f} %",
    }


def _data_sentence(facts: ModelCardFacts) -> str:
    parts = []
    for split in ("train", "validation", "test"):
        if split in facts.clips:
            who = f" ({facts._speakers(split)})" if facts._speakers(split) else ""
            parts.append(f"{split} {facts.clips[split]} clips{who}")
    if not parts:
        return ""
    skipped = f" {facts.skipped_clips} unusable clip(s) were skipped." if facts.skipped_clips else ""
    return f"Data: {facts.corpus_name or 'the corpus'}, {'; '.join(parts)}.{skipped}"


def data_notes(facts: ModelCardFacts) -> str:
    """The card's section on the data: each corpus' licence and citation, how its labels map, its caveats."""
    names = facts.corpora or ([facts.corpus] if facts.corpus else [])
    known = [(name, corpus_info(name)) for name in names]
    if not known or any(info is None for _, info in known):
        return UNKNOWN_CORPUS_NOTES
    parts = []
    several = len(known) > 1
    if several:
        parts.append(
            f"Trained on {len(known)} corpora; this model is an adaptation of each, and each one's terms apply to it."
        )
    for name, info in known:
        licence = info.license_text
        lead = f"**{info.display_name}**: {info.citation} Licence: {licence}"
        if not several:
            lead += " This model is an adaptation of it and carries the same terms."
        parts.append(lead)
        codes = label_codes(name)
        if codes:
            used = [f"`{code}` → {label}" for code, label in codes.items() if label in facts.labels]
            parts.append(f"{info.display_name}'s labels, as this model names them: " + ", ".join(used) + ".")
        if name in CAVEATS:
            parts.append(CAVEATS[name])
    if several and facts.hyperparameters.get("labels") == "union":
        parts.append(
            "The model predicts every emotion any of the corpora annotates; while training, each clip's loss "
            "ignored the emotions its own corpus never annotates."
        )
    parts.append(RESPONSIBLE_USE)
    return "\n\n".join(parts)


def _adapted_sentence(facts: ModelCardFacts) -> str:
    report = facts.adapted_report
    if not report:
        return ""
    return (
        f"**Adapted to each test speaker** (another protocol: each test speaker's clips mapped onto the training "
        f"speakers' average voice from all of that speaker's unlabelled test clips, as a stream does once it has "
        f"heard them): UA {_percent(report['ua'])} %, WA {_percent(report['wa'])} %, macro-F1 "
        f"{_percent(report['macro_f1'])} %."
    )


def build_model_card(facts: ModelCardFacts) -> SERModelCard:
    """Render the facts into a card: Hub metadata (with a model-index when there are test results) and body."""
    infos = facts.infos
    tags = ["audio-classification", "speech-emotion-recognition", "ser-hf"]
    tags += [t for t in (facts.model_type, *(facts.corpora or [(facts.corpus or "").lower()])) if t and t not in tags]
    licenses = {info.license for info in infos}
    license_id = licenses.pop() if len(licenses) == 1 and len(infos) == len(facts.corpora or [1]) else None
    languages = sorted({language for info in infos for language in info.language})
    if facts.custom_code:
        tags.append("custom_code")
    has_results = bool(facts.test_report)
    card_data = ModelCardData(
        language=languages or None,
        license=license_id or ("other" if infos else None),
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        base_model=facts.base_model,
        datasets=[facts.dataset_id] if facts.dataset_id else None,
        tags=tags,
        model_name=facts.index_name if has_results else None,
        eval_results=_eval_results(facts) if has_results else None,
    )
    figures: dict[str, bytes] = {}
    if has_results:
        title = f"{facts.corpus_name or 'test'}: {facts.split_description}"
        png = confusion_matrix_png(facts.test_report["confusion_matrix"], facts.labels, title)
        if png is not None:
            figures[CONFUSION_PNG] = png
    hyper = [f"- {key}: {_plain(value)}" for key, value in facts.hyperparameters.items() if value is not None]
    card = SERModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=facts.title,
        labels=facts.labels,
        architecture=facts.architecture,
        custom_code=facts.custom_code,
        speaker_adaptive=facts.speaker_adaptive,
        encoder_sentence=facts.encoder_sentence,
        install_line=INSTALL_LINE,
        adapted_sentence=_adapted_sentence(facts),
        prepared_input=facts.prepared_input,
        base_model_name=facts.base_model_name,
        corpus=facts.corpus_names_shown or None,
        sampling_rate=facts.sampling_rate,
        window_seconds=facts.window_seconds,
        protocol_sentence=facts.protocol_sentence if has_results else "",
        confusion_png=CONFUSION_PNG if figures else None,
        model_id=facts.model_id or "path/to/model",
        hyperparameters_list="\n".join(hyper),
        data_sentence=_data_sentence(facts),
        training_table=_table(facts.training_log) if facts.training_log else "",
        data_notes=data_notes(facts),
        versions=facts.versions,
        **_evaluation_sections(facts),
    )
    card.content = re.sub(r"\n{3,}", "\n\n", card.content)  # the template's blank lines around optional parts
    card.figures = figures
    return card


def corpus_names(corpus: Any) -> list[str]:
    """The corpora a dataset holds (its ``corpus`` column), or ``["ravdess"]`` for RAVDESS without one."""
    if corpus is None:
        return []
    columns = getattr(corpus, "column_names", [])
    if "corpus" in columns:
        from .corpora.base import read_column

        return [str(c) for c in dict.fromkeys(read_column(corpus, "corpus")) if c]
    return ["ravdess"] if is_ravdess(corpus) else []


def default_model_name(base_model_name: str | None, corpora: list[str]) -> str:
    """E.g. ``whisper-tiny.en-ravdess-ser`` or ``whisper-tiny.en-ravdess-emovo-ser``."""
    base = Path(base_model_name).name if base_model_name else "speech-encoder"
    data = "-".join(re.sub(r"[^\w.]+", "-", c.lower()).strip("-") for c in corpora) or "custom"
    return f"{base}-{data}-ser"


def describe_model(model: Any, feature_extractor: Any, *, model_id: str | None = None) -> SERModelCard:
    """A card for a model without one (no training facts): metadata, labels and usage."""
    return build_model_card(ModelCardFacts.from_model(model, feature_extractor, model_id=model_id))


_SNIPPET_IDS = (
    re.compile(r'(EmotionRecognizer\.from_pretrained\(")[^"]*("\))'),
    re.compile(r'(pipeline\("audio-classification", model=")[^"]*(")'),
)


def card_for_onnx(card: ModelCard, export_info: dict[str, Any]) -> SERModelCard:
    """The card of an ONNX export: the model's own card, tagged ``onnx``, with a section on the export."""
    out = SERModelCard(card.content, ignore_metadata_errors=True)
    out.figures = dict(getattr(card, "figures", {}))
    tags = list(out.data.tags or [])
    out.data.tags = tags if "onnx" in tags else [*tags, "onnx"]
    weights = "dynamic int8 weights" if export_info.get("quantization") == "int8" else "fp32 weights"
    difference = export_info.get("fp32_max_logit_difference")
    checked = f" The fp32 graph's logits differ from PyTorch's by at most {difference:.2g}." if difference else ""
    out.text = (
        out.text.rstrip()
        + "\n\n## ONNX export\n\n"
        + f"This folder holds an ONNX export of the model described above (`model.onnx`, {weights}; "
        + f"{export_info.get('exporter', 'torch.onnx')}).{checked} ONNX Runtime runs it on the CPU: load it with "
        + "`EmotionRecognizer.from_pretrained(folder)` or `ser-hf predict --model folder`. "
        + "`transformers.pipeline` needs the PyTorch weights, which this folder does not hold.\n"
    )
    return out


def card_for_repo(card: ModelCard, repo_id: str) -> ModelCard:
    """The card with its usage snippets and model-index name pointing at ``repo_id``."""
    content = card.content
    for pattern in _SNIPPET_IDS:
        content = pattern.sub(lambda m: f"{m.group(1)}{repo_id}{m.group(2)}", content)
    updated = type(card)(content, ignore_metadata_errors=True)
    if updated.data.get("eval_results"):
        updated.data.model_name = repo_id.split("/")[-1]
    updated.figures = dict(getattr(card, "figures", {}))  # type: ignore[attr-defined]
    return updated


def load_model_card(
    model_name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> SERModelCard | None:
    """The ``README.md`` of a model folder or Hub repo, with the images it links beside it; ``None`` if absent.

    A card that cannot be read is reported and skipped: it never stops a model from loading.
    """
    from transformers.utils import cached_file

    def fetch(name: str) -> str | None:
        return cached_file(
            str(model_name_or_path),
            name,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    try:
        readme = fetch("README.md")
        if readme is None:
            return None
        card = SERModelCard(Path(readme).read_text(encoding="utf-8"), ignore_metadata_errors=True)
        for name in dict.fromkeys(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", card.content)):
            if _FIGURE_NAME.fullmatch(name) and (path := fetch(name)) is not None:
                card.figures[name] = Path(path).read_bytes()
    except (OSError, ValueError) as err:
        logger.warning("%s: its model card (README.md) could not be read and is not kept: %s", model_name_or_path, err)
        return None
    return card
