"""ser-hf: speech emotion recognition by transfer learning on pretrained speech models."""

from .audio import load_audio
from .corpora import (
    load_corpus,
    load_crema_d,
    load_emodb,
    load_label_folders,
    load_manifest,
    load_ravdess,
    load_savee,
    load_tess,
)
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
from .recognizer import EmotionRecognizer, Prediction
from .timeline import EmotionStream, Segment

__version__ = "0.1.0"

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
    "__version__",
    "load_audio",
    "load_corpus",
    "load_crema_d",
    "load_emodb",
    "load_label_folders",
    "load_manifest",
    "load_ravdess",
    "load_savee",
    "load_tess",
]
