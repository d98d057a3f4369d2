"""ser-hf: speech emotion recognition by transfer learning on pretrained speech models.

The public names load on first use (PEP 562), so ``import ser_hf`` and the ``ser-hf`` command line start
without importing torch, transformers or datasets until a command needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AudioError,
    AudioTooLongError,
    CorpusError,
    EmptyAudioError,
    InvalidSamplesError,
    LabelMapError,
    SerHfError,
    SilentAudioError,
    UnreadableAudioError,
)

if TYPE_CHECKING:
    from .audio import load_audio
    from .conversation import UtteranceStream
    from .corpora import (
        load_corpora,
        load_corpus,
        load_crema_d,
        load_emodb,
        load_emovo,
        load_label_folders,
        load_manifest,
        load_ravdess,
        load_savee,
        load_tess,
    )
    from .recognizer import EmotionRecognizer, Prediction
    from .timeline import EmotionStream, Segment

__version__ = "0.1.0"

#: Public name → the submodule that defines it (imported when the name is first used).
_LAZY = {
    "load_audio": ".audio",
    **dict.fromkeys(
        (
            "load_corpora",
            "load_corpus",
            "load_crema_d",
            "load_emodb",
            "load_emovo",
            "load_label_folders",
            "load_manifest",
            "load_ravdess",
            "load_savee",
            "load_tess",
        ),
        ".corpora",
    ),
    "EmotionRecognizer": ".recognizer",
    "Prediction": ".recognizer",
    "EmotionStream": ".timeline",
    "Segment": ".timeline",
    "UtteranceStream": ".conversation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AudioError",
    "AudioTooLongError",
    "CorpusError",
    "EmotionRecognizer",
    "EmotionStream",
    "EmptyAudioError",
    "InvalidSamplesError",
    "LabelMapError",
    "Prediction",
    "Segment",
    "SerHfError",
    "SilentAudioError",
    "UnreadableAudioError",
    "UtteranceStream",
    "__version__",
    "load_audio",
    "load_corpora",
    "load_corpus",
    "load_crema_d",
    "load_emodb",
    "load_emovo",
    "load_label_folders",
    "load_manifest",
    "load_ravdess",
    "load_savee",
    "load_tess",
]
