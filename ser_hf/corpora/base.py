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


def read_column(dataset: Dataset, name: str) -> list[Any]:
    """A whole column as a Python list, read in one Arrow pass whatever the dataset's format.

    Values are the stored ones (``{"bytes", "path"}`` for `Audio`, ints for `ClassLabel`). Iterating a
    `Dataset` column instead formats row by row: about 0.3 s per thousand rows.
    """
    return dataset.with_format("arrow")[name].to_pylist()


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
    corpus_id: str | None = None,
) -> Dataset:
    """Turn parsed records into a `Dataset` with ``audio``, ``path``, ``label``, the corpus' columns and ``corpus``.

    ``records`` carry ``path`` (a local file), ``emotion`` (one of ``label_names``) and the keys of
    ``columns`` (name → `datasets` feature). ``corpus`` holds ``corpus_id`` (default ``corpus_name``),
    the name that tells this corpus' clips apart once corpora are combined; a record's own non-empty
    ``corpus`` value takes its place.
    """
    if not records:
        raise CorpusError(f"{corpus_name}: no usable audio files found")
    corpus_id = corpus_id or corpus_name
    features = Features(
        {
            "audio": Value("string"),
            "path": Value("string"),
            "label": ClassLabel(names=list(label_names)),
            **{name: feature for name, feature in columns.items() if name != "corpus"},
            "corpus": Value("string"),
        }
    )
    data: dict[str, list[Any]] = {name: [] for name in features}
    for record in records:
        data["audio"].append(str(record["path"]))
        data["path"].append(str(record["path"]))
        data["label"].append(list(label_names).index(record["emotion"]))
        for name in columns:
            if name != "corpus":
                data[name].append(record[name])
        data["corpus"].append(str(record.get("corpus") or corpus_id))
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


def corpus_folder(source: str | os.PathLike, corpus_name: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local folder for ``source``: the folder itself, or an archive extracted once into the cache."""
    path = Path(source)
    if path.is_file():
        if not path.name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz")):
            raise CorpusError(f"{corpus_name}: {path} is a file; expected a folder or a .zip/.tar.gz archive")
        return fetch_and_extract(str(path), cache_dir=cache_dir)
    if not path.is_dir():
        raise CorpusError(f"{corpus_name}: {path}: no such file or folder")
    return path


def load_named_files(
    source: str | os.PathLike,
    parse: Any,
    *,
    corpus_name: str,
    corpus_id: str | None = None,
    label_names: Sequence[str],
    columns: dict[str, Any],
    on_invalid: str = "raise",
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A corpus whose labels and speakers are in its file names (and folders).

    ``parse(path)`` returns the record's fields (``emotion`` and the keys of ``columns``) or raises
    `ValueError` saying what is wrong with the name; such files are listed by `report_invalid`.
    ``corpus_id`` fills the ``corpus`` column (see `build_corpus`).
    """
    root = corpus_folder(source, corpus_name, cache_dir=cache_dir)
    records, invalid = [], []
    for path in scan_audio_files(root):
        try:
            fields = parse(path)
        except ValueError as err:
            invalid.append((str(path), str(err)))
            continue
        records.append({"path": path, **fields})
    report_invalid(corpus_name, invalid, on_invalid=on_invalid)
    if not records:
        raise CorpusError(f"{corpus_name}: no audio files named after its scheme found under {root}")
    return build_corpus(records, label_names=label_names, columns=columns, corpus_name=corpus_name, corpus_id=corpus_id)
