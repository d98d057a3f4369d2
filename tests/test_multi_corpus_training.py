"""Training on several corpora at once, end to end on tiny synthetic corpora: shared and union labels (with each
corpus' missing labels masked), corpus balance, leaving one corpus out, and what reports and cards say."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import RATE, synth_clip, write_corpus

from ser_hf import EmotionRecognizer
from ser_hf.arguments import arguments
from ser_hf.heads import ProbeData, StatsHeadConfig, balance_weights, label_masks, select_stats_head
from ser_hf.trainer import EmotionTrainer, finetune

#: EMOVO's codes for the emotions the synthetic clips encode (conftest's pitch per RAVDESS code).
EMOVO_CODES = {"neu": 1, "gio": 3, "tri": 4, "rab": 5, "pau": 6, "dis": 7, "sor": 8}


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """A tiny RAVDESS (actors 1-4, all 8 emotions) and a tiny EMOVO (4 speakers, its 7 emotions: no calm)."""
    root = tmp_path_factory.mktemp("two")
    ravdess = write_corpus(root / "ravdess", actors=(1, 2, 3, 4), repetitions=(1,))
    emovo = root / "emovo"
    for number, speaker in enumerate(("f1", "f2", "m1", "m2"), start=11):
        (emovo / speaker).mkdir(parents=True)
        for code, emotion in EMOVO_CODES.items():
            for sentence in ("b1", "n2"):
                clip = synth_clip(emotion, number, int(sentence[1]))
                sf.write(emovo / speaker / f"{code}-{speaker}-{sentence}.wav", clip, RATE)
    return ravdess, emovo


@pytest.fixture
def caches(tmp_path_factory):
    folder = str(tmp_path_factory.getbasetemp() / "multi-cache")
    return {"decode_cache_dir": folder, "features_cache_dir": folder, "disable_tqdm": True}


def test_two_corpora_train_end_to_end_over_their_shared_labels(two_corpora, tiny_whisper, caches, tmp_path):
    ravdess, emovo = two_corpora
    out = tmp_path / "out"
    outcome = finetune(tiny_whisper, [str(ravdess), str(emovo)], output_dir=out, **caches)
    labels = outcome.recognizer.labels
    assert labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]  # no calm: EMOVO lacks it
    report = json.loads((out / "test_report.json").read_text())
    assert report["test_speakers"] == ["ravdess:4", "emovo:m2"] and report["validation_speakers"] == [
        "ravdess:3",
        "emovo:m1",
    ]  # each corpus holds out its own speakers
    assert outcome.test_metrics["test_ua"] > 0.3
    card = (out / "README.md").read_text()
    assert "whisper" in card and "-ravdess-emovo-ser" in card and "Trained on 2 corpora" in card
    assert "CC BY-NC-SA 4.0" in card and "Research use only" in card and "Costantini" in card
    assert "`gio` → happy" in card and "`02` → calm" not in card  # the label mapping, over the model's labels
    assert "license: other" in card and "- it" in card and "- en" in card


def test_union_labels_mask_what_a_corpus_never_annotated(two_corpora, tiny_whisper, caches, tmp_path):
    ravdess, emovo = two_corpora
    args = arguments(
        model_name_or_path=tiny_whisper, data_dir=[f"{ravdess},{emovo}"], labels="union", output_dir=str(tmp_path),
        **caches,
    )  # fmt: skip
    trainer = EmotionTrainer(*args)
    encoded = trainer.prepare()
    assert "calm" in encoded.label_names and len(encoded.label_names) == 8
    data = trainer.probe_data(encoded)
    calm = encoded.label_names.index("calm")
    emovo_rows = encoded.corpora == "emovo"
    assert data.masks is not None and not data.masks[emovo_rows, calm].any() and data.masks[~emovo_rows].all()
    fit, valid, test, _, _ = trainer.split_rows(encoded)
    fitted = trainer.fit(encoded, fit, valid)
    assert fitted.phases["phase1"]["validation_ua"] is not None
    assert trainer.logits(fitted, encoded, test).shape == (len(test), 8)


def test_masked_labels_do_not_move_the_head_for_the_corpus_that_lacks_them():
    """Corpus b never annotates label 2, and its recordings share what marks label 2 in corpus a (a channel
    artefact, say). Unmasked, b's clips teach the head that this feature means "not 2"; masked, they do not."""
    rng = np.random.default_rng(0)
    y_a, y_b = np.repeat([0, 1, 2], 30), np.repeat([0, 1], 45)
    x = rng.normal(size=(180, 1, 4)).astype(np.float32)
    y = np.concatenate([y_a, y_b])
    x[np.arange(180), 0, y] += 2.0
    x[90:, 0, 2] += 2.0  # corpus b: the feature of label 2 in every clip
    corpora = np.array(["a"] * 90 + ["b"] * 90)
    masks = label_masks(corpora, {"a": [0, 1, 2], "b": [0, 1]}, 3)
    config = StatsHeadConfig(l2_grid=(0.01,), speaker_adaptive=False)
    rows, none = np.arange(180), np.array([], dtype=int)
    masked = select_stats_head(ProbeData(x, y, corpora, 3, groups=corpora, masks=masks), rows, none, config).head
    plain = select_stats_head(ProbeData(x, y, corpora, 3, groups=corpora), rows, none, config).head
    label_2 = torch.as_tensor(x[60:90])  # corpus a's clips of label 2
    with torch.inference_mode():
        p_masked = torch.softmax(masked(label_2), -1)[:, 2].mean().item()
        p_plain = torch.softmax(plain(label_2), -1)[:, 2].mean().item()
    assert p_masked > p_plain + 0.05, (p_masked, p_plain)


def test_every_corpus_and_class_weighs_the_same():
    labels = np.array([0] * 30 + [1] * 10 + [0] * 5 + [1] * 5)
    corpora = np.array(["big"] * 40 + ["small"] * 10)
    weights = balance_weights(labels, 2, corpora)
    assert weights.mean() == pytest.approx(1.0)
    for corpus in ("big", "small"):
        rows = corpora == corpus
        assert weights[rows].sum() == pytest.approx(len(labels) / 2)  # each corpus half of the loss
        for label in (0, 1):
            assert weights[rows & (labels == label)].sum() == pytest.approx(len(labels) / 4)


def test_leaving_one_corpus_out_scores_it_over_the_shared_labels(two_corpora, tiny_whisper, caches, tmp_path, capsys):
    from ser_hf.cli import main

    ravdess, emovo = two_corpora
    out = tmp_path / "loco"
    code = main([
        "evaluate", "--model", tiny_whisper, "--data_dir", str(ravdess), "--data_dir", str(emovo),
        "--test_corpus", "EMOVO", "--output_dir", str(out), "--decode_cache_dir", caches["decode_cache_dir"],
        "--features_cache_dir", caches["features_cache_dir"],
    ])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test_corpus"] == "emovo" and printed["train_corpora"] == ["ravdess"]
    assert printed["clips"]["test"] == 4 * 7 * 2 and "calm" not in printed["labels"]
    assert 0 <= printed["per_clip"]["ua"] <= 1 and printed["adapted"] is not None
    assert json.loads((out / "cross_corpus.json").read_text())["test_corpus"] == "emovo"


def test_scoring_a_trained_model_on_another_corpus_writes_the_report(trained, two_corpora, tmp_path, capsys):
    from ser_hf.cli import main

    _, emovo = two_corpora
    out = tmp_path / "scored"
    assert (
        main(["evaluate", "--model", str(trained.output_dir), "--data_dir", str(emovo), "--output_dir", str(out)]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["ua"] == printed["ua"] and saved["clips"] == 4 * 7 * 2 and "calm" not in saved["labels"]
    assert EmotionRecognizer.from_pretrained(trained.output_dir).labels[1] == "calm"
