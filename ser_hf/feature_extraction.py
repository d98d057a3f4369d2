"""The audio preparation a ser-hf model was trained with, done by its feature extractor.

`SERFeatureExtractor` wraps a model's own feature extractor (Whisper's log-mel, wav2vec2's normalised
waveform, ...) and first does to each clip what training did to it: cut leading and trailing silence
(`trim_silence`) and bring it to one loudness (`normalize_loudness`). Because the feature extractor is
what `transformers.pipeline`, the Hub and ser-hf's `EmotionRecognizer` all run, they all give the same
answer for the same file. `save_pretrained` ships this file beside the model (``auto_map``), so plain
transformers loads it with ``trust_remote_code=True``; this module therefore imports nothing from ser-hf.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, ClassVar

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .preparation import TRIM_THRESHOLD_DB, normalize_loudness, prepare_clip, trim_silence


def _extractor_class(name: str) -> type:
    transformers = importlib.import_module("transformers")
    cls = getattr(transformers, name, None)
    if cls is None:
        raise ValueError(f"unknown feature extractor class {name!r} (not in transformers)")
    return cls


class SERFeatureExtractor(FeatureExtractionMixin):
    """A model's feature extractor (``base``) behind the clip preparation its model was trained with.

    ``trim`` cuts leading and trailing silence, ``loudness_db`` sets every clip's RMS level; then ``base``
    makes the model inputs. Every other attribute (``sampling_rate``, ``return_attention_mask``, Whisper's
    ``n_samples``, ...) is the base extractor's, read and written through.
    """

    model_input_names: ClassVar[list[str]] = ["input_values"]
    _OWN = frozenset({"base", "trim", "loudness_db", "trim_threshold_db", "_processor_class", "processor_class"})

    def __init__(
        self,
        base: Any = None,
        *,
        trim: bool = False,
        loudness_db: float | None = None,
        trim_threshold_db: float = TRIM_THRESHOLD_DB,
        **kwargs: Any,
    ):
        if isinstance(base, dict):
            settings = dict(base)
            base = _extractor_class(settings.pop("feature_extractor_type")).from_dict(settings)
        if base is None:
            raise ValueError("SERFeatureExtractor needs the model's own feature extractor (base)")
        object.__setattr__(self, "base", base)
        kwargs.pop("feature_extractor_type", None)
        super().__init__(**kwargs)
        self.trim = bool(trim)
        self.loudness_db = None if loudness_db is None else float(loudness_db)
        self.trim_threshold_db = float(trim_threshold_db)
        self.model_input_names = list(base.model_input_names)

    # attributes: the extractor's own settings here, everything else the base extractor's
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "base":
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "base"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        base = self.__dict__.get("base")
        own = name in self._OWN or name == "model_input_names" or hasattr(type(self), name)
        if own or base is None or not hasattr(base, name):
            object.__setattr__(self, name, value)
        else:
            setattr(base, name, value)

    @property
    def does_preparation(self) -> bool:
        """Whether this extractor changes clips before the base extractor sees them."""
        return self.trim or self.loudness_db is not None

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """One clip as the model was trained on it (trimmed and loudness-normalised as configured)."""
        return prepare_clip(
            samples,
            int(self.base.sampling_rate),
            trim=self.trim,
            loudness_db=self.loudness_db,
            threshold_db=self.trim_threshold_db,
        )

    def __call__(self, raw_speech: Any, *args: Any, **kwargs: Any) -> BatchFeature:
        """Prepare each clip, then run the base extractor (same arguments as the base extractor's call)."""
        single = isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 1
        single = single or (isinstance(raw_speech, (list, tuple)) and raw_speech and np.isscalar(raw_speech[0]))
        clips = [raw_speech] if single else list(raw_speech)
        prepared = [self.prepare(np.asarray(clip, dtype=np.float32)) for clip in clips]
        return self.base(prepared[0] if single else prepared, *args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        base = self.base.to_dict()
        base.pop("processor_class", None)
        out = {
            "feature_extractor_type": type(self).__name__,
            "sampling_rate": self.base.sampling_rate,  # for tools that read it here; the base's is the one used
            "base": base,
            "trim": self.trim,
            "trim_threshold_db": self.trim_threshold_db,
            "loudness_db": self.loudness_db,
        }
        if self.__dict__.get("auto_map"):
            out["auto_map"] = copy.deepcopy(self.__dict__["auto_map"])
        return out

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict[str, Any], **kwargs: Any) -> Any:
        settings = dict(feature_extractor_dict)
        settings.pop("auto_map", None)
        settings.pop("sampling_rate", None)
        return_unused = kwargs.pop("return_unused_kwargs", False)
        extractor = cls(**settings)
        for key in [k for k in kwargs if hasattr(extractor, k)]:
            setattr(extractor, key, kwargs.pop(key))
        return (extractor, kwargs) if return_unused else extractor

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={type(self.base).__name__}, trim={self.trim}, loudness_db={self.loudness_db})"
        )


def base_extractor(feature_extractor: Any) -> Any:
    """The model's own feature extractor inside a `SERFeatureExtractor` (the extractor itself otherwise)."""
    return feature_extractor.base if isinstance(feature_extractor, SERFeatureExtractor) else feature_extractor


SERFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["SERFeatureExtractor", "base_extractor", "normalize_loudness", "prepare_clip", "trim_silence"]
