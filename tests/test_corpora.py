"""RAVDESS as a datasets.Dataset: folders, zips, the download path, saved/Hub datasets, naming errors."""

import logging
import zipfile

import numpy as np
import pytest
import soundfile as sf
from conftest import RATE, ravdess_name, synth_clip, write_corpus
from datasets import ClassLabel

from ser_hf import CorpusError, load_ravdess
from ser_hf.corpora import parse_ravdess_name
from ser_hf.corpora import ravdess as ravdess_module
from ser_hf.labels import RAVDESS_EMOTIONS


def test_parse_every_field():
    fields = parse_ravdess_name("03-01-05-02-01-02-13.wav")
    assert fields == {
        "emotion": "angry",
        "intensity": "strong",
        "statement": "Kids are talking by the door",
        "repetition": 2,
        "actor": 13,
        "speaker": "13",
        "gender": "male",
        "vocal_channel": "speech",
        "modality": "audio-only",
    }
    assert parse_ravdess_name("03-02-03-01-02-01-24.flac")["gender"] == "female"


@pytest.mark.parametrize(
    ("name", "words"),
    [("clip.wav", "seven"), ("03-01-09-01-01-01-01.wav", "emotion"), ("03-01-01-01-01-01-25.wav", "actor")],
)
def test_parse_errors_say_what_is_wrong(name, words):
    with pytest.raises(ValueError, match=words):
        parse_ravdess_name(name)


def test_folder_columns_and_labels(corpus):
    assert len(corpus) == 128
    assert isinstance(corpus.features["label"], ClassLabel)
    assert corpus.features["label"].names == list(RAVDESS_EMOTIONS)
    for column in ("audio", "path", "emotion", "intensity", "statement", "repetition", "actor", "speaker", "gender"):
        assert column in corpus.column_names
    row = corpus[0]
    assert row["audio"]["path"] == row["path"] and row["audio"]["bytes"] is None
    assert RAVDESS_EMOTIONS[row["label"]] == row["emotion"]
    assert sorted(set(corpus["actor"])) == list(range(1, 9))


def test_any_nesting_and_flac(tmp_path):
    write_corpus(tmp_path / "deep" / "er", actors=(3,), ext=".flac")
    write_corpus(tmp_path, actors=(4,))
    dataset = load_ravdess(tmp_path)
    assert sorted(set(dataset["actor"])) == [3, 4] and len(dataset) == 32


def test_song_is_opt_in(tmp_path):
    write_corpus(tmp_path, actors=(1,), repetitions=(1,))
    sf.write(tmp_path / "Actor_01" / (ravdess_name(3, 1, channel=2) + ".wav"), synth_clip(3, 1, 1), RATE)
    assert set(load_ravdess(tmp_path)["vocal_channel"]) == {"speech"}
    both = load_ravdess(tmp_path, include_song=True)
    assert set(both["vocal_channel"]) == {"speech", "song"} and len(both) == 9


def test_off_scheme_files_raise_listing_them_or_are_skipped(tmp_path, caplog):
    write_corpus(tmp_path, actors=(1,), repetitions=(1,))
    sf.write(tmp_path / "Actor_01" / "my_recording.wav", synth_clip(1, 1, 1), RATE)
    with pytest.raises(CorpusError, match="my_recording.wav"):
        load_ravdess(tmp_path)
    with caplog.at_level(logging.WARNING):
        dataset = load_ravdess(tmp_path, on_invalid="skip")
    assert len(dataset) == 8 and "my_recording.wav" in caplog.text


def test_missing_or_empty_sources(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        load_ravdess(tmp_path / "nope" / "Audio_Speech_Actors_01-24")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError):
        load_ravdess(tmp_path / "empty")


def _zip_corpus(root, zip_path):
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(root.rglob("*.wav")):
            archive.write(path, path.relative_to(root).as_posix())
    return zip_path


def test_zenodo_zip_without_unpacking_by_hand(tmp_path):
    root = write_corpus(tmp_path / "src", actors=(1, 2), repetitions=(1,))
    archive = _zip_corpus(root, tmp_path / "Audio_Speech_Actors_01-24.zip")
    dataset = load_ravdess(archive, cache_dir=tmp_path / "cache")
    assert len(dataset) == 16
    assert all(str(tmp_path / "cache") in p for p in dataset["path"])


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (the only network a test touches is loopback) serving ``tmp_path/www``."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_path_caches_once_and_prints_the_licence(tmp_path, monkeypatch, caplog, http_server):
    www, base_url = http_server
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # loopback only: the server above
    root = write_corpus(tmp_path / "src", actors=(5,), repetitions=(1,))
    archive = _zip_corpus(root, www / "Audio_Speech_Actors_01-24.zip")
    monkeypatch.setattr(ravdess_module, "RAVDESS_SPEECH_URL", f"{base_url}/{archive.name}?download=1")
    with caplog.at_level(logging.WARNING):
        first = load_ravdess(cache_dir=tmp_path / "hf-cache")
    assert "CC BY-NC-SA 4.0" in caplog.text and len(first) == 8
    assert all(str(tmp_path / "hf-cache") in p for p in first["path"])
    archive.unlink()  # the server no longer has it: a second load must come from the cache
    second = load_ravdess(cache_dir=tmp_path / "hf-cache")
    assert second["path"] == first["path"]


def test_saved_dataset_folder_and_parquet_repo(tmp_path, corpus):
    """The Hub code path (`datasets.load_dataset`) on a local repo folder, and `save_to_disk` folders."""
    small = corpus.select(range(16))
    small.save_to_disk(tmp_path / "saved")
    from_disk = load_ravdess(tmp_path / "saved")
    assert from_disk["path"] == small["path"] and from_disk["label"] == small["label"]

    # A dataset from elsewhere: audio embedded as bytes, only file names to go by.
    repo = tmp_path / "hub-repo" / "data"
    repo.mkdir(parents=True)
    rows = [{"file": {"bytes": open(p, "rb").read(), "path": p.split("/")[-1]}} for p in small["path"]]
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"file": [r["file"] for r in rows]})
    pq.write_table(table, repo / "train-00000-of-00001.parquet")
    from_hub = load_ravdess(str(tmp_path / "hub-repo"))
    assert len(from_hub) == 16 and from_hub["emotion"] == small["emotion"]
    assert from_hub.features["label"].names == list(RAVDESS_EMOTIONS)
    assert set(from_hub["corpus"]) == {"ravdess"}  # added when a dataset from elsewhere lacks it


def test_hub_id_goes_to_load_dataset(monkeypatch, corpus):
    calls = {}

    def fake_load_dataset(source, split=None, token=None):
        calls["source"] = source
        return corpus.select(range(8))

    monkeypatch.setattr(ravdess_module.load_saved_dataset.__globals__["datasets"], "load_dataset", fake_load_dataset)
    dataset = load_ravdess("someone/ravdess")
    assert calls["source"] == "someone/ravdess" and len(dataset) == 8


def test_decoding_is_cached_and_reports_bad_files(tmp_path, caplog):
    from ser_hf.features import prepare_audio

    root = write_corpus(tmp_path / "c", actors=(1,), repetitions=(1,))
    bad = root / "Actor_01" / (ravdess_name(1, 1, 2) + ".wav")
    bad.write_text("not audio")
    dataset = load_ravdess(root)
    with caplog.at_level(logging.WARNING):
        decoded, skipped = prepare_audio(dataset, RATE, cache_dir=tmp_path / "dec")
    assert len(decoded) == 8 and [s.path for s in skipped] == [str(bad)] and skipped[0].reason == "unreadable"
    assert str(bad) in caplog.text
    assert decoded[0]["waveform"] and decoded[0]["length"] == len(decoded[0]["waveform"])
    again, _ = prepare_audio(dataset, RATE, cache_dir=tmp_path / "dec")
    assert again.cache_files == decoded.cache_files or again["length"] == decoded["length"]
    assert len(list((tmp_path / "dec").glob("decoded-*.arrow"))) == 1
    with pytest.raises(CorpusError, match="strict"):
        prepare_audio(dataset, RATE, cache_dir=tmp_path / "dec", strict=True)
    np.testing.assert_allclose(np.asarray(again[0]["waveform"]), np.asarray(decoded[0]["waveform"]))


def test_unknown_hub_id_gives_a_corpus_error():
    with pytest.raises(CorpusError, match="Hub dataset id"):
        load_ravdess("nobody-has-this/ravdess-nowhere")
