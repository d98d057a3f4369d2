"""RAVDESS (Livingstone & Russo 2018) as a `datasets.Dataset`.

File names are ``MM-VV-EE-II-SS-RR-AA.wav``: modality, vocal channel, emotion, intensity,
statement, repetition, actor (odd = male, even = female).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, Value, concatenate_datasets

from ..errors import CorpusError
from ..labels import RAVDESS_EMOTIONS
from .base import (
    audio_column,
    audio_name,
    build_corpus,
    fetch_and_extract,
    is_hub_id,
    load_saved_dataset,
    looks_like_dataset_folder,
    report_invalid,
    scan_audio_files,
)

logger = logging.getLogger(__name__)

ZENODO_RECORD = "https://zenodo.org/records/1188976"
RAVDESS_SPEECH_URL = f"{ZENODO_RECORD}/files/Audio_Speech_Actors_01-24.zip?download=1"
RAVDESS_SONG_URL = f"{ZENODO_RECORD}/files/Audio_Song_Actors_01-24.zip?download=1"
RAVDESS_LICENSE = (
    "RAVDESS (Livingstone & Russo, 2018, PLoS ONE 13(5): e0196391, doi:10.5281/zenodo.1188976) is licensed "
    "CC BY-NC-SA 4.0: non-commercial use, with attribution, derivatives shared alike."
)

_MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
_CHANNELS = {1: "speech", 2: "song"}
_INTENSITIES = {1: "normal", 2: "strong"}
_STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}

RAVDESS_COLUMNS: dict[str, Any] = {
    "emotion": Value("string"),
    "intensity": Value("string"),
    "statement": Value("string"),
    "repetition": Value("int32"),
    "actor": Value("int32"),
    "speaker": Value("string"),
    "gender": Value("string"),
    "vocal_channel": Value("string"),
    "modality": Value("string"),
}


def parse_ravdess_name(name: str) -> dict[str, Any]:
    """Parse a RAVDESS file name into its fields; `ValueError` says what is wrong with it."""
    stem = Path(name).name.split(".")[0]
    parts = stem.split("-")
    if len(parts) != 7 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError("expected seven two-digit fields, MM-VV-EE-II-SS-RR-AA")
    modality, channel, emotion, intensity, statement, repetition, actor = (int(p) for p in parts)
    checks = [
        ("modality", modality, _MODALITIES),
        ("vocal channel", channel, _CHANNELS),
        ("emotion", emotion, range(1, 9)),
        ("intensity", intensity, _INTENSITIES),
        ("statement", statement, _STATEMENTS),
        ("repetition", repetition, (1, 2)),
        ("actor", actor, range(1, 25)),
    ]
    for field_name, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{field_name} code {value:02d} is not a RAVDESS code")
    return {
        "emotion": RAVDESS_EMOTIONS[emotion - 1],
        "intensity": _INTENSITIES[intensity],
        "statement": _STATEMENTS[statement],
        "repetition": repetition,
        "actor": actor,
        "speaker": f"{actor:02d}",
        "gender": "male" if actor % 2 else "female",
        "vocal_channel": _CHANNELS[channel],
        "modality": _MODALITIES[modality],
    }


def _wanted_channels(include_speech: bool, include_song: bool) -> set[str]:
    channels = {name for name, wanted in (("speech", include_speech), ("song", include_song)) if wanted}
    if not channels:
        raise ValueError("include_speech and include_song are both False: nothing to load")
    return channels


def _from_folder(root: Path, channels: set[str], on_invalid: str, files: list[Path] | None = None) -> Dataset:
    records, invalid = [], []
    for path in files if files is not None else scan_audio_files(root):
        try:
            fields = parse_ravdess_name(path.name)
        except ValueError as err:
            invalid.append((str(path), str(err)))
            continue
        if fields["vocal_channel"] in channels:
            records.append({"path": path, **fields})
    report_invalid("RAVDESS", invalid, on_invalid=on_invalid)
    if not records:
        raise CorpusError(
            f"RAVDESS: no {'/'.join(sorted(channels))} clips named MM-VV-EE-II-SS-RR-AA found under {root}"
        )
    return build_corpus(
        records, label_names=RAVDESS_EMOTIONS, columns=RAVDESS_COLUMNS, corpus_name="RAVDESS", corpus_id="ravdess"
    )


def _from_saved(source: str, channels: set[str], on_invalid: str, split: str, token: Any) -> Dataset:
    """A Hub dataset id or a local folder written by `datasets`, normalised to ser-hf's columns."""
    dataset = load_saved_dataset(source, split=split, token=token)
    column = audio_column(dataset)
    if column != "audio":
        dataset = dataset.rename_column(column, "audio")
    if "path" not in dataset.column_names:
        dataset = dataset.add_column("path", [audio_name(a) for a in dataset["audio"]])
    missing = [c for c in RAVDESS_COLUMNS if c not in dataset.column_names]
    if missing:  # a dataset from elsewhere: parse the fields from the file names
        parsed, keep, invalid = [], [], []
        for i, path in enumerate(dataset["path"]):
            try:
                parsed.append(parse_ravdess_name(path))
                keep.append(i)
            except ValueError as err:
                invalid.append((path, str(err)))
        report_invalid(f"RAVDESS ({source})", invalid, on_invalid=on_invalid)
        dataset = dataset.select(keep)
        for name in RAVDESS_COLUMNS:
            values = [p[name] for p in parsed]
            if name in dataset.column_names:
                dataset = dataset.remove_columns(name)
            dataset = dataset.add_column(name, values, feature=RAVDESS_COLUMNS[name])
        if "label" in dataset.column_names:
            dataset = dataset.remove_columns("label")
        labels = [RAVDESS_EMOTIONS.index(p["emotion"]) for p in parsed]
        dataset = dataset.add_column("label", labels, feature=ClassLabel(names=list(RAVDESS_EMOTIONS)))
    label_feature = dataset.features.get("label")
    if not isinstance(label_feature, ClassLabel) or list(label_feature.names) != list(RAVDESS_EMOTIONS):
        raise CorpusError(
            f"RAVDESS ({source}): column 'label' must be a ClassLabel of {list(RAVDESS_EMOTIONS)}, got {label_feature}"
        )
    if "corpus" not in dataset.column_names:
        dataset = dataset.add_column("corpus", ["ravdess"] * len(dataset), feature=Value("string"))
    dataset = dataset.filter(lambda channel: channel in channels, input_columns="vocal_channel")
    if len(dataset) == 0:
        raise CorpusError(f"RAVDESS ({source}): no {'/'.join(sorted(channels))} clips")
    return dataset


def load_ravdess(
    source: str | os.PathLike | None = None,
    *,
    include_speech: bool = True,
    include_song: bool = False,
    on_invalid: str = "raise",
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
) -> Dataset:
    """Load RAVDESS as a `datasets.Dataset`, one row per clip.

    ``source`` is a folder (any nesting, .wav or .flac), the Zenodo zip, a Hub dataset id or a folder
    written by `datasets`; ``None`` downloads the official speech zip (song too with ``include_song``)
    from Zenodo once into the Hugging Face cache. Files off the naming scheme raise a `CorpusError`
    listing them, or are skipped with a warning when ``on_invalid="skip"``.

    Columns: ``audio`` (path, not decoded), ``path``, ``label`` (`ClassLabel` in RAVDESS order),
    ``emotion``, ``intensity``, ``statement``, ``repetition``, ``actor``, ``speaker``, ``gender``,
    ``vocal_channel``, ``modality``, ``corpus`` (``"ravdess"``).
    """
    channels = _wanted_channels(include_speech, include_song)
    if source is None:
        logger.warning("Downloading RAVDESS from Zenodo (record 1188976). %s", RAVDESS_LICENSE)
        urls = [u for c, u in (("speech", RAVDESS_SPEECH_URL), ("song", RAVDESS_SONG_URL)) if c in channels]
        folders = [fetch_and_extract(url, cache_dir=cache_dir) for url in urls]
        parts = [_from_folder(folder, channels, on_invalid) for folder in folders]
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)

    path = Path(source)
    if path.is_file():
        if path.suffix.lower() not in {".zip", ".tar", ".gz", ".tgz"}:
            raise CorpusError(f"{path}: expected a folder, a .zip archive or a Hub dataset id")
        return _from_folder(fetch_and_extract(str(path), cache_dir=cache_dir), channels, on_invalid)
    if path.is_dir():
        files = scan_audio_files(path)
        if files or not looks_like_dataset_folder(path):
            return _from_folder(path, channels, on_invalid, files)
        return _from_saved(str(path), channels, on_invalid, split, token)
    if not is_hub_id(str(source)):
        raise CorpusError(f"{source}: no such file or folder")
    return _from_saved(str(source), channels, on_invalid, split, token)


def is_ravdess(dataset: Dataset) -> bool:
    """Whether a dataset has ser-hf's RAVDESS columns and label set (what `load_ravdess` returns)."""
    label = dataset.features.get("label")
    return (
        all(column in dataset.column_names for column in RAVDESS_COLUMNS)
        and isinstance(label, ClassLabel)
        and list(label.names) == list(RAVDESS_EMOTIONS)
    )
