"""Any labelled speech corpus: a folder per label, or a CSV/JSON manifest of path, label and speaker.

Labels are mapped onto ser-hf's emotion taxonomy (`ser_hf.labels.canonical_emotion`: "anger",
"ANG" and "angry" are all ``angry``); labels outside it are kept, lower-cased.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from datasets import Value

from ..errors import CorpusError
from ..labels import canonical_emotion, taxonomy_order
from .base import build_corpus, corpus_folder, report_invalid, scan_audio_files

#: Column names accepted for each field of a manifest (first match wins).
PATH_KEYS = ("path", "file", "filename", "audio", "wav")
LABEL_KEYS = ("label", "emotion")
SPEAKER_KEYS = ("speaker", "speaker_id", "actor", "spk")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
UNKNOWN_SPEAKER = "unknown"


def load_label_folders(
    source: str | os.PathLike,
    *,
    speaker_pattern: str | None = None,
    on_invalid: str = "raise",
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """A corpus laid out as ``root/<label>/**/<clip>``: each top-level folder names a label.

    ``speaker_pattern`` is a regular expression searched in each file's path relative to ``root``; its
    ``speaker`` group (or its first group) is the speaker (e.g. ``r"^[^/]+/(?P<speaker>[^/]+)/"`` for
    ``root/<label>/<speaker>/<clip>``, or ``r"spk(\\d+)"``). Without it, speakers are ``"unknown"`` and
    speaker-independent splits are impossible. The ``corpus`` column holds ``name`` (default: the folder's name).
    """
    root = corpus_folder(source, name or "label folders", cache_dir=cache_dir)
    corpus_name = name or root.name
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    records, invalid = [], []
    for path in scan_audio_files(root):
        relative = path.relative_to(root).as_posix()
        if "/" not in relative:
            invalid.append((str(path), "not inside a label folder"))
            continue
        speaker = UNKNOWN_SPEAKER
        if pattern is not None:
            match = pattern.search(relative)
            if not match:
                invalid.append((str(path), f"speaker pattern {speaker_pattern!r} does not match {relative!r}"))
                continue
            speaker = match.groupdict().get("speaker") or (match.group(1) if pattern.groups else match.group(0))
        label = canonical_emotion(relative.split("/", 1)[0])
        records.append({"path": path, "emotion": label, "label_source": relative.split("/", 1)[0], "speaker": speaker})
    report_invalid(corpus_name, invalid, on_invalid=on_invalid)
    return _build(records, corpus_name)


def _first_key(row: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    lowered = {k.lower().strip(): k for k in row}
    return next((lowered[k] for k in keys if k in lowered), None)


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise CorpusError(f"{path}: cannot read the manifest ({err})") from err
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            sample = text[:4096]
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
            return list(csv.DictReader(text.splitlines(), dialect=dialect))
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (csv.Error, json.JSONDecodeError) as err:
        raise CorpusError(f"{path}: not a valid {path.suffix.lstrip('.').upper()} manifest ({err})") from err
    if isinstance(data, dict):
        data = data.get("data") or data.get("rows") or data.get("items")
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise CorpusError(f"{path}: a JSON manifest must be a list of objects (or {{'data': [...]}})")
    return data


def load_manifest(
    manifest: str | os.PathLike,
    *,
    on_invalid: str = "raise",
    name: str | None = None,
) -> Any:
    """A corpus listed in a CSV/TSV, JSON or JSON Lines manifest: one row per clip.

    Each row needs a path (``path``/``file``/``audio``...; relative paths are relative to the manifest's
    folder) and a label (``label``/``emotion``), and may give a speaker (``speaker``/``actor``...).
    Other columns are kept as strings. Rows whose file is missing are reported (``on_invalid``). The
    ``corpus`` column holds the manifest's own ``corpus`` value where a row has one, else ``name``
    (default: the manifest's file name without its extension).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: no such manifest file")
    rows = _read_manifest(manifest)
    if not rows:
        raise CorpusError(f"{manifest}: the manifest lists no clips")
    path_key, label_key = _first_key(rows[0], PATH_KEYS), _first_key(rows[0], LABEL_KEYS)
    if path_key is None or label_key is None:
        raise CorpusError(
            f"{manifest}: needs a path column (one of {PATH_KEYS}) and a label column (one of {LABEL_KEYS}); "
            f"it has {sorted(rows[0])}"
        )
    speaker_key = _first_key(rows[0], SPEAKER_KEYS)
    reserved = {"audio", "path", "label", "emotion", "speaker", "label_source", path_key, label_key, speaker_key}
    extra = [k for k in rows[0] if k not in reserved]
    records, invalid = [], []
    for number, row in enumerate(rows, start=1):
        raw_path, raw_label = row.get(path_key), row.get(label_key)
        if not raw_path or raw_label in (None, ""):
            invalid.append((f"{manifest} row {number}", "empty path or label"))
            continue
        path = Path(str(raw_path)).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            invalid.append((str(path), f"listed in {manifest.name} row {number} but not found"))
            continue
        speaker = row.get(speaker_key) if speaker_key else None
        record = {
            "path": path,
            "emotion": canonical_emotion(str(raw_label)),
            "label_source": str(raw_label),
            "speaker": str(speaker).strip() if speaker not in (None, "") else UNKNOWN_SPEAKER,
        }
        record.update({k: "" if row.get(k) is None else str(row.get(k)) for k in extra})
        records.append(record)
    report_invalid(name or manifest.name, invalid, on_invalid=on_invalid)
    return _build(records, name or manifest.stem, extra)


def _build(records: list[dict[str, Any]], corpus_name: str, extra: list[str] | tuple[str, ...] = ()) -> Any:
    if not records:
        raise CorpusError(f"{corpus_name}: no usable audio files found")
    columns: dict[str, Any] = {"emotion": Value("string"), "label_source": Value("string"), "speaker": Value("string")}
    columns.update({k: Value("string") for k in extra})
    labels = taxonomy_order(r["emotion"] for r in records)
    return build_corpus(records, label_names=labels, columns=columns, corpus_name=corpus_name)
