"""Emotional speech corpora as `datasets.Dataset` objects (one module per corpus)."""

from .base import AUDIO_EXTENSIONS, scan_audio_files
from .ravdess import RAVDESS_LICENSE, load_ravdess, parse_ravdess_name

__all__ = ["AUDIO_EXTENSIONS", "RAVDESS_LICENSE", "load_ravdess", "parse_ravdess_name", "scan_audio_files"]
