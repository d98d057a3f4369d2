"""Build a pretrained speech encoder with a classification head (transformers Auto classes).

ser-hf loads the encoder under transformers' own ``*ForAudioClassification`` head (the weighted-layer head,
exported as is with ``--head weighted``) and fits its heads on the encoder's cached features.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification, PreTrainedModel

from .errors import SerHfError
from .feature_extraction import SERFeatureExtractor, base_extractor
from .layer_stats import LayerStatsConfig

AutoFeatureExtractor.register(LayerStatsConfig, SERFeatureExtractor, exist_ok=True)


logger = logging.getLogger(__name__)

#: Whisper's frame rate after its two convolutions (positions per second of audio).
WHISPER_POSITIONS_PER_SECOND = 50


@contextlib.contextmanager
def quiet_transformers(verbose: bool = False) -> Iterator[None]:
    """Hold transformers' load reports, warnings and progress bars back while ser-hf loads a model on purpose.

    ``verbose=True`` (or ``SER_HF_VERBOSE=1``) leaves them on.
    """
    from transformers.utils import logging as hf_logging

    if verbose or os.environ.get("SER_HF_VERBOSE"):
        yield
        return
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_backbone(
    model_name_or_path: str,
    label_names: Sequence[str],
    *,
    classifier_proj_size: int = 256,
    cache_dir: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **config_overrides: Any,
) -> tuple[PreTrainedModel, Any]:
    """A pretrained speech encoder under a new weighted-layer head over ``label_names``, and its feature extractor.

    The head (layer weights, projector, classifier) is created here on purpose: ser-hf fits it (or the
    statistics head that replaces it) on the encoder's cached features, so transformers' report of newly
    initialised weights is held back and one log line says what was made.
    """
    hub_kwargs = {"cache_dir": cache_dir, "revision": revision, "token": token}
    config = AutoConfig.from_pretrained(model_name_or_path, **hub_kwargs)
    if getattr(config, "model_type", None) == LayerStatsConfig.model_type:
        base = getattr(config, "_name_or_path", "") or "its base encoder"
        raise SerHfError(
            f"{model_name_or_path} is a trained ser-hf recognizer; train from a pretrained speech encoder instead "
            f"(e.g. the one it was trained from, {config.encoder.get('_name_or_path') or base})"
        )
    if any(a.endswith(("ForAudioClassification", "ForSequenceClassification")) for a in config.architectures or []):
        logger.info("%s: its classification head is replaced by a new one over %s", model_name_or_path, label_names)
    id2label = dict(enumerate(label_names))
    with quiet_transformers():
        model = AutoModelForAudioClassification.from_pretrained(
            model_name_or_path,
            num_labels=len(label_names),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            use_weighted_layer_sum=True,
            classifier_proj_size=classifier_proj_size,
            ignore_mismatched_sizes=True,
            **config_overrides,
            **hub_kwargs,
        )
        feature_extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path, **hub_kwargs)
    logger.info(
        "%s: loaded the pretrained encoder (%s) under a new %d-label head, which ser-hf fits on its features",
        model_name_or_path,
        type(model).__name__,
        len(label_names),
    )
    return model, base_extractor(feature_extractor)


def encoder_of(model: PreTrainedModel) -> torch.nn.Module:
    """The speech encoder under a classification head (``model.wav2vec2``, ``model.hubert``, Whisper's encoder...)."""
    if is_whisper(model):
        return model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
    return model.base_model


def encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The encoder's stack of transformer layers, lowest first."""
    layers = getattr(getattr(encoder_of(model), "encoder", encoder_of(model)), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: no stack of transformer layers found")
    return layers


def is_whisper(model: PreTrainedModel) -> bool:
    return getattr(model.config, "model_type", None) == "whisper"


def whisper_window_seconds(max_clip_seconds: float, *, limit: int = 30) -> int:
    """The shortest whole-second Whisper window that holds a clip of ``max_clip_seconds``."""
    return max(1, min(limit, math.ceil(max_clip_seconds - 1e-6)))


def shorten_whisper_window(model: PreTrainedModel, feature_extractor: Any, seconds: int) -> None:
    """Shrink a Whisper encoder's 30 s input window to ``seconds``, consistently.

    Slices the positional embeddings, sets ``config.max_source_positions``, and sets the feature
    extractor's ``chunk_length``/``n_samples``/``nb_max_frames``, so the saved model reloads (and
    `pipeline` runs it) with the same window.
    """
    if not is_whisper(model):
        raise ValueError(f"only Whisper encoders have a fixed input window, not {model.config.model_type}")
    positions = int(seconds) * WHISPER_POSITIONS_PER_SECOND
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
    if positions > encoder.embed_positions.num_embeddings:
        raise ValueError(f"window of {seconds} s is longer than the model's {encoder.max_source_positions // 50} s")
    if positions == encoder.embed_positions.num_embeddings:
        return
    weight = encoder.embed_positions.weight.detach()[:positions].clone()
    encoder.embed_positions = torch.nn.Embedding.from_pretrained(weight, freeze=True)
    encoder.max_source_positions = positions
    model.config.max_source_positions = positions
    feature_extractor.chunk_length = int(seconds)
    feature_extractor.n_samples = int(seconds) * feature_extractor.sampling_rate
    feature_extractor.nb_max_frames = feature_extractor.n_samples // feature_extractor.hop_length
    logger.info("Whisper input window shortened to %d s (%d positions)", seconds, positions)
