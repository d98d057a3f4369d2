"""Emotional speech corpora as `datasets.Dataset` objects (one module per corpus), on one emotion taxonomy."""

from .base import AUDIO_EXTENSIONS, scan_audio_files
from .crema_d import CREMA_D_EMOTIONS, load_crema_d, parse_crema_d_name
from .emodb import EMODB_EMOTIONS, load_emodb, parse_emodb_name
from .emovo import EMOVO_EMOTIONS, load_emovo, parse_emovo_name
from .generic import load_label_folders, load_manifest
from .info import KNOWN_CORPORA, CorpusInfo, corpus_info
from .multi import combine_corpora, corpus_label_sets, load_corpora
from .ravdess import RAVDESS_LICENSE, load_ravdess, parse_ravdess_name
from .registry import CORPUS_KINDS, detect_corpus, load_corpus
from .savee import SAVEE_EMOTIONS, load_savee, parse_savee_name
from .tess import TESS_EMOTIONS, load_tess, parse_tess_name

__all__ = [
    "AUDIO_EXTENSIONS",
    "CORPUS_KINDS",
    "CREMA_D_EMOTIONS",
    "EMODB_EMOTIONS",
    "EMOVO_EMOTIONS",
    "KNOWN_CORPORA",
    "RAVDESS_LICENSE",
    "SAVEE_EMOTIONS",
    "TESS_EMOTIONS",
    "CorpusInfo",
    "combine_corpora",
    "corpus_info",
    "corpus_label_sets",
    "detect_corpus",
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
    "parse_crema_d_name",
    "parse_emodb_name",
    "parse_emovo_name",
    "parse_ravdess_name",
    "parse_savee_name",
    "parse_tess_name",
    "scan_audio_files",
]
