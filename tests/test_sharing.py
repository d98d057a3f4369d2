"""Sharing the Hugging Face way: the model card, push_to_hub, pipeline from a Hub id, corpora as Hub datasets.

The Hub server is replaced by `fake_hub.FakeHub` at the `HfApi` network boundary; what it received is read
back with huggingface_hub, transformers and datasets.
"""

import io
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import RATE, synth_clip, write_corpus
from fake_hub import FakeHub
from huggingface_hub import DatasetCard, ModelCard, constants, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from transformers import pipeline

from ser_hf import EmotionRecognizer, load_ravdess
from ser_hf.errors import CorpusError
from ser_hf.hub import push_corpus_to_hub
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.model_card import CONFUSION_PNG, ModelCardFacts, build_model_card, describe_speakers

ROOT = Path(__file__).resolve().parents[1]
#: What a ser-hf model folder holds: weights, config, the feature extractor and the code of both, the card.
MODEL_FILES = {
    "config.json", "model.safetensors", "preprocessor_config.json", "README.md", CONFUSION_PNG, "layer_stats.py",
    "feature_extraction.py", "preparation.py",
}  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    return FakeHub(tmp_path).install(monkeypatch)


def _table_row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _normalised(text: str) -> str:
    return "\n".join(
        "| " + " | ".join(c.strip() for c in line.strip().strip("|").split("|")) + " |"
        for line in text.splitlines()
        if line.startswith("|")
    )


def _check_card(card: ModelCard, report: dict, split_words: str) -> str:
    """Metadata the Hub needs, a model-index that parses back into the test figures, the body's tables."""
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "audio-classification"
    assert data.license == "cc-by-nc-sa-4.0" and data.language == ["en"]
    assert {"ser-hf", "speech-emotion-recognition", "audio-classification"} <= set(data.tags)
    model_name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert model_name and len(results) == 3
    by_name = {r.metric_name: r for r in results}
    assert by_name["UA (unweighted average recall)"].metric_value == round(report["ua"], 4)
    assert by_name["UA (unweighted average recall)"].metric_args == {"average": "macro"}
    assert by_name["WA (accuracy)"].metric_value == round(report["wa"], 4)
    assert by_name["Macro-F1"].metric_value == round(report["macro_f1"], 4)
    for result in results:
        assert result.task_type == "audio-classification" and result.dataset_split == "test"
        assert split_words in result.dataset_name
    tables = _normalised(card.text)
    for label, row in zip(RAVDESS_EMOTIONS, report["confusion_matrix"]):
        assert _table_row([label, *row]) in tables  # the confusion matrix, as counted
        recall = report["per_class_recall"][label]
        assert _table_row([label, "—" if recall is None else f"{100 * recall:.1f}", sum(row)]) in tables
    assert f"![Confusion matrix]({CONFUSION_PNG})" in card.text
    assert "CC BY-NC-SA 4.0" in card.text and "North American English" in card.text and "Acted speech" in card.text
    assert 'pipeline("audio-classification"' in card.text and "EmotionRecognizer.from_pretrained(" in card.text
    assert "transformers: " in card.text and "- head: stats" in card.text
    return model_name


def test_describe_speakers():
    assert describe_speakers(["21", "22", "23", "24"]) == "21–24"
    assert describe_speakers(["07", "08", "01", "03", "04", "05"]) == "1, 3–5, 7–8"
    assert describe_speakers(["spk_b", "spk_a"]) == "spk_a, spk_b"


def test_training_writes_the_card_and_the_confusion_matrix(trained):
    out = Path(str(trained.output_dir))
    card = ModelCard.load(out / "README.md")
    _check_card(card, trained.test_report, "speaker-independent, test actors 7–8")
    assert (
        "trained on actors 1–5, hyper-parameters chosen on actor 6, then the final model fitted with them" in card.text
    )
    assert f"({sum(map(sum, trained.test_report['confusion_matrix']))} clips)" in card.text
    assert (out / CONFUSION_PNG).read_bytes().startswith(PNG_MAGIC)
    # Named after the base model and the data, the encoder described as it was used.
    assert card.data.to_dict()["model-index"][0]["name"].endswith("-ravdess-ser")
    assert "kept frozen" in card.text and "fine-tuned" not in card.text.split("## How to use")[0]
    assert "Adapted to each test speaker" in card.text and 'pip install "ser-hf @ git+' in card.text
    assert str(Path(str(trained.output_dir)).parent) not in card.text.split("## How to use")[0]


def test_card_survives_reload_and_resave(trained, tmp_path):
    out = Path(str(trained.output_dir))
    recognizer = EmotionRecognizer.from_pretrained(out)
    assert recognizer.model_card is not None
    copy = recognizer.save_pretrained(tmp_path / "copy")
    assert (copy / "README.md").read_text() == (out / "README.md").read_text()
    assert (copy / CONFUSION_PNG).read_bytes() == (out / CONFUSION_PNG).read_bytes()


def test_push_to_hub_uploads_model_config_extractor_and_card(trained, fake_hub, tmp_path):
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    url = recognizer.push_to_hub("me/ser-tiny", private=True, token="hf_secret")
    assert fake_hub.created == [{"repo_id": "me/ser-tiny", "repo_type": "model", "private": True, "token": "hf_secret"}]
    (commit,) = fake_hub.commits_to("me/ser-tiny")
    assert url == f"https://huggingface.co/me/ser-tiny/commit/{commit.oid}"
    assert set(commit.added) == MODEL_FILES and fake_hub.validated == ["model"]
    config = json.loads(commit.added["config.json"])
    assert [config["id2label"][str(i)] for i in range(8)] == list(RAVDESS_EMOTIONS)
    assert json.loads(commit.added["preprocessor_config.json"])["sampling_rate"] == RATE
    assert commit.added[CONFUSION_PNG].startswith(PNG_MAGIC)
    readme = tmp_path / "README.md"
    readme.write_bytes(commit.added["README.md"])
    assert metadata_load(readme)["pipeline_tag"] == "audio-classification"
    card = ModelCard.load(readme)
    assert _check_card(card, trained.test_report, "test actors 7–8") == "ser-tiny"
    assert 'from_pretrained("me/ser-tiny")' in card.text and 'model="me/ser-tiny"' in card.text


def test_push_without_a_card_describes_the_model(trained, fake_hub):
    loaded = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    bare = EmotionRecognizer(loaded.model, loaded.feature_extractor)
    assert bare.model_card is None
    bare.push_to_hub("bare")  # no namespace: the Hub puts it under the account
    (commit,) = fake_hub.commits_to("someone/bare")
    assert set(commit.added) == MODEL_FILES - {CONFUSION_PNG}
    card = ModelCard(commit.added["README.md"].decode())
    assert card.data.pipeline_tag == "audio-classification" and card.data.library_name == "transformers"
    assert card.data.eval_results is None and 'from_pretrained("someone/bare")' in card.text
    assert "licence of the training data was not recorded" in card.text


def test_pipeline_from_a_hub_id_matches_the_recognizer(trained, fake_hub, tmp_path, monkeypatch):
    """Push, lay what the Hub received out as the download cache, load it by Hub id (offline)."""
    folder = str(trained.output_dir)
    EmotionRecognizer.from_pretrained(folder).push_to_hub("me/ser-tiny")
    fake_hub.write_cache("me/ser-tiny", tmp_path / "hub-cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert constants.HF_HUB_OFFLINE  # nothing below may touch the network

    local = EmotionRecognizer.from_pretrained(folder)
    from_hub = EmotionRecognizer.from_pretrained("me/ser-tiny")
    assert from_hub.model_card is not None and set(from_hub.model_card.figures) == {CONFUSION_PNG}
    classifier = pipeline("audio-classification", model="me/ser-tiny", top_k=None, trust_remote_code=True)
    for emotion, actor in ((5, 7), (2, 8), (8, 7)):
        samples = synth_clip(emotion, actor, 1)
        mine = local.predict(samples)
        assert from_hub.predict(samples).scores == pytest.approx(mine.scores, abs=1e-6)
        theirs = classifier({"raw": samples, "sampling_rate": RATE})
        assert theirs[0]["label"] == mine.label
        for item in theirs:
            assert item["score"] == pytest.approx(mine.scores[item["label"]], abs=1e-4)


def test_example_pushes_once_after_the_test_with_the_card(tiny_wav2vec2, fake_hub, tmp_path, monkeypatch, capsys):
    """`examples/finetune.py --push_to_hub`: the Trainer creates the repo, ser-hf makes the only commit."""
    corpus_dir = write_corpus(tmp_path / "corpus", actors=(1, 2, 3, 4), repetitions=(1,))
    out = tmp_path / "out"
    argv = [
        "finetune.py", "--model_name_or_path", tiny_wav2vec2, "--data_dir", str(corpus_dir),
        "--output_dir", str(out), "--test_actors", "4", "--eval_actors", "3", "--num_train_epochs", "2",
        "--finetune_layers", "1",  # phase 2's Trainer runs too, and never pushes
        "--disable_tqdm", "true", "--decode_cache_dir", str(tmp_path / "dec"),
        "--push_to_hub", "--hub_model_id", "me/ser-example", "--hub_strategy", "every_save",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "examples" / "finetune.py"), run_name="__main__")

    assert {c["repo_id"] for c in fake_hub.created} == {"me/ser-example"}  # before training, then at the push
    commits = fake_hub.commits_to("me/ser-example")
    assert len(commits) == 1, [c.message for c in commits]  # no per-epoch pushes without a card
    assert set(commits[0].added) == MODEL_FILES  # no training_args.bin, checkpoints or result files
    assert f"pushed: https://huggingface.co/me/ser-example/commit/{commits[0].oid}" in capsys.readouterr().out
    report = json.loads((out / "test_report.json").read_text())
    card = ModelCard(commits[0].added["README.md"].decode())
    assert _check_card(card, report, "speaker-independent, test actor 4") == "ser-example"
    assert commits[0].added["README.md"] == (out / "README.md").read_bytes()  # what is pushed is what was saved
    assert 'from_pretrained("me/ser-example")' in card.text
    assert commits[0].added["model.safetensors"] == (out / "model.safetensors").read_bytes()


def test_cli_train_prints_the_pushed_commit(tiny_wav2vec2, fake_hub, tmp_path, capsys):
    """`ser-hf train --push_to_hub` prints the test metrics, then the URL of its one commit."""
    from ser_hf.cli import main

    corpus_dir = write_corpus(tmp_path / "corpus", actors=(1, 2, 3, 4), repetitions=(1,))
    code = main([
        "train", "--model_name_or_path", tiny_wav2vec2, "--data_dir", str(corpus_dir),
        "--output_dir", str(tmp_path / "out"), "--test_actors", "4", "--eval_actors", "3", "--num_train_epochs", "1",
        "--disable_tqdm", "true", "--decode_cache_dir", str(tmp_path / "dec"),
        "--push_to_hub", "--hub_model_id", "me/ser-cli",
    ])  # fmt: skip
    captured = capsys.readouterr()
    commits = fake_hub.commits_to("me/ser-cli")
    assert code == 0 and len(commits) == 1
    metrics, pushed = captured.out.rstrip().rsplit("\n", 1)  # stdout holds the results only: the logs go to stderr
    assert "test_ua" in json.loads(metrics) and "phase 1, the probe" in captured.err
    assert pushed == f"pushed: https://huggingface.co/me/ser-cli/commit/{commits[0].oid}"


def test_card_without_matplotlib_keeps_the_tables(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    labels = list(RAVDESS_EMOTIONS)
    matrix = (np.eye(8, dtype=int) * 3 + 1).tolist()
    report = {
        "ua": 0.4,
        "wa": 0.4,
        "macro_f1": 0.4,
        "per_class_recall": dict.fromkeys(labels, 0.4),
        "confusion_matrix": matrix,
    }
    facts = ModelCardFacts(labels=labels, architecture="Wav2Vec2ForSequenceClassification", corpus="ravdess",
                           speakers={"test": ["21", "22"]}, test_report=report)  # fmt: skip
    card = build_model_card(facts)
    assert card.figures == {} and "![Confusion matrix]" not in card.text
    assert _table_row(["neutral", 4, *[1] * 7]) in _normalised(card.text)
    card.save(tmp_path / "README.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_corpus_round_trip_through_the_hub(fake_hub, tmp_path):
    root = write_corpus(tmp_path / "corpus", actors=(1, 2), repetitions=(1,))
    corpus = load_ravdess(root)
    url = push_corpus_to_hub(corpus, "ravdess-speech", private=True)  # a bare name lands in the account
    assert url == "https://huggingface.co/datasets/someone/ravdess-speech"
    assert fake_hub.created == [
        {"repo_id": "someone/ravdess-speech", "repo_type": "dataset", "private": True, "token": None}
    ]
    data_commit, card_commit = fake_hub.commits_to("someone/ravdess-speech", "dataset")
    assert set(data_commit.added) == {"data/train-00000-of-00001.parquet", "README.md"}
    assert set(card_commit.added) == {"README.md"}

    table = pq.read_table(io.BytesIO(data_commit.added["data/train-00000-of-00001.parquet"]))
    assert table.column_names == corpus.column_names
    for row, path in zip(table.to_pylist(), corpus["path"]):
        assert row["audio"]["bytes"] == Path(path).read_bytes()  # the files themselves are embedded
        assert row["path"] == str(Path(path).relative_to(root))  # no local folders published
    card = DatasetCard(fake_hub.repo("someone/ravdess-speech", "dataset")["README.md"].decode())
    assert card.data.license == "cc-by-nc-sa-4.0" and "Livingstone" in card.text
    assert fake_hub.validated == ["dataset", "dataset"]
    assert (
        card.data.dataset_info["features"][2]["dtype"]["class_label"]["names"]["0"] == "neutral"
    )  # datasets' part kept

    # Load what the Hub holds, the way `datasets` reads a Hub repository (README configs + Parquet shards).
    repo = fake_hub.write_repo("someone/ravdess-speech", tmp_path / "repo", "dataset")
    again = load_ravdess(str(repo))
    assert again.features["label"].names == list(RAVDESS_EMOTIONS)
    for column in ("label", "emotion", "actor", "speaker", "gender", "statement"):
        assert again[column] == corpus[column], column
    from ser_hf.features import prepare_audio

    decoded, skipped = prepare_audio(again, RATE, cache_dir=tmp_path / "dec")
    original, _ = prepare_audio(corpus, RATE, cache_dir=tmp_path / "dec")
    assert not skipped
    np.testing.assert_array_equal(np.asarray(decoded[3]["waveform"]), np.asarray(original[3]["waveform"]))


def test_corpus_without_audio_feature_is_refused(corpus, fake_hub):
    from datasets import Dataset

    as_strings = Dataset.from_dict({"audio": corpus["path"][:4], "label": corpus["label"][:4]})
    with pytest.raises(CorpusError, match="not an Audio feature"):
        push_corpus_to_hub(as_strings, "me/x")
    assert fake_hub.commits == []
