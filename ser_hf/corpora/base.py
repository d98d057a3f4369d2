"""What every corpus loader shares: finding audio files, fetching archives, building the `Dataset`."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Audio, ClassLabel, Dataset, Features, Value

from ..errors import CorpusError

logger = logging.getLogger(__name__)

#: File endings treated as audio when scanning a folder (whatever libsndfile decodes).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au"})


def scan_audio_files(root: str | os.PathLike) -> list[Path]:
    """Every audio file under ``root`` (any nesting), sorted; hidden files and folders are ignored."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__MACOSX")))
        found.extend(
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        )
    return sorted(found)


def fetch_and_extract(url_or_path: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download (once, into the Hugging Face datasets cache) and extract an archive; return the folder.

    Local paths and ``file://`` URLs take the same route, so the cache and extraction logic are the
    ones `datasets` uses for its own downloads, progress bars included.
    """

    def extract(local_files_only: bool) -> Path:
        config = datasets.DownloadConfig(cache_dir=cache_dir, use_etag=False, local_files_only=local_files_only)
        return Path(datasets.DownloadManager(download_config=config).download_and_extract(url_or_path))

    try:  # a local archive, or one downloaded before: no network at all
        return extract(local_files_only=True)
    except (FileNotFoundError, ConnectionError):
        return extract(local_files_only=False)


def is_hub_id(source: str) -> bool:
    """Whether a string that is not a local path can be a Hub repository id (``name`` or ``owner/name``)."""
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source)) and not source.startswith((".", "~"))


def looks_like_dataset_folder(path: Path) -> bool:
    """A folder saved by `datasets` (``save_to_disk``) or holding a dataset's data files."""
    if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        return True
    data_suffixes = {".parquet", ".arrow", ".jsonl", ".csv"}
    return any(p.suffix in data_suffixes for p in path.rglob("*") if p.is_file())


def load_saved_dataset(source: str, *, split: str = "train", token: str | bool | None = None) -> Dataset:
    """A dataset from the Hub (``user/name``) or a local folder written by `datasets`.

    Audio columns are switched to ``decode=False``: ser-hf decodes with soundfile, never torchcodec.
    """
    path = Path(source)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
    else:
        try:
            loaded = datasets.load_dataset(source, split=None, token=token)
        except Exception as err:  # datasets raises many types (not found, offline, auth, format)
            where = "local folder" if path.is_dir() else "Hub dataset id (no such local file or folder)"
            raise CorpusError(f"{source}: could not load it as a {where}: {type(err).__name__}: {err}") from err
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise CorpusError(f"{source}: no split {split!r}; it has {sorted(loaded)}")
        loaded = loaded[split]
    for column, feature in loaded.features.items():
        if isinstance(feature, Audio):
            loaded = loaded.cast_column(column, Audio(decode=False))
    return loaded


def audio_column(dataset: Dataset) -> str:
    """The name of the dataset's audio column (an `Audio` feature, else a column called audio/path/file)."""
    for column, feature in dataset.features.items():
        if isinstance(feature, Audio):
            return column
    for candidate in ("audio", "path", "file", "filename"):
        if candidate in dataset.column_names:
            return candidate
    raise CorpusError(f"no audio column among {dataset.column_names}")


def audio_name(value: Any) -> str:
    """The file name an audio cell refers to (a path string or a ``{"path", "bytes"}`` dict)."""
    if isinstance(value, dict):
        return str(value.get("path") or "")
    return str(value)


def build_corpus(
    records: Sequence[dict[str, Any]],
    *,
    label_names: Sequence[str],
    columns: dict[str, Any],
    corpus_name: str,
) -> Dataset:
    """Turn parsed records into a `Dataset` with ``audio``, ``path``, ``label`` and the corpus' columns.

    ``records`` carry ``path`` (a local file), ``emotion`` (one of ``label_names``) and the keys of
    ``columns`` (name → `datasets` feature).
    """
    if not records:
        raise CorpusError(f"{corpus_name}: no usable audio files found")
    features = Features(
        {
            "audio": Value("string"),
            "path": Value("string"),
            "label": ClassLabel(names=list(label_names)),
            **columns,
        }
    )
    data: dict[str, list[Any]] = {name: [] for name in features}
    for record in records:
        data["audio"].append(str(record["path"]))
        data["path"].append(str(record["path"]))
        data["label"].append(list(label_names).index(record["emotion"]))
        for name in columns:
            data[name].append(record[name])
    # Cast (not encode) to Audio: encoding through `datasets` would need torchcodec.
    dataset = Dataset.from_dict(data, features=features).cast_column("audio", Audio(decode=False))
    dataset.info.description = f"{corpus_name} loaded by ser-hf ({len(dataset)} clips)"
    return dataset


def report_invalid(corpus_name: str, invalid: Sequence[tuple[str, str]], *, on_invalid: str) -> None:
    """Raise (``on_invalid="raise"``) or warn about files that do not follow the corpus' naming."""
    if not invalid:
        return
    shown = "\n".join(f"  {path}: {why}" for path, why in invalid[:20])
    more = f"\n  ... and {len(invalid) - 20} more" if len(invalid) > 20 else ""
    message = f"{corpus_name}: {len(invalid)} file(s) do not follow the naming scheme:\n{shown}{more}"
    if on_invalid == "raise":
        raise CorpusError(message + "\nPass on_invalid='skip' to load the others and skip these.")
    if on_invalid != "skip":
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    logger.warning("%s\nThey were skipped.", message)
