"""Sharing on the Hugging Face Hub: one push of a trained model (with its card), and corpora as Hub datasets.

With ``--push_to_hub`` ser-hf creates the repository before training (so a missing token fails before the work
is done) and pushes once, after the test, from a fresh save of the model: weights, config, feature extractor,
card and confusion matrix, in one commit. Phase 2's `Trainer` never pushes its checkpoints.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from datasets import Audio, Dataset

from .corpora.base import audio_column
from .corpora.ravdess import RAVDESS_LICENSE, is_ravdess
from .errors import CorpusError

logger = logging.getLogger(__name__)


def create_model_repo(training_args: Any) -> str:
    """Create (or find) the repository ``--push_to_hub`` will push to, before any training: a missing token or
    a name taken by someone else fails now, not after the run. Returns the repository id."""
    from huggingface_hub import HfApi

    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
    api = HfApi(token=training_args.hub_token)
    return api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True).repo_id


def push_recognizer(recognizer: Any, training_args: Any) -> str:
    """Push a trained recognizer (weights, config, feature extractor, card, figures) as one commit to the
    repository ``training_args`` names; returns the commit URL."""
    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
    return recognizer.push_to_hub(
        repo_id,
        private=training_args.hub_private_repo,
        token=training_args.hub_token,
        revision=training_args.hub_revision,
        commit_message="Speech emotion recognizer trained with ser-hf",
    )


def _portable_paths(dataset: Dataset) -> Dataset:
    """Make absolute ``path`` values relative to the corpus folder (no local directories leak into the Hub)."""
    if "path" not in dataset.column_names:
        return dataset
    paths = dataset["path"]
    if not paths or not all(os.path.isabs(p) for p in paths):
        return dataset
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    relative = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
    order = dataset.column_names
    feature = dataset.features["path"]
    return dataset.remove_columns("path").add_column("path", relative, feature=feature).select_columns(order)


RAVDESS_DATASET_CARD = f"""\
# RAVDESS speech, as loaded by ser-hf

The speech part of the Ryerson Audio-Visual Database of Emotional Speech and Song: 24 actors (odd numbers male,
even female) each say two fixed sentences with eight emotions. Audio is embedded as the original file bytes;
every field of the file name is a column, and `label` is a `ClassLabel` in RAVDESS code order.

```python
from ser_hf import load_ravdess
corpus = load_ravdess("<this repository id>")
```

Evaluate speaker-independently (hold out whole actors, e.g. test actors 21–24): random clip-level splits
share speakers between training and test and overstate accuracy.

**Licence and attribution.** {RAVDESS_LICENSE} Cite: Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual
Database of Emotional Speech and Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in
North American English. PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391
"""


def push_corpus_to_hub(
    corpus: Dataset,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    split: str = "train",
    license: str | None = None,
    max_shard_size: str | int | None = None,
) -> str:
    """Push a corpus to a Hub dataset repository with ``Dataset.push_to_hub``; returns the dataset's URL.

    The audio files' bytes are embedded in the Parquet shards (``datasets`` reads them; no torchcodec needed),
    every column is kept (``label`` stays a `ClassLabel`), and absolute ``path`` values become relative to the
    corpus folder. For RAVDESS, a second commit adds the licence (CC BY-NC-SA 4.0), attribution and a usage
    note to the dataset card; for other corpora pass ``license`` (a Hub licence id) to record it.
    """
    column = audio_column(corpus)
    if not isinstance(corpus.features[column], Audio):
        raise CorpusError(
            f"{repo_id}: the corpus column {column!r} is {corpus.features[column]}, not an Audio feature: its files "
            "would be uploaded as paths, without their bytes"
        )
    dataset = _portable_paths(corpus)
    commit = dataset.push_to_hub(
        repo_id,
        split=split,
        private=private,
        token=token if isinstance(token, str) else None,
        max_shard_size=max_shard_size,
        commit_message=f"Upload {len(dataset)} clips with ser-hf",
    )
    repo_id = commit.repo_url.repo_id  # with the account's namespace when a bare name was given
    ravdess = is_ravdess(corpus)
    license = license or ("cc-by-nc-sa-4.0" if ravdess else None)
    if license is None:
        logger.warning("%s: no licence recorded on the dataset card; add the corpus' licence before sharing", repo_id)
    else:
        _update_dataset_card(repo_id, token=token, license=license, ravdess=ravdess)
    return f"https://huggingface.co/datasets/{repo_id}"


def _update_dataset_card(repo_id: str, *, token: str | bool | None, license: str, ravdess: bool) -> None:
    """Add licence, task and tags (for RAVDESS also language and attribution) to the card `datasets` wrote."""
    from pathlib import Path

    from huggingface_hub import DatasetCard, HfApi

    api = HfApi(token=token)
    readme = api.hf_hub_download(repo_id, "README.md", repo_type="dataset")
    card = DatasetCard(Path(readme).read_text(encoding="utf-8"))
    card.data.license = license
    card.data.task_categories = ["audio-classification"]
    card.data.tags = sorted({*(card.data.get("tags") or []), "speech-emotion-recognition", "ser-hf"})
    if ravdess:
        card.data.language = ["en"]
        card.data.pretty_name = "RAVDESS (speech)"
        if "Licence and attribution" not in card.text:
            card.text = RAVDESS_DATASET_CARD.replace("<this repository id>", repo_id) + "\n" + card.text
    api.upload_file(
        path_or_fileobj=str(card).encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Dataset card: licence and attribution (ser-hf)",
    )
