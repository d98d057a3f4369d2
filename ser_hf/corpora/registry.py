"""`load_corpus`: any supported corpus by name, or recognised from its file names."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CorpusError
from .base import corpus_folder, scan_audio_files
from .crema_d import load_crema_d, parse_crema_d_name
from .emodb import load_emodb, parse_emodb_name
from .emovo import load_emovo, parse_emovo_name
from .generic import MANIFEST_SUFFIXES, load_label_folders, load_manifest
from .info import normalise_corpus_name
from .ravdess import load_ravdess, parse_ravdess_name
from .savee import load_savee, parse_savee_name
from .tess import load_tess, parse_tess_name

logger = logging.getLogger(__name__)

#: Corpora recognised by their file names: name → (loader, parser of one path).
NAMED_CORPORA: dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]] = {
    "ravdess": (load_ravdess, lambda path: parse_ravdess_name(Path(path).name)),
    "crema-d": (load_crema_d, parse_crema_d_name),
    "tess": (load_tess, parse_tess_name),
    "savee": (load_savee, parse_savee_name),
    "emodb": (load_emodb, parse_emodb_name),
    "emovo": (load_emovo, parse_emovo_name),
}
#: Every value `load_corpus` accepts for ``kind``.
CORPUS_KINDS: tuple[str, ...] = ("auto", *NAMED_CORPORA, "folders", "manifest")


def _parses(parser: Callable[[Any], Any], path: Path) -> bool:
    try:
        parser(path)
    except ValueError:
        return False
    return True


def detect_corpus(source: str | os.PathLike, *, sample: int = 200) -> str:
    """Which corpus a folder holds, from its file names: the named corpus whose scheme fits most files
    (at least 90% of a sample), else ``"folders"`` (a folder per label); ``"manifest"`` for a manifest file."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    files = scan_audio_files(corpus_folder(path, "corpus"))
    if not files:
        raise CorpusError(f"{source}: no audio files found")
    step = max(1, len(files) // sample)
    picked = files[::step]
    fits = {name: sum(_parses(parser, f) for f in picked) / len(picked) for name, (_, parser) in NAMED_CORPORA.items()}
    best = max(fits, key=fits.get)  # type: ignore[arg-type]
    return best if fits[best] >= 0.9 else "folders"


def corpus_loader(kind: str) -> Callable[..., Any]:
    """The loader `load_corpus` uses for a kind other than ``"auto"`` (e.g. `load_emovo` for ``"emovo"``)."""
    kind = normalise_corpus_name(kind)
    if kind == "manifest":
        return load_manifest
    if kind == "folders":
        return load_label_folders
    if kind not in NAMED_CORPORA:
        raise ValueError(f"kind must be one of {CORPUS_KINDS}, not {kind!r}")
    return NAMED_CORPORA[kind][0]


def load_corpus(
    source: str | os.PathLike,
    kind: str = "auto",
    *,
    on_invalid: str = "raise",
    **kwargs: Any,
) -> Any:
    """Load an emotional speech corpus as a `datasets.Dataset` with ``label``, ``emotion``, ``speaker`` and ``corpus``.

    ``kind`` is ``"ravdess"``, ``"crema-d"``, ``"tess"``, ``"savee"``, ``"emodb"``, ``"emovo"``, ``"folders"`` (a
    folder per label; ``speaker_pattern=`` finds speakers), ``"manifest"`` (CSV/JSON/JSONL of path,
    label, speaker) or ``"auto"`` (recognised from the file names; see `detect_corpus`). Labels are
    mapped onto ser-hf's emotion taxonomy, so corpora can be compared over their shared labels.
    """
    kind = normalise_corpus_name(kind)
    if kind not in CORPUS_KINDS:
        raise ValueError(f"kind must be one of {CORPUS_KINDS}, not {kind!r}")
    if kind == "auto":
        kind = detect_corpus(source)
        logger.info("%s: recognised as %s", source, kind)
    return corpus_loader(kind)(source, on_invalid=on_invalid, **kwargs)
