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
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, PreTrainedModel

from .errors import LabelMapError
from .feature_extraction import SERFeatureExtractor, base_extractor
from .labels import check_id2label
from .layer_stats import LayerStatsConfig

AutoFeatureExtractor.register(LayerStatsConfig, SERFeatureExtractor, exist_ok=True)


def base_feature_extractor(feature_extractor: Any) -> Any:
    """A checkpoint's own feature extractor (unwrapped when it was saved by ser-hf)."""
    return base_extractor(feature_extractor)


logger = logging.getLogger(__name__)

#: Whisper's frame rate after its two convolutions (positions per second of audio).
WHISPER_POSITIONS_PER_SECOND = 50


def _generic_labels(labels: Sequence[str]) -> bool:
    return all(label == f"LABEL_{i}" for i, label in enumerate(labels))


def check_label_compatibility(config: Any, label_names: Sequence[str], source: str) -> None:
    """Refuse a checkpoint whose trained head predicts other labels than the data's (order included)."""
    architectures = getattr(config, "architectures", None) or []
    has_head = any(a.endswith(("ForAudioClassification", "ForSequenceClassification")) for a in architectures)
    if not has_head:
        return
    labels = check_id2label(config.id2label, source=f"{source} config")
    if not _generic_labels(labels) and list(labels) != list(label_names):
        raise LabelMapError(
            f"{source}: its classification head predicts {labels}, but the data's labels are "
            f"{list(label_names)}; pass new_head=True (--new_head) to train a fresh head instead"
        )


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
    return model, base_feature_extractor(feature_extractor)


def freeze(
    model: PreTrainedModel, *, feature_encoder: bool = True, base_model: bool = False, lower_layers: int = 0
) -> None:
    """Freeze the CNN feature encoder (where the model has one), optionally the lowest ``lower_layers``
    transformer layers with everything beneath them (`freeze_lower_layers`), or the whole encoder."""
    if lower_layers and not base_model:
        freeze_lower_layers(model, lower_layers)
    if base_model:
        if hasattr(model, "freeze_base_model"):
            model.freeze_base_model()
        elif hasattr(model, "freeze_encoder"):
            model.freeze_encoder()
        else:
            raise ValueError(f"{type(model).__name__} has no encoder to freeze")
    elif feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()


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


def _norm_after_layers(model: PreTrainedModel) -> bool:
    """Whether the encoder's ``layer_norm`` follows the layer stack (Whisper, "stable layer norm" wav2vec2)."""
    return is_whisper(model) or bool(getattr(model.config, "do_stable_layer_norm", False))


def freeze_lower_layers(model: PreTrainedModel, n_layers: int) -> None:
    """Freeze the lowest ``n_layers`` transformer layers and everything beneath them.

    "Beneath" is the front end that feeds layer 0: the CNN feature encoder, the feature projection, the
    convolutional positional embedding and the input layer norm (wav2vec2 family), or the convolutions
    and positional embeddings (Whisper). Backpropagation then stops at layer ``n_layers``, which is
    where the saving comes from. Higher layers, a final layer norm and the head stay trainable.
    """
    if n_layers <= 0:
        return
    layers = encoder_layers(model)
    if n_layers > len(layers):
        raise ValueError(f"freeze_layers={n_layers}, but {type(model).__name__} has only {len(layers)} layers")
    encoder = encoder_of(model)
    trainable = {id(p) for layer in layers[n_layers:] for p in layer.parameters()}
    stack = getattr(encoder, "encoder", encoder)
    if _norm_after_layers(model) and isinstance(getattr(stack, "layer_norm", None), torch.nn.Module):
        trainable.update(id(p) for p in stack.layer_norm.parameters())
    for parameter in encoder.parameters():
        if id(parameter) not in trainable:
            parameter.requires_grad_(False)
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()  # also keeps the CNN in its no-grad mode


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
