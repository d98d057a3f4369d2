"""`EmotionRecognizer`: load a speech emotion model, predict, save, share."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, PreTrainedModel

from . import audio, layer_stats  # noqa: F401  (layer_stats registers its model with the Auto classes)
from .adaptation import SpeakerProfile
from .atomic import atomic_directory, recover
from .conversation import UtteranceStream, iter_utterances
from .corpora.base import is_hub_id
from .errors import AudioError, SerHfError
from .export import OnnxAudioClassifier, export_onnx, is_onnx_folder
from .feature_extraction import SERFeatureExtractor, base_extractor
from .features import AudioCollator, min_input_samples, window_samples
from .hardware import default_device
from .labels import check_id2label
from .model_card import card_for_repo, describe_model, load_model_card
from .modeling import quiet_transformers  # also registers SERFeatureExtractor with AutoFeatureExtractor
from .timeline import EmotionStream, Segment, iter_smooth, iter_timeline
from .vad import SILENCE_THRESHOLD_DB

logger = logging.getLogger(__name__)

#: Default window of fixed-window timelines and streams (seconds), capped by a fixed-window model's own window.
DEFAULT_WINDOW_SECONDS = 3.0
#: What `LayerStatsForAudioClassification.pooled_statistics` takes from a collated batch.
_STATISTICS_INPUTS = ("input_values", "input_features", "attention_mask")


@dataclass(frozen=True)
class Prediction:
    """The emotion recognised in one clip: top ``label``, its ``score``, and every label's probability."""

    label: str
    score: float
    scores: dict[str, float] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "scores": dict(self.scores)}


#: How timelines and streams cut a recording: at pauses (one segment per utterance), or in fixed windows.
SEGMENTATIONS = ("utterances", "windows")


def _check_segmentation(segmentation: str) -> None:
    if segmentation not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, not {segmentation!r}")


def _no_options(options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"{', '.join(sorted(options))}: options of segmentation='utterances' only")


def _is_single_input(inputs: Any) -> bool:
    """One input, or a batch: a list, tuple or other sequence (e.g. a `datasets` column) of inputs."""
    if isinstance(inputs, (str, bytes, bytearray, memoryview)):
        return True
    return not isinstance(inputs, Sequence)


class EmotionRecognizer:
    """A speech emotion recognizer around a transformers audio-classification model.

    >>> rec = EmotionRecognizer.from_pretrained("out/best")
    >>> rec.predict("clip.wav")
    Prediction(label='angry', score=0.91)
    """

    def __init__(
        self,
        model: PreTrainedModel | OnnxAudioClassifier,
        feature_extractor: Any,
        *,
        device: str | torch.device | None = None,
    ):
        if isinstance(feature_extractor, SERFeatureExtractor) and not feature_extractor.does_preparation:
            feature_extractor = feature_extractor.base  # nothing to prepare: keep the checkpoint plain
        self.labels: list[str] = check_id2label(model.config.id2label, source=f"{type(model).__name__} config")
        if isinstance(model, OnnxAudioClassifier):
            self.device = torch.device("cpu")  # ONNX Runtime's CPU provider
        else:
            self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.model_card: Any = None
        # Clips are prepared (trimmed, loudness set) before they are batched by length, then the model's own
        # feature extractor makes the inputs: what the SERFeatureExtractor does clip by clip in `pipeline`.
        self._collator = AudioCollator(base_extractor(feature_extractor), min_samples=min_input_samples(model.config))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        num_threads: int | None = None,
    ) -> EmotionRecognizer:
        """Load a saved folder or a Hub model id (any transformers audio-classification checkpoint).

        A folder written by `export_onnx` loads as an ONNX Runtime model (CPU; ``num_threads`` intra-op
        threads, default torch's) behind the same API.
        """
        path = Path(model_name_or_path)
        if not path.exists() and recover(path, clean=False):
            logger.warning("%s: put back the model that an interrupted save had moved aside", path)
        if path.is_dir() and is_onnx_folder(path):
            with quiet_transformers():
                feature_extractor = AutoFeatureExtractor.from_pretrained(str(path))
            return cls(OnnxAudioClassifier(path, num_threads=num_threads), feature_extractor)
        if path.is_dir() and not (path / "config.json").exists():
            partial = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
            problem = "holds weights but no config.json (an interrupted save?)" if partial else "has no config.json"
            raise SerHfError(f"{path}: not a saved model: it {problem}")
        if not path.exists() and not is_hub_id(str(model_name_or_path)):
            raise SerHfError(f"{model_name_or_path}: no such model folder (and not a Hub model id)")
        kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir}
        try:
            with quiet_transformers():
                model = AutoModelForAudioClassification.from_pretrained(str(model_name_or_path), **kwargs)
                feature_extractor = AutoFeatureExtractor.from_pretrained(str(model_name_or_path), **kwargs)
        except OSError as err:  # not found locally or on the Hub, offline, gated, ...
            raise SerHfError(f"{model_name_or_path}: could not load the model: {err}") from err
        recognizer = cls(model, feature_extractor, device=device)
        recognizer.model_card = load_model_card(model_name_or_path, **kwargs)  # kept when re-saved or pushed
        return recognizer

    @classmethod
    def finetune(
        cls, model_name_or_path: str, corpus: Any = None, *, output_dir: str = "runs/ser-hf", **kwargs: Any
    ) -> EmotionRecognizer:
        """Train a recognizer on ``corpus`` (a `datasets.Dataset` or corpus sources) and save it to
        ``output_dir``; any option of `ser_hf.arguments` as a keyword (see `ser_hf.trainer.finetune`)."""
        from .trainer import finetune

        return finetune(model_name_or_path, corpus, output_dir=output_dir, **kwargs).recognizer

    # --------------------------------------------------------------- properties
    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def backend(self) -> str:
        """``"onnxruntime"`` for an exported model, else ``"pytorch"``."""
        return "onnxruntime" if isinstance(self.model, OnnxAudioClassifier) else "pytorch"

    @property
    def trim_silence(self) -> bool:
        """Whether the feature extractor cuts leading and trailing silence (as the model's training did)."""
        return bool(getattr(self.feature_extractor, "trim", False))

    @property
    def window_seconds(self) -> float | None:
        """The fixed input window of Whisper-style models (longer clips are truncated), else ``None``."""
        samples = window_samples(self.feature_extractor)
        return samples / self.sampling_rate if samples else None

    # ---------------------------------------------------------------- inference
    def prepare(self, waveform: np.ndarray) -> np.ndarray:
        """A decoded clip as the model was trained on it: silence trimmed and loudness set where the feature
        extractor does that (`SERFeatureExtractor`), else unchanged."""
        if isinstance(self.feature_extractor, SERFeatureExtractor):
            return self.feature_extractor.prepare(waveform)
        return np.asarray(waveform, dtype=np.float32)

    def load(self, source: Any, *, sampling_rate: int | None = None) -> np.ndarray:
        """Decode one input to mono float32 at the model's rate (raises `AudioError` naming it)."""
        return audio.load_audio(source, self.sampling_rate, source_sampling_rate=sampling_rate)

    @torch.inference_mode()
    def predict_waveforms(self, waveforms: Sequence[np.ndarray], *, batch_size: int = 8) -> list[Prediction]:
        """Predict decoded waveforms (mono float32 at `sampling_rate`), batched by length.

        A clip's prediction never depends on the other clips: see `padding_is_exact`.
        """
        results: list[Prediction | None] = [None] * len(waveforms)
        for chunk, batch in self._encoded_batches(waveforms, batch_size):
            logits = self.model(**batch).logits.float()
            probabilities = torch.softmax(logits, dim=-1).cpu().numpy()
            for i, row in zip(chunk, probabilities):
                results[i] = self.prediction(row)
        return results  # type: ignore[return-value]

    @property
    def padding_is_exact(self) -> bool:
        """Whether padding a clip in a batch leaves its prediction unchanged.

        True with an attention mask or a fixed window (Whisper). wav2vec2-base-style models take no
        mask and normalise over time in their first convolution, so padding shifts their outputs.
        """
        return window_samples(self.feature_extractor) is not None or bool(
            getattr(self.feature_extractor, "return_attention_mask", False)
        )

    def _encoded_batches(
        self, waveforms: Sequence[np.ndarray], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """(indices, model inputs on the device) for each batch of `_batches`, clips prepared first."""
        waveforms = [self.prepare(w) for w in waveforms]
        for chunk in self._batches([w.shape[0] for w in waveforms], batch_size):
            batch = self._collator.encode([waveforms[i] for i in chunk])
            yield chunk, {k: v.to(self.device) for k, v in batch.items()}

    def _batches(self, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
        """Indices sorted by length, cut into batches (of equal lengths only where padding is not exact)."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < batch_size
                and (self.padding_is_exact or lengths[batches[-1][-1]] == lengths[i])
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        """The `Prediction` for one clip's probabilities (in the order of `labels`)."""
        top = int(np.argmax(probabilities))
        scores = {label: float(p) for label, p in zip(self.labels, probabilities)}
        return Prediction(label=self.labels[top], score=float(probabilities[top]), scores=scores)

    def predict(
        self,
        inputs: Any,
        *,
        sampling_rate: int | None = None,
        batch_size: int = 8,
        errors: str = "raise",
    ) -> Prediction | list[Prediction | AudioError]:
        """Recognise the emotion in one clip or a list of clips.

        Inputs are file paths, bytes, file objects, 1-D arrays (at ``sampling_rate``, default the
        model's), or ``{"array", "sampling_rate"}`` dicts. A single input gives a `Prediction`, a list
        gives a list. With ``errors="return"`` an unusable item gives its `AudioError` in place of a
        prediction instead of raising. The feature extractor prepares each clip as training did (silence
        trimmed, loudness set: `ser_hf.feature_extraction.SERFeatureExtractor`), as `pipeline` does too.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
        single = _is_single_input(inputs)
        items = [inputs] if single else list(inputs)
        if not items:
            raise SerHfError("predict() got an empty list of inputs")
        waveforms: dict[int, np.ndarray] = {}
        failures: dict[int, AudioError] = {}
        for i, item in enumerate(items):
            try:
                waveforms[i] = self.load(item, sampling_rate=sampling_rate)
            except AudioError as err:
                if errors == "raise" or single:
                    if not single:
                        raise type(err)(err.source, f"{err.problem} (item {i} of the batch)") from err
                    raise
                failures[i] = err
        self._warn_if_truncated(waveforms.values())
        keys = list(waveforms)
        predicted = dict(zip(keys, self.predict_waveforms([waveforms[k] for k in keys], batch_size=batch_size)))
        out: list[Prediction | AudioError] = [predicted.get(i) or failures[i] for i in range(len(items))]
        return out[0] if single else out  # type: ignore[return-value]

    # ------------------------------------------------------- speaker adaptation
    @property
    def is_speaker_adaptive(self) -> bool:
        """Whether the model adapts to a speaker (`adapt_to_speaker`, adapting timelines and streams)."""
        return bool(getattr(self.model.config, "speaker_adaptive", False)) and self.backend == "pytorch"

    def _adaptive_model(self) -> Any:
        if getattr(self.model.config, "speaker_adaptive", False) and self.backend == "onnxruntime":
            raise SerHfError(
                "an ONNX export keeps the speaker it was exported with: adapt the PyTorch model "
                "(adapt_to_speaker), then export it"
            )
        if not self.is_speaker_adaptive or not hasattr(self.model, "set_speaker"):
            raise SerHfError(
                f"{type(self.model).__name__} was not trained to adapt to speakers; train it with the statistics "
                "head and speaker adaptation on (the defaults of `ser-hf train`), or predict without adapting"
            )
        return self.model

    def speaker_profile(self, **options: Any) -> SpeakerProfile:
        """A fresh `SpeakerProfile` for this model (what adapting timelines and streams keep per speaker)."""
        return SpeakerProfile.for_model(self._adaptive_model(), **options)

    @property
    def has_statistics_head(self) -> bool:
        """Whether the model pools layer statistics (`ser_hf.layer_stats`): an utterance longer than its
        window is then predicted from the exact statistics of all its windows, not from averaged windows."""
        return self.backend == "pytorch" and hasattr(self.model, "pooled_statistics_and_frames")

    def _statistics_model(self) -> Any:
        if not self.has_statistics_head:
            raise SerHfError(f"{type(self.model).__name__} has no layer-statistics head (ser-hf's PyTorch models do)")
        return self.model

    def statistics(self, waveforms: Sequence[np.ndarray], *, batch_size: int = 8) -> np.ndarray:
        """The statistics head's input for decoded clips ``(clips, layers, 2 * hidden)``: every layer's mean
        and spread over the clip's real frames (clips longer than the model's window are cut to it)."""
        return self.statistics_and_frames(waveforms, batch_size=batch_size)[0]

    @torch.inference_mode()
    def statistics_and_frames(
        self, waveforms: Sequence[np.ndarray], *, batch_size: int = 8
    ) -> tuple[np.ndarray, np.ndarray]:
        """`statistics` and the number of real frames each clip's statistics cover ``(clips,)``."""
        model = self._statistics_model()
        shape = self._statistics_shape(model)
        out = np.zeros((len(waveforms), shape[0] * shape[1]), dtype=np.float32)
        frames = np.zeros(len(waveforms), dtype=np.int64)
        for chunk, batch in self._encoded_batches(waveforms, batch_size):
            inputs = {k: v for k, v in batch.items() if k in _STATISTICS_INPUTS}
            stats, counts = model.pooled_statistics_and_frames(**inputs)
            out[chunk] = stats.flatten(1).float().cpu().numpy()
            frames[chunk] = counts.cpu().numpy()
        return out.reshape(len(waveforms), *shape), frames

    @staticmethod
    def _statistics_shape(model: Any) -> tuple[int, int]:
        layers = len(model.config.pooled_layers())
        return layers, 2 * model.config.hidden_size()

    @torch.inference_mode()
    def classify_statistics(self, statistics: np.ndarray, profile: SpeakerProfile | None = None) -> list[Prediction]:
        """Predictions for `statistics`, mapped from ``profile``'s speaker (the model's current speaker when
        ``None`` or not yet `SpeakerProfile.active`), leaving the recognizer's own speaker as it is."""
        model = self._adaptive_model() if profile is not None else self._statistics_model()
        mean = spread = None
        if profile is not None and profile.active:
            mean, spread = (torch.as_tensor(v, device=self.device) for v in profile.estimate())
        x = torch.as_tensor(np.asarray(statistics, dtype=np.float32), device=self.device)
        logits = model.classify(x, mean, spread).float()
        return [self.prediction(row) for row in torch.softmax(logits, dim=-1).cpu().numpy()]

    def adapt_to_speaker(
        self,
        inputs: Any,
        *,
        sampling_rate: int | None = None,
        batch_size: int = 8,
    ) -> EmotionRecognizer:
        """Adapt later predictions to one speaker, from unlabelled clips of them (inputs as in `predict`).

        Their statistics are blended with the training speakers' average voice (`SpeakerProfile`), so a few
        clips move predictions a little and more clips more. `reset_speaker` undoes it. Returns ``self``.
        """
        model = self._adaptive_model()
        items = [inputs] if _is_single_input(inputs) else list(inputs)
        if not items:
            raise SerHfError("adapt_to_speaker() got no clips of the speaker")
        waveforms = []
        for i, item in enumerate(items):
            try:
                waveforms.append(self.load(item, sampling_rate=sampling_rate))
            except AudioError as err:
                raise type(err)(err.source, f"{err.problem} (speaker clip {i})") from err
        self._warn_if_truncated(waveforms)
        profile = self.speaker_profile(min_seconds=0.0)
        profile.add(self.statistics(waveforms, batch_size=batch_size), [w.size / self.sampling_rate for w in waveforms])
        model.set_speaker(*(torch.as_tensor(v) for v in profile.estimate()))
        if len(waveforms) < 5:
            logger.warning("adapted to a speaker from %d clip(s); more clips give steadier predictions", len(items))
        return self

    def reset_speaker(self) -> EmotionRecognizer:
        """Undo `adapt_to_speaker`: predictions for the training speakers' average voice again."""
        self._adaptive_model().reset_speaker()
        return self

    def _warn_if_truncated(self, waveforms: Any) -> None:
        window = window_samples(self.feature_extractor)
        if window and any(w.shape[0] > window and self.prepare(w).shape[0] > window for w in waveforms):
            logger.warning(
                "some clips are longer than the model's %.0f s window; only their first %.0f s are used "
                "(use predict_timeline for long recordings)",
                window / self.sampling_rate,
                window / self.sampling_rate,
            )

    # ------------------------------------------------------- long and live audio
    def _window_seconds(self, requested: float | None) -> float:
        if requested is not None:
            return requested
        return min(DEFAULT_WINDOW_SECONDS, self.window_seconds or DEFAULT_WINDOW_SECONDS)

    def predict_timeline(
        self,
        source: str | os.PathLike | Any,
        *,
        segmentation: str = "utterances",
        adapt: str = "auto",
        window_seconds: float | None = None,
        hop_seconds: float = 1.0,
        smoothing: int = 1,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        batch_size: int = 8,
        **options: Any,
    ) -> list[Segment]:
        """Emotion over time for a recording of any length, read block by block (bounded memory).

        ``segmentation="utterances"`` (the default): one `Segment` per utterance, cut at pauses and predicted
        on exactly its audio; ``window_seconds`` is then the longest stretch predicted at once (default: the
        model's window). ``adapt``: ``"auto"`` (online adaptation for models that adapt to speakers),
        ``"online"``, ``"recording"`` (one speaker: the whole recording first, then every utterance) or
        ``"off"``; see `ser_hf.conversation`. Frames quieter than ``silence_threshold_db`` dBFS are never
        speech. ``options``: `ser_hf.conversation.UtteranceStream`'s (``min_pause``, ``vad``, ...).

        ``segmentation="windows"``: fixed windows of ``window_seconds`` (default 3 s, or the model's window
        if shorter) every ``hop_seconds``, ``smoothing`` averaging probabilities over that many neighbouring
        windows, quiet windows marked silent. ``source``: a path, bytes, or an iterable of sample chunks at
        the model's rate.
        """
        return list(
            self.iter_timeline(
                source,
                segmentation=segmentation,
                adapt=adapt,
                window_seconds=window_seconds,
                hop_seconds=hop_seconds,
                smoothing=smoothing,
                silence_threshold_db=silence_threshold_db,
                batch_size=batch_size,
                **options,
            )
        )

    def iter_timeline(
        self,
        source: str | os.PathLike | Any,
        *,
        segmentation: str = "utterances",
        adapt: str = "auto",
        window_seconds: float | None = None,
        hop_seconds: float = 1.0,
        smoothing: int = 1,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        batch_size: int = 8,
        **options: Any,
    ) -> Iterator[Segment]:
        """`predict_timeline` as a generator: each segment as soon as it is known (with ``adapt="recording"``,
        once the whole recording was heard)."""
        _check_segmentation(segmentation)
        if segmentation == "utterances":
            if smoothing != 1:
                raise ValueError("smoothing averages neighbouring windows: it needs segmentation='windows'")
            return iter_utterances(
                self,
                source,
                adapt=adapt,
                window_seconds=window_seconds,
                silence_threshold_db=silence_threshold_db,
                batch_size=batch_size,
                **options,
            )
        _no_options(options)
        segments = iter_timeline(
            self,
            source,
            window_seconds=self._window_seconds(window_seconds),
            hop_seconds=hop_seconds,
            silence_threshold_db=silence_threshold_db,
            batch_size=batch_size,
        )
        return iter_smooth(segments, smoothing)

    def stream(
        self,
        *,
        sampling_rate: int | None = None,
        segmentation: str = "utterances",
        adapt: str = "auto",
        window_seconds: float | None = None,
        hop_seconds: float = 1.0,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        **options: Any,
    ) -> UtteranceStream | EmotionStream:
        """A live stream: ``stream.push(chunk)`` returns `Segment` s as they are known.

        By default an `UtteranceStream`: each utterance's label when the pause after it is heard
        (``final=True``), and while the speaker talks on a provisional label every ``hop_seconds``
        (``final=False``); adapting online to the speaker where the model can (``adapt``; ``stream.reset()``
        for a new speaker). ``segmentation="windows"``: an `EmotionStream`, a `Segment` per hop as soon as its
        window is full.
        """
        _check_segmentation(segmentation)
        if segmentation == "utterances":
            return UtteranceStream(
                self,
                sampling_rate=sampling_rate,
                adapt=adapt,
                window_seconds=window_seconds,
                hop_seconds=hop_seconds,
                silence_threshold_db=silence_threshold_db,
                **options,
            )
        _no_options(options)
        return EmotionStream(
            self,
            window_seconds=self._window_seconds(window_seconds),
            hop_seconds=hop_seconds,
            sampling_rate=sampling_rate,
            silence_threshold_db=silence_threshold_db,
        )

    # ------------------------------------------------------------ saving/sharing
    def export_onnx(self, output_dir: str | os.PathLike, *, quantize: str | None = None) -> Path:
        """Export to an ONNX folder (``quantize="int8"``: dynamic int8) that `from_pretrained` loads back."""
        if isinstance(self.model, OnnxAudioClassifier):
            raise SerHfError(f"{self.model.folder}: already an ONNX model; export from the PyTorch model")
        return export_onnx(
            self.model, self.feature_extractor, output_dir, quantize=quantize, model_card=self.model_card
        )

    def save_pretrained(self, save_directory: str | os.PathLike, *, state_dict: dict[str, Any] | None = None) -> Path:
        """Save model (safetensors), config with id2label, feature extractor and model card, atomically.

        ``model_card`` (a `huggingface_hub.ModelCard`, e.g. from `ser_hf.model_card.build_model_card`) is
        written as ``README.md``, with the images it carries beside it. ``state_dict`` replaces the model's
        own weights (e.g. gathered from FSDP or DeepSpeed shards).
        """
        with atomic_directory(save_directory) as staged, quiet_transformers():
            self.model.save_pretrained(staged, state_dict=state_dict)
            self.feature_extractor.save_pretrained(staged)
            if self.model_card is not None:
                self.model_card.save(staged / "README.md")
        return Path(save_directory)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload speech emotion recognizer (ser-hf)",
    ) -> str:
        """Upload a fresh save (weights, config, feature extractor, model card) to the Hub as one commit.

        One ``create_commit`` (not ``upload_folder``, which may split a folder into several commits): the
        weights never appear on the Hub without their card. Returns the commit URL. A recognizer without a
        card gets one describing the model; the card's usage snippets are pointed at ``repo_id``.
        """
        from huggingface_hub import CommitOperationAdd, HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        if self.model_card is None:
            self.model_card = describe_model(self.model, self.feature_extractor)
        self.model_card = card_for_repo(self.model_card, repo_id)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            operations = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in files]
            commit = api.create_commit(
                repo_id, operations, commit_message=commit_message, revision=revision, repo_type="model"
            )
        return str(commit.commit_url)

    def __repr__(self) -> str:
        return (
            f"EmotionRecognizer(model={type(self.model).__name__}, labels={self.labels}, "
            f"sampling_rate={self.sampling_rate}, device={self.device}, backend={self.backend})"
        )
