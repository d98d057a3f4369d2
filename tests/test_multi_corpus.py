"""Several corpora at once: corpus facts, combining corpora, and splits that hold out speakers per corpus."""

from pathlib import Path

import pytest
import soundfile as sf
from conftest import RATE, ravdess_name, synth_clip, write_corpus
from datasets import Audio, ClassLabel, Dataset, Features, Value

from ser_hf import CorpusError, load_corpora, load_corpus
from ser_hf.corpora import KNOWN_CORPORA, CorpusInfo, combine_corpora, corpus_info, corpus_label_sets
from ser_hf.corpora.base import read_column
from ser_hf.corpora.registry import NAMED_CORPORA
from ser_hf.crosscorpus import restrict_labels
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.splits import (
    corpus_folds,
    default_heldout_speakers,
    natural_order,
    parse_speakers,
    speaker_folds,
    speaker_key,
    split_by_speaker,
)


# --------------------------------------------------------------------------------------- corpus facts
def test_every_named_corpus_has_its_facts():
    assert set(KNOWN_CORPORA) == set(NAMED_CORPORA)
    for name, info in KNOWN_CORPORA.items():
        assert isinstance(info, CorpusInfo) and info.name == name
        assert info.display_name and info.license_text.endswith(".") and info.citation
        assert info.language and all(len(code) == 2 for code in info.language)
        assert info.speaker_word in ("actors", "speakers")
    assert KNOWN_CORPORA["ravdess"].license == "cc-by-nc-sa-4.0" and "Livingstone" in KNOWN_CORPORA["ravdess"].citation
    assert "e0196391" in KNOWN_CORPORA["ravdess"].citation
    assert KNOWN_CORPORA["crema-d"].license == "odbl" and KNOWN_CORPORA["tess"].license == "cc-by-nc-nd-4.0"
    emovo = KNOWN_CORPORA["emovo"]
    assert emovo.license is None and "research use" in emovo.license_text.lower()
    assert "Costantini" in emovo.citation and "LREC 2014" in emovo.citation and emovo.language == ("it",)
    assert KNOWN_CORPORA["emodb"].language == ("de",) and KNOWN_CORPORA["emodb"].license is None
    assert "Haq" in KNOWN_CORPORA["savee"].citation and "Burkhardt" in KNOWN_CORPORA["emodb"].citation


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("RAVDESS", "ravdess"),
        ("crema_d", "crema-d"),
        ("cremad", "crema-d"),
        ("CREMA-D", "crema-d"),
        ("emo-db", "emodb"),
    ],
)
def test_corpus_info_accepts_load_corpus_spellings(spelling, name):
    assert corpus_info(spelling) is KNOWN_CORPORA[name]


def test_corpus_info_of_an_unknown_corpus_is_none():
    assert corpus_info("my_recordings") is None and corpus_info("iemocap") is None


# ------------------------------------------------------------------------------ splits within corpora
def _speaker_table(corpora: dict[str, list[str]], *, prefixed: bool = True) -> Dataset:
    """Two clips per speaker; speakers keyed by corpus (``"emovo:f1"``) when ``prefixed``."""
    rows = [
        (f"{corpus}:{speaker}" if prefixed else speaker, corpus)
        for corpus, speakers in corpora.items()
        for speaker in speakers
        for _ in range(2)
    ]
    return Dataset.from_dict({"speaker": [s for s, _ in rows], "corpus": [c for _, c in rows]})


RAVDESS_ACTORS = [f"{actor:02d}" for actor in range(1, 25)]
EMOVO_SPEAKERS = ["f1", "f2", "f3", "m1", "m2", "m3"]


def test_speaker_keys_keyed_by_corpus():
    assert speaker_key("ravdess:07") == "ravdess:7" and speaker_key("07") == "7" and speaker_key(7) == "7"
    assert speaker_key(" emovo:f1 ") == "emovo:f1" and speaker_key("emodb:03") == "emodb:3"
    assert parse_speakers("ravdess:21, emovo:f1;crema-d:1001") == ["ravdess:21", "emovo:f1", "crema-d:1001"]
    assert sorted(["f10", "f2", "ravdess:10", "ravdess:9", "3"], key=natural_order) == [
        "3",
        "f2",
        "f10",
        "ravdess:9",
        "ravdess:10",
    ]


def test_default_heldout_speakers_on_one_corpus():
    ravdess = _speaker_table({"ravdess": RAVDESS_ACTORS}, prefixed=False)
    assert default_heldout_speakers(ravdess) == (["21", "22", "23", "24"], ["19", "20"])
    eight = _speaker_table({"ravdess": RAVDESS_ACTORS[:8]}, prefixed=False)  # not all of 19-24: the general rule
    assert default_heldout_speakers(eight) == (["7", "8"], ["6"])
    emodb = _speaker_table({"emodb": ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]}, prefixed=False)
    assert default_heldout_speakers(emodb) == (["15", "16"], ["14"])
    crema = _speaker_table({"crema-d": [str(a) for a in range(1001, 1092)]}, prefixed=False)
    test, validation = default_heldout_speakers(crema)
    assert test == [str(a) for a in range(1076, 1092)] and validation == [str(a) for a in range(1068, 1076)]
    emovo = _speaker_table({"emovo": EMOVO_SPEAKERS}, prefixed=False)
    assert default_heldout_speakers(emovo) == (["m3"], ["m2"])
    no_corpus = _speaker_table({"x": ["spk10", "spk2", "spk1"]}, prefixed=False).remove_columns("corpus")
    assert default_heldout_speakers(no_corpus) == (["spk10"], ["spk2"])  # numbers numerically


def test_default_heldout_speakers_per_corpus_keep_a_training_speaker():
    combined = _speaker_table(
        {"ravdess": RAVDESS_ACTORS, "emovo": EMOVO_SPEAKERS, "tess": ["OAF", "YAF"], "solo": ["me"]}
    )
    test, validation = default_heldout_speakers(combined)
    assert test == ["ravdess:21", "ravdess:22", "ravdess:23", "ravdess:24", "emovo:m3", "tess:YAF"]
    assert validation == ["ravdess:19", "ravdess:20", "emovo:m2"]  # two speakers: no validation; one: nothing
    splits = split_by_speaker(combined, test_speakers=test, eval_speakers=validation)
    assert set(splits["train"]["corpus"]) == {"ravdess", "emovo", "tess", "solo"}
    assert set(splits["test"]["speaker"]) == {
        "ravdess:21",
        "ravdess:22",
        "ravdess:23",
        "ravdess:24",
        "emovo:m3",
        "tess:YAF",
    }
    with pytest.raises(CorpusError, match="single speaker"):
        default_heldout_speakers(_speaker_table({"a": ["1"], "b": ["1"]}))
    with pytest.raises(CorpusError, match="no speaker column 'actor'"):
        default_heldout_speakers(combined, speaker_column="actor")


def test_split_by_speaker_with_keys_keyed_by_corpus():
    combined = _speaker_table({"ravdess": RAVDESS_ACTORS, "emovo": EMOVO_SPEAKERS})
    splits = split_by_speaker(combined, test_speakers="ravdess:07,emovo:f1", eval_speakers=["ravdess:8"])
    assert set(splits["test"]["speaker"]) == {"ravdess:07", "emovo:f1"}
    assert set(splits["validation"]["speaker"]) == {"ravdess:08"} and len(splits["train"]) == 2 * 27
    with pytest.raises(
        CorpusError, match=r"\['21'\] are not in the corpus .*30 speakers: .*, \.\.\., .*e\.g\. ravdess:21"
    ):
        split_by_speaker(combined, test_speakers="21")


def test_corpus_folds_draw_from_every_corpus():
    assert corpus_folds(range(1, 25), 6) == speaker_folds(range(1, 25), 6)
    assert corpus_folds(RAVDESS_ACTORS, 6)[0] == ["1", "2", "3", "4"]
    assert corpus_folds(["spk10", "spk2", "spk1"], 3) == speaker_folds(["spk10", "spk2", "spk1"], 3)
    assert corpus_folds([f"ravdess:{a}" for a in RAVDESS_ACTORS], 6)[5] == [f"ravdess:{a}" for a in range(21, 25)]
    speakers = (
        [f"ravdess:{a}" for a in RAVDESS_ACTORS] + [f"emovo:{s}" for s in EMOVO_SPEAKERS] + ["tess:OAF", "tess:YAF"]
    )
    folds = corpus_folds(speakers, 6)
    assert len(folds) == 6 and sorted(k for fold in folds for k in fold) == sorted(speaker_key(s) for s in speakers)
    assert folds[0] == ["emovo:f1", "ravdess:1", "ravdess:2", "ravdess:3", "ravdess:4", "tess:OAF"]
    assert folds[5] == ["emovo:m3", "ravdess:21", "ravdess:22", "ravdess:23", "ravdess:24"]
    assert [sum(k.startswith("tess:") for k in fold) for fold in folds] == [1, 1, 0, 0, 0, 0]  # fewer than folds
    assert all(
        any(k.startswith("emovo:") for k in fold) and any(k.startswith("ravdess:") for k in fold) for fold in folds
    )
    with pytest.raises(ValueError, match="most speakers of one corpus"):
        corpus_folds(speakers, 25)


# --------------------------------------------------------------------------------- combining corpora
EMOVO_CODES = {"neu": 1, "gio": 3, "tri": 4, "rab": 5, "pau": 6, "dis": 7, "sor": 8}  # → RAVDESS emotion codes
EMOVO_LABELS = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def _write(path, emotion=1, actor=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_clip(emotion, actor, 1, seconds=0.2), RATE)
    return path


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """A tiny RAVDESS-named folder (actors 1-2, every emotion) and a tiny EMOVO folder (f1, m1)."""
    root = tmp_path_factory.mktemp("multi")
    write_corpus(root / "ravdess", actors=(1, 2), repetitions=(1,))
    for speaker, actor in (("f1", 3), ("m1", 4)):
        for code, emotion in EMOVO_CODES.items():
            _write(root / "emovo" / speaker / f"{code}-{speaker}-b1.wav", emotion, actor)
    return root


def test_combined_corpora_share_labels_and_key_speakers(two_corpora):
    ravdess, emovo = load_corpus(two_corpora / "ravdess"), load_corpus(two_corpora / "emovo")
    combined = combine_corpora([ravdess, emovo])
    assert combined.column_names == ["audio", "path", "label", "emotion", "speaker", "corpus", "gender"]
    assert combined.features["label"].names == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert isinstance(combined.features["audio"], Audio) and not combined.features["audio"].decode
    assert len(combined) == 14 + 14 and "calm" not in combined["emotion"]  # RAVDESS' calm clips are left out
    assert set(combined["speaker"]) == {"ravdess:01", "ravdess:02", "emovo:f1", "emovo:m1"}
    assert all(combined.features["label"].names[row["label"]] == row["emotion"] for row in combined)
    assert all(row["audio"]["path"] == row["path"] for row in combined)
    assert dict(zip(combined["speaker"], combined["gender"])) == {
        "ravdess:01": "male",
        "ravdess:02": "female",
        "emovo:f1": "female",
        "emovo:m1": "male",
    }
    assert corpus_label_sets(combined) == {"ravdess": combined.features["label"].names, "emovo": EMOVO_LABELS}


def test_union_keeps_every_label_and_says_which_corpus_has_which(two_corpora):
    ravdess, emovo = load_corpus(two_corpora / "ravdess"), load_corpus(two_corpora / "emovo")
    union = combine_corpora([emovo, ravdess], labels="union")
    assert union.features["label"].names == list(RAVDESS_EMOTIONS) and len(union) == 16 + 14
    sets = corpus_label_sets(union)
    assert sets == {"emovo": EMOVO_LABELS, "ravdess": list(RAVDESS_EMOTIONS)}
    assert [corpus for corpus, names in sets.items() if "calm" in names] == ["ravdess"]
    assert corpus_label_sets(ravdess) == {"ravdess": list(RAVDESS_EMOTIONS)}
    angry = restrict_labels(ravdess, ["angry"])  # a corpus' clips carry fewer labels than its ClassLabel
    assert corpus_label_sets(angry) == {"ravdess": ["angry"]}


def test_one_corpus_is_returned_as_it_is(two_corpora):
    ravdess = load_corpus(two_corpora / "ravdess")
    assert combine_corpora([ravdess]) is ravdess
    alone = load_corpora(str(two_corpora / "ravdess"))
    assert alone.column_names == ravdess.column_names and "actor" in alone.column_names
    assert alone["speaker"] == ravdess["speaker"] == sorted(ravdess["speaker"]) and "01" in alone["speaker"]
    assert alone["path"] == ravdess["path"] and alone.features == ravdess.features


def test_same_speaker_id_in_two_corpora_stays_two_speakers(two_corpora, tmp_path):
    ravdess = load_corpus(two_corpora / "ravdess")  # actor 1 is speaker "01"
    for name, emotion in (("a", 5), ("b", 4), ("c", 1)):
        _write(tmp_path / "clips" / f"{name}.wav", emotion, 9)
    (tmp_path / "mine.csv").write_text(
        "path,label,speaker\nclips/a.wav,anger,1\nclips/b.wav,sad,1\nclips/c.wav,neu,2\n"
    )
    mine = load_corpus(tmp_path / "mine.csv")
    assert speaker_key("01") == speaker_key("1")  # alone, the two "1"s would be one speaker
    combined = combine_corpora([ravdess, mine])
    assert combined.features["label"].names == ["neutral", "sad", "angry"]
    assert set(combined["speaker"]) == {"ravdess:01", "ravdess:02", "mine:1", "mine:2"}
    assert set(combined["gender"]) == {"male", "female", ""}  # the manifest has no gender column
    splits = split_by_speaker(combined, test_speakers="ravdess:1", eval_speakers="mine:1")
    assert set(splits["test"]["speaker"]) == {"ravdess:01"} and set(splits["validation"]["speaker"]) == {"mine:1"}
    assert set(splits["train"]["speaker"]) == {"ravdess:02", "mine:2"}
    with pytest.raises(CorpusError, match=r"not in the corpus.*e\.g\. mine:1, ravdess:1"):
        split_by_speaker(combined, test_speakers="1")


def test_embedded_bytes_and_path_strings_are_combined(two_corpora):
    ravdess = load_corpus(two_corpora / "ravdess").select(range(4))
    paths = ravdess["path"]
    embedded = Dataset.from_dict(
        {
            "file": [{"bytes": open(p, "rb").read(), "path": Path(p).name} for p in paths],
            "label": ravdess["label"],
            "speaker": ["7"] * 4,
            "corpus": ["hub"] * 4,
        },
        features=Features(
            {
                "file": {"bytes": Value("binary"), "path": Value("string")},  # as a Hub parquet file stores it
                "label": ravdess.features["label"],
                "speaker": Value("string"),
                "corpus": Value("string"),
            }
        ),
    ).cast_column("file", Audio(decode=False))
    strings = Dataset.from_dict(
        {"audio": paths, "label": [0, 0, 1, 1], "speaker": ["x", "x", "y", "y"], "corpus": ["plain"] * 4},
        features=Features(
            {
                "audio": Value("string"),
                "label": ClassLabel(names=["neutral", "anger"]),
                "speaker": Value("string"),
                "corpus": Value("string"),
            }
        ),
    )
    combined = combine_corpora([embedded, strings], labels="union")
    assert combined.column_names == ["audio", "path", "label", "emotion", "speaker", "corpus", "gender"]
    assert combined.features["label"].names == list(RAVDESS_EMOTIONS)  # "anger" is angry
    assert combined["emotion"][4:] == ["neutral", "neutral", "angry", "angry"]
    audio = read_column(combined, "audio")
    assert [a["bytes"] for a in audio[:4]] == [open(p, "rb").read() for p in paths]
    assert combined["path"][:4] == [Path(p).name for p in paths] and combined["path"][4:] == paths
    assert [a["path"] for a in audio[4:]] == paths and all(a["bytes"] is None for a in audio[4:])
    assert combined["speaker"] == ["hub:7"] * 4 + ["plain:x", "plain:x", "plain:y", "plain:y"]
    paths_only = combine_corpora([embedded, strings.rename_column("audio", "path")], labels="union")
    assert paths_only["path"] == combined["path"] and read_column(paths_only, "audio") == audio


def test_combining_errors(two_corpora):
    ravdess, emovo = load_corpus(two_corpora / "ravdess"), load_corpus(two_corpora / "emovo")
    with pytest.raises(
        CorpusError, match=r"corpus #2 \(EMOVO loaded by ser-hf \(14 clips\)\): missing column\(s\) 'corpus'"
    ):
        combine_corpora([ravdess, emovo.remove_columns("corpus")])
    with pytest.raises(CorpusError, match=r"missing column\(s\) 'speaker', 'corpus'"):
        combine_corpora([ravdess, emovo.remove_columns(["speaker", "corpus"])])
    with pytest.raises(CorpusError, match="both called 'ravdess'"):
        combine_corpora([ravdess, ravdess])
    with pytest.raises(CorpusError, match="must be a ClassLabel"):
        combine_corpora([ravdess, emovo.cast_column("label", Value("int64"))])
    with pytest.raises(CorpusError, match="share no emotion"):
        combine_corpora([restrict_labels(ravdess, ["calm"]), emovo])
    with pytest.raises(ValueError, match="labels must be one of"):
        combine_corpora([ravdess, emovo], labels="all")
    with pytest.raises(ValueError, match="no corpora"):
        combine_corpora([])


def test_load_corpora_from_a_list_or_a_comma_separated_string(two_corpora):
    first, second = str(two_corpora / "ravdess"), str(two_corpora / "emovo")
    from_string = load_corpora(f"{first}, {second}")
    from_list = load_corpora([first, second])
    assert from_string.to_dict() == from_list.to_dict() and len(from_list) == 28
    assert from_list.features == from_string.features
    assert load_corpora([first, second], "ravdess,emovo").to_dict() == from_list.to_dict()
    union = load_corpora([first, Path(second)], ["ravdess", "auto"], labels="union")
    assert len(union) == 30 and "calm" in union.features["label"].names
    with pytest.raises(ValueError, match="2 kinds for 3 sources"):
        load_corpora([first, second, second], ["ravdess", "emovo"])
    with pytest.raises(ValueError, match="sources is empty"):
        load_corpora(" , ")
    with pytest.raises(CorpusError, match="both called 'emovo'"):
        load_corpora([second, second])


def test_load_corpora_passes_options_to_the_loaders_that_take_them(two_corpora, tmp_path):
    write_corpus(tmp_path / "ravdess", actors=(1,), repetitions=(1,))
    sf.write(tmp_path / "ravdess" / "Actor_01" / (ravdess_name(3, 1, channel=2) + ".wav"), synth_clip(3, 1, 1), RATE)
    emovo = two_corpora / "emovo"
    both = load_corpora([tmp_path / "ravdess", emovo], labels="union", include_song=True)
    assert len(both) == 8 + 1 + 14 and len(load_corpora([tmp_path / "ravdess", emovo], labels="union")) == 8 + 14
    assert len(load_corpora(emovo, include_song=True)) == 14  # EMOVO has no songs: the option does not apply
    with pytest.raises(TypeError, match="no corpus loader takes the option"):
        load_corpora([tmp_path / "ravdess", emovo], include_songs=True)
    with pytest.raises(ValueError, match="kind must be one of"):
        load_corpora([emovo], "iemocap")


def test_splits_and_folds_of_combined_corpora(two_corpora):
    ravdess = load_corpus(two_corpora / "ravdess")
    combined = load_corpora([two_corpora / "ravdess", two_corpora / "emovo"])
    assert default_heldout_speakers(ravdess) == (["2"], [])
    assert default_heldout_speakers(combined) == (["ravdess:2", "emovo:m1"], [])
    test, _ = default_heldout_speakers(combined)
    splits = split_by_speaker(combined, test_speakers=test)
    assert set(splits["train"]["speaker"]) == {"ravdess:01", "emovo:f1"} and len(splits["test"]) == 14
    assert corpus_folds(combined["speaker"], 2) == [["emovo:f1", "ravdess:1"], ["emovo:m1", "ravdess:2"]]
    assert corpus_folds(ravdess["speaker"], 2) == speaker_folds(ravdess["speaker"], 2) == [["1"], ["2"]]
