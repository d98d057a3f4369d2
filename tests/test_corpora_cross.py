"""CREMA-D, TESS, SAVEE, EmoDB, label folders and manifests on one taxonomy; cross-corpus restriction."""

import json
import logging

import pytest
import soundfile as sf
from conftest import RATE, synth_clip
from datasets import ClassLabel

from ser_hf import CorpusError, LabelMapError, load_corpus
from ser_hf.corpora import (
    detect_corpus,
    load_crema_d,
    load_emodb,
    load_emovo,
    load_label_folders,
    load_manifest,
    load_savee,
    load_tess,
    parse_crema_d_name,
    parse_emodb_name,
    parse_emovo_name,
    parse_savee_name,
    parse_tess_name,
)
from ser_hf.corpora.emovo import EMOVO_EMOTIONS
from ser_hf.corpora.registry import NAMED_CORPORA
from ser_hf.crosscorpus import restrict_labels, shared_labels
from ser_hf.labels import EMOTIONS, canonical_emotion, taxonomy_order


def _write(path, emotion=1, seconds=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_clip(emotion, 1, 1, seconds=seconds), RATE)
    return path


# ------------------------------------------------------------------------------------------ CREMA-D
def test_crema_d_names():
    assert parse_crema_d_name("1001_DFA_ANG_XX.wav") == {
        "emotion": "angry",
        "intensity": "unspecified",
        "sentence": "Don't forget a jacket",
        "actor": 1001,
        "speaker": "1001",
    }
    assert parse_crema_d_name("1091_IEO_SAD_HI.wav")["intensity"] == "high"
    for bad, words in [("1001_DFA_XYZ_XX.wav", "emotion"), ("0999_DFA_ANG_XX.wav", "actor"), ("1001_DFA.wav", "four")]:
        with pytest.raises(ValueError, match=words):
            parse_crema_d_name(bad)


def test_crema_d_folder(tmp_path):
    for actor in (1001, 1002):
        for code in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
            _write(tmp_path / "AudioWAV" / f"{actor}_TIE_{code}_XX.wav")
    dataset = load_crema_d(tmp_path)
    assert len(dataset) == 12 and sorted(set(dataset["speaker"])) == ["1001", "1002"]
    assert dataset.features["label"].names == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert all(dataset.features["label"].names[row["label"]] == row["emotion"] for row in dataset)


# --------------------------------------------------------------------------------------------- TESS
def test_tess_names_in_speaker_emotion_folders(tmp_path):
    assert parse_tess_name("OAF_back_angry.wav")["speaker"] == "OAF"
    assert parse_tess_name("YAF_dog_ps.wav")["emotion"] == "surprised"
    assert parse_tess_name("OA_bite_neutral.wav")["speaker"] == "OAF"  # a known spelling in the release
    assert parse_tess_name("YAF_date_fear.wav")["emotion"] == "fearful"
    with pytest.raises(ValueError, match="OAF or YAF"):
        parse_tess_name("XYZ_back_angry.wav")
    with pytest.raises(ValueError, match="not a TESS emotion"):
        parse_tess_name("OAF_back_calm.wav")
    for speaker, folder_emotion, name_emotion in [
        ("OAF", "angry", "angry"),
        ("OAF", "Pleasant_surprise", "ps"),
        ("YAF", "fear", "fear"),
        ("YAF", "neutral", "neutral"),
    ]:
        _write(tmp_path / f"{speaker}_{folder_emotion}" / f"{speaker}_back_{name_emotion}.wav")
    dataset = load_tess(tmp_path)
    assert sorted(dataset["emotion"]) == ["angry", "fearful", "neutral", "surprised"]
    assert set(dataset["speaker"]) == {"OAF", "YAF"} and set(dataset["gender"]) == {"female"}


# -------------------------------------------------------------------------------------------- SAVEE
def test_savee_flat_and_speaker_folders(tmp_path):
    assert parse_savee_name("DC_a01.wav") == {"emotion": "angry", "sentence": 1, "speaker": "DC", "gender": "male"}
    assert parse_savee_name("AudioData/KL/sa15.wav")["emotion"] == "sad"
    assert parse_savee_name("JE/su03.wav")["emotion"] == "surprised"
    with pytest.raises(ValueError, match="not one of"):
        parse_savee_name("misc/a01.wav")  # no speaker in the name or the folder
    with pytest.raises(ValueError, match="EMOTION"):
        parse_savee_name("DC_x01.wav")
    _write(tmp_path / "flat" / "DC_a01.wav")
    _write(tmp_path / "flat" / "JE_n12.wav")
    _write(tmp_path / "AudioData" / "JK" / "h03.wav")
    _write(tmp_path / "AudioData" / "KL" / "f07.wav")
    dataset = load_savee(tmp_path)
    assert dict(zip(dataset["speaker"], dataset["emotion"])) == {
        "DC": "angry",
        "JE": "neutral",
        "JK": "happy",
        "KL": "fearful",
    }


# -------------------------------------------------------------------------------------------- EmoDB
@pytest.mark.parametrize(
    ("letter", "emotion"),
    [
        ("W", "angry"),
        ("L", "boredom"),
        ("E", "disgust"),
        ("A", "fearful"),
        ("F", "happy"),
        ("T", "sad"),
        ("N", "neutral"),
    ],
)
def test_emodb_german_letters(letter, emotion):
    fields = parse_emodb_name(f"03a01{letter}a.wav")
    assert fields["emotion"] == emotion and fields["speaker"] == "03" and fields["gender"] == "male"


def test_emodb_folder_and_errors(tmp_path):
    assert parse_emodb_name("16b10Tb.wav")["gender"] == "female"
    for bad, words in [("01a01Fa.wav", "speaker"), ("03a03Fa.wav", "text"), ("03a01Xa.wav", "letter")]:
        with pytest.raises(ValueError, match=words):
            parse_emodb_name(bad)
    _write(tmp_path / "wav" / "03a01Fa.wav")
    _write(tmp_path / "wav" / "08b02La.wav")
    _write(tmp_path / "wav" / "readme.wav")
    with pytest.raises(CorpusError, match="readme.wav"):
        load_emodb(tmp_path)
    dataset = load_emodb(tmp_path, on_invalid="skip")
    assert sorted(dataset["emotion"]) == ["boredom", "happy"] and "boredom" in dataset.features["label"].names


# -------------------------------------------------------------------------------------------- EMOVO
EMOVO_CODES = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fearful", "rab": "angry"}
EMOVO_CODES.update(sor="surprised", tri="sad")
EMOVO_SENTENCES = {"b": ("short", 3), "d": ("question", 2), "l": ("long", 4), "n": ("nonsense", 5)}


def test_emovo_every_emotion_speaker_and_sentence():
    assert parse_emovo_name("f1/dis-f1-b1.wav") == {
        "emotion": "disgust",
        "speaker": "f1",
        "gender": "female",
        "sentence": "b1",
        "sentence_type": "short",
    }
    for code, emotion in EMOVO_CODES.items():
        assert parse_emovo_name(f"{code}-m2-n5.flac")["emotion"] == emotion
    for speaker in ("f1", "f2", "f3", "m1", "m2", "m3"):
        assert parse_emovo_name(f"neu-{speaker}-l4.wav")["gender"] == ("female" if speaker[0] == "f" else "male")
    for letter, (kind, count) in EMOVO_SENTENCES.items():
        for number in range(1, count + 1):
            fields = parse_emovo_name(f"tri-f3-{letter}{number}.wav")
            assert fields["sentence"] == f"{letter}{number}" and fields["sentence_type"] == kind
    assert set(EMOVO_CODES.values()) == set(EMOVO_EMOTIONS) and tuple(taxonomy_order(EMOVO_EMOTIONS)) == EMOVO_EMOTIONS
    assert parse_emovo_name("RAB-M1-D2.WAV")["emotion"] == "angry"  # case does not matter


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("dis-f1.wav", "three fields"),
        ("dis-f1-b1-x.wav", "three fields"),
        ("ang-f1-b1.wav", "emotion code 'ang'"),
        ("dis-f4-b1.wav", "speaker 'f4'"),
        ("dis-x1-b1.wav", "speaker 'x1'"),
        ("dis-f1-b4.wav", "sentence code 'b4'"),
        ("dis-f1-d3.wav", "sentence code 'd3'"),
        ("dis-f1-l5.wav", "sentence code 'l5'"),
        ("dis-f1-n6.wav", "sentence code 'n6'"),
        ("dis-f1-n0.wav", "sentence code 'n0'"),
        ("dis-f1-x1.wav", "sentence code 'x1'"),
        ("dis-f1-b01.wav", "sentence code 'b01'"),
        ("dis-f1-b.wav", "sentence code 'b'"),
    ],
)
def test_emovo_bad_names_say_what_is_wrong(name, words):
    with pytest.raises(ValueError, match=words):
        parse_emovo_name(name)


def test_emovo_folder(tmp_path):
    for speaker in ("f1", "m3"):
        for code in EMOVO_CODES:
            _write(tmp_path / "EMOVO" / speaker / f"{code}-{speaker}-b1.wav")
    dataset = load_emovo(tmp_path)
    assert len(dataset) == 14 and dataset.features["label"].names == list(EMOVO_EMOTIONS)
    assert all(dataset.features["label"].names[row["label"]] == row["emotion"] for row in dataset)
    assert dict(zip(dataset["speaker"], dataset["gender"])) == {"f1": "female", "m3": "male"}
    assert set(dataset["corpus"]) == {"emovo"} and set(dataset["sentence_type"]) == {"short"}
    for column in ("audio", "path", "label", "emotion", "speaker", "gender", "sentence", "sentence_type", "corpus"):
        assert column in dataset.column_names
    _write(tmp_path / "EMOVO" / "f1" / "dis-f1-z9.wav")
    with pytest.raises(CorpusError, match=r"EMOVO.*dis-f1-z9.wav: sentence code"):
        load_emovo(tmp_path)
    assert len(load_emovo(tmp_path, on_invalid="skip")) == 14


# ---------------------------------------------------------------------- generic: folders and manifests
def test_label_folders_with_speaker_pattern(tmp_path):
    _write(tmp_path / "Anger" / "spk1" / "a.wav")
    _write(tmp_path / "happiness" / "spk2" / "b.flac")
    _write(tmp_path / "neutral" / "spk1" / "c.wav")
    dataset = load_label_folders(tmp_path, speaker_pattern=r"^[^/]+/(?P<speaker>[^/]+)/")
    assert dataset.features["label"].names == ["neutral", "happy", "angry"]  # taxonomy order
    assert dict(zip(dataset["emotion"], dataset["speaker"])) == {"angry": "spk1", "happy": "spk2", "neutral": "spk1"}
    assert set(load_label_folders(tmp_path)["speaker"]) == {"unknown"}
    _write(tmp_path / "loose.wav")
    with pytest.raises(CorpusError, match="not inside a label folder"):
        load_label_folders(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_manifest_formats(tmp_path, fmt):
    clips = [("clips/a.wav", "ANG", "s1"), ("clips/b.wav", "sadness", "s2"), ("clips/c.wav", "neu", "s1")]
    for path, _, _ in clips:
        _write(tmp_path / path)
    rows = [{"path": p, "label": label, "speaker": s, "session": "x"} for p, label, s in clips]
    manifest = tmp_path / f"manifest.{fmt}"
    if fmt == "csv":
        manifest.write_text("path,label,speaker,session\n" + "\n".join(f"{p},{la},{s},x" for p, la, s in clips) + "\n")
    elif fmt == "json":
        manifest.write_text(json.dumps(rows))
    else:
        manifest.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = load_manifest(manifest)
    assert dataset["emotion"] == ["angry", "sad", "neutral"] and dataset["speaker"] == ["s1", "s2", "s1"]
    assert dataset["label_source"] == ["ANG", "sadness", "neu"] and dataset["session"] == ["x"] * 3
    assert dataset.features["label"].names == ["neutral", "sad", "angry"]
    assert load_corpus(manifest)["path"] == dataset["path"]


def test_manifest_errors(tmp_path, caplog):
    _write(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("file,emotion\na.wav,happy\nmissing.wav,sad\n")
    with pytest.raises(CorpusError, match=r"missing.wav.*not found"):
        load_manifest(tmp_path / "m.csv")
    with caplog.at_level(logging.WARNING):
        assert len(load_manifest(tmp_path / "m.csv", on_invalid="skip")) == 1
    (tmp_path / "n.csv").write_text("clip,mood\na.wav,happy\n")
    with pytest.raises(CorpusError, match="needs a path column"):
        load_manifest(tmp_path / "n.csv")
    (tmp_path / "o.json").write_text("{not json")
    with pytest.raises(CorpusError, match="not a valid JSON"):
        load_manifest(tmp_path / "o.json")


def test_detect_and_load_any_corpus(tmp_path, corpus_dir):
    _write(tmp_path / "emodb" / "03a01Fa.wav")
    _write(tmp_path / "emodb" / "10b03Wb.wav")
    _write(tmp_path / "crema" / "1001_DFA_ANG_XX.wav")
    _write(tmp_path / "savee" / "DC" / "a01.wav")
    _write(tmp_path / "tess" / "OAF_angry" / "OAF_back_angry.wav")
    _write(tmp_path / "emovo" / "f1" / "dis-f1-b1.wav")
    _write(tmp_path / "emovo" / "m2" / "sor-m2-n3.wav")
    _write(tmp_path / "folders" / "sad" / "x.wav")
    expected = {"emodb": "emodb", "crema": "crema-d", "savee": "savee", "tess": "tess", "emovo": "emovo"}
    expected["folders"] = "folders"
    for folder, kind in expected.items():
        assert detect_corpus(tmp_path / folder) == kind
        assert len(load_corpus(tmp_path / folder)) >= 1
    assert detect_corpus(corpus_dir) == "ravdess"
    assert load_corpus(corpus_dir, "ravdess").features["label"].names[0] == "neutral"
    with pytest.raises(ValueError, match="kind must be one of"):
        load_corpus(corpus_dir, "iemocap")


def test_every_loader_tags_its_corpus(tmp_path, corpus):
    _write(tmp_path / "emodb" / "03a01Fa.wav")
    _write(tmp_path / "crema" / "1001_DFA_ANG_XX.wav")
    _write(tmp_path / "savee" / "DC" / "a01.wav")
    _write(tmp_path / "tess" / "OAF_angry" / "OAF_back_angry.wav")
    _write(tmp_path / "my_set" / "sad" / "x.wav")
    expected = {"emodb": "emodb", "crema": "crema-d", "savee": "savee", "tess": "tess", "my_set": "my_set"}
    for folder, name in expected.items():
        dataset = load_corpus(tmp_path / folder)
        assert dataset.features["corpus"].dtype == "string" and set(dataset["corpus"]) == {name}
    assert load_label_folders(tmp_path / "my_set", name="mine")["corpus"] == ["mine"]
    assert set(corpus["corpus"]) == {"ravdess"}
    (tmp_path / "clips.csv").write_text(
        "path,label,corpus\nmy_set/sad/x.wav,sad,\ncrema/1001_DFA_ANG_XX.wav,ANG,other\n"
    )
    assert load_manifest(tmp_path / "clips.csv")["corpus"] == ["clips", "other"]  # its own column wins
    assert load_manifest(tmp_path / "clips.csv", name="m")["corpus"] == ["m", "other"]


#: A few file names of each named corpus, in their usual folders.
NAMED_EXAMPLES = {
    "ravdess": ["Actor_01/03-01-05-02-01-02-01.wav", "Actor_24/03-01-08-01-02-01-24.wav"],
    "crema-d": ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1091_IEO_SAD_HI.wav"],
    "tess": ["OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_dog_ps.wav"],
    "savee": ["DC/a01.wav", "JK/su15.wav", "flat/KL_sa03.wav"],
    "emodb": ["wav/03a01Fa.wav", "wav/16b10Tb.wav"],
    "emovo": ["f1/dis-f1-b1.wav", "m3/tri-m3-n5.wav", "m1/neu-m1-d2.wav"],
}


def test_named_corpora_are_not_confused(tmp_path):
    assert set(NAMED_EXAMPLES) == set(NAMED_CORPORA)
    for kind, names in NAMED_EXAMPLES.items():
        for name in names:
            fitting = [other for other, (_, parse) in NAMED_CORPORA.items() if _parses(parse, tmp_path / name)]
            assert fitting == [kind], name
            _write(tmp_path / kind / name)
        assert detect_corpus(tmp_path / kind) == kind
        assert set(load_corpus(tmp_path / kind)["corpus"]) == {kind}


def _parses(parse, path):
    try:
        parse(path)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------------- taxonomy, restriction
def test_taxonomy():
    assert canonical_emotion("Pleasant Surprise") == "surprised" and canonical_emotion("ANGER") == "angry"
    assert taxonomy_order(["sad", "anger", "grumpy", "boredom"]) == ["sad", "angry", "boredom", "grumpy"]
    assert EMOTIONS[-1] == "boredom"


def test_shared_and_restricted_labels(corpus):
    ravdess = corpus.features["label"].names
    assert shared_labels(ravdess, ["neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom"]) == [
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
    ]
    restricted = restrict_labels(corpus, ["angry", "sad"])
    assert isinstance(restricted.features["label"], ClassLabel)
    assert restricted.features["label"].names == ["angry", "sad"]
    assert sorted(set(restricted["emotion"])) == ["angry", "sad"] and len(restricted) == 32
    assert all(restricted.features["label"].names[r["label"]] == r["emotion"] for r in restricted)
    with pytest.raises(LabelMapError, match="boredom"):
        restrict_labels(corpus, ["boredom"])


# ------------------------------------------------------------------------------- cross-corpus scoring
TESS_CODES = {"neutral": 1, "happy": 3, "sad": 4, "angry": 5, "fear": 6, "disgust": 7, "ps": 8}
EMODB_LETTERS = {"N": 1, "F": 3, "T": 4, "W": 5, "A": 6, "E": 7, "L": 2}


def test_ravdess_model_scored_on_tess_and_emodb_over_shared_labels(trained, tmp_path):
    from ser_hf import EmotionRecognizer
    from ser_hf.crosscorpus import evaluate_across

    for speaker, actor in (("OAF", 9), ("YAF", 10)):
        for word in ("back", "bar", "base"):
            for name, code in TESS_CODES.items():
                clip = synth_clip(code, actor, len(word) + ord(word[-1]) % 3)
                path = tmp_path / "tess" / f"{speaker}_{name}" / f"{speaker}_{word}_{name}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, clip, RATE)
    for letter, code in EMODB_LETTERS.items():
        path = tmp_path / "emodb" / f"03a01{letter}a.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth_clip(code, 11, 1), RATE)
    recognizer = EmotionRecognizer.from_pretrained(str(trained.output_dir))
    tess = load_corpus(tmp_path / "tess")
    result = evaluate_across(recognizer, tess, decode_cache_dir=str(tmp_path / "dec"))
    assert result["labels"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert result["clips"] == 42 and result["left_out"] == [] and "calm" not in result["per_class_recall"]
    assert result["ua"] >= 0.4, result  # 7 classes: chance is 0.14; the emotions are in the pitch
    emodb = evaluate_across(recognizer, load_corpus(tmp_path / "emodb"), decode_cache_dir=str(tmp_path / "dec"))
    assert emodb["left_out"] == ["boredom"] and emodb["clips"] == 6 and "boredom" not in emodb["labels"]
    with pytest.raises(LabelMapError, match="share none"):
        evaluate_across(recognizer, restrict_labels(load_corpus(tmp_path / "emodb"), ["boredom"]))
