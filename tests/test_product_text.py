"""Product text speaks of the product: no words about how the work behind it was organised.

README.md, the documentation, every module of the package (docstrings, comments and strings alike), its
templates, the benchmark scripts (their output lands in reports) and the examples are read by users. A phrase
such as "this stop's figures", "the reference from the issue" or "this session" means nothing to them, so each
one found fails this test with its file and line.

Phrases are matched, not single words: "session" is a Gradio session in the web page and "issue" is plain
English, so only their process uses ("this session", "the issue", "issue 12", "issue's") are flagged.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Phrases that describe the team's process rather than the product (case-insensitive, word-bounded).
PROCESS_PHRASES = [
    r"since this stop",
    r"this stop",
    r"previous stop",
    r"last stop",
    r"next stop",
    r"earlier stop",
    r"stop's",
    r"stop \d+",
    r"reference from the issue",
    r"the issue's",
    r"the issue",
    r"issue's",
    r"issue #?\d+",
    r"tickets?",
    r"this session",
    r"previous session",
    r"last session",
    r"next session",
    r"earlier session",
    r"previous machine",
    r"this project's",
    r"the team",
    r"the targets",
    r"the brief",
    r"TODO",
    r"FIXME",
    r"XXX",
]
PATTERN = re.compile(r"(?<![\w'])(?:" + "|".join(PROCESS_PHRASES) + r")(?![\w'])", re.IGNORECASE)

#: What users read, by area: glob patterns relative to the repository root.
AREAS = {
    "README": ["README.md"],
    "docs": ["docs/**/*.md", "mkdocs.yml"],
    "package": ["ser_hf/**/*.py", "ser_hf/**/*.md"],
    "templates": ["ser_hf/templates/*"],
    "bench": ["bench/*.py"],
    "examples": ["examples/**/*"],
}
TEXT_SUFFIXES = {".md", ".py", ".txt", ".yml", ".yaml", ".toml", ".cfg", ".json", ".html", ".j2", ""}


def files_of(area: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in AREAS[area]:
        found.update(p for p in ROOT.glob(pattern) if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return sorted(found)


def process_phrases(path: Path) -> list[str]:
    """``file:line: text`` for every process phrase in a file."""
    hits = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        for match in PATTERN.finditer(line):
            hits.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r} in: {line.strip()}")
    return hits


@pytest.mark.parametrize("area", list(AREAS))
def test_product_text_has_no_process_words(area: str) -> None:
    files = files_of(area)
    if area in ("README", "docs", "package") and not files:
        pytest.fail(f"nothing to scan for {area}: {AREAS[area]} matched no file")
    hits = [hit for path in files for hit in process_phrases(path)]
    assert not hits, f"{len(hits)} process phrase(s) in user-facing text:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "text",
    [
        "This stop's figures",
        "since this stop",
        "the previous stop's runs",
        "reference from the issue: frozen",
        "as the issue asks",
        "see issue 12",
        "the issue's target",
        "one ticket",
        "in this session",
        "on the previous machine",
        "agreed by the team",
        "TODO: later",
        "fixme",
        "XXX",
    ],
)
def test_pattern_catches_process_phrases(text: str) -> None:
    assert PATTERN.search(text), text


@pytest.mark.parametrize(
    "text",
    [
        "LiveSession keeps one visitor's stream",
        "a Gradio session per browser tab",
        "InferenceSession(model_file)",
        "ort.InferenceSession",
        "no issues found",
        "a stop pressed within 5 s of a recording",
        "stop_grace_seconds",
        "the target folder",
        "non-stop",
    ],
)
def test_pattern_leaves_product_words_alone(text: str) -> None:
    assert not PATTERN.search(text), text
