"""The `ser-hf` command and `accelerate launch examples/finetune.py`, run as real subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from conftest import RATE, synth_clip

from ser_hf import EmotionRecognizer
from ser_hf.labels import RAVDESS_EMOTIONS

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    env["HF_DATASETS_CACHE"] = str(tmp_path / "datasets-cache")
    env["HF_HOME"] = str(tmp_path / "hf-home")
    return env


def test_cli_predict_prints_one_json_line_per_file(trained, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(a, synth_clip(5, 7, 1), RATE)
    sf.write(b, synth_clip(2, 8, 2), RATE)
    model = str(trained.output_dir)
    result = subprocess.run(
        [sys.executable, "-m", "ser_hf", "predict", "--model", model, str(a), str(b)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(a), str(b)]
    expected = EmotionRecognizer.from_pretrained(model).predict([a, b])
    for line, prediction in zip(lines, expected, strict=True):
        assert line["label"] == prediction.label and set(line["scores"]) == set(RAVDESS_EMOTIONS)
        assert abs(line["score"] - prediction.score) < 1e-5
    assert result.stderr == ""  # quiet by default: no progress bars, no library warnings
    verbose = subprocess.run(
        [sys.executable, "-m", "ser_hf", "--verbose", "predict", "--model", model, str(a)],
        capture_output=True, text=True, env=_env(tmp_path), timeout=300,
    )  # fmt: skip
    assert verbose.returncode == 0 and "Loading weights" in verbose.stderr  # --verbose brings them back


def test_cli_reports_a_bad_file_and_goes_on(trained, tmp_path):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, synth_clip(5, 7, 1), RATE)
    bad.write_text("hello")
    result = subprocess.run(
        [sys.executable, "-m", "ser_hf", "predict", "--model", str(trained.output_dir), str(bad), str(good)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["file"] == str(bad) and "not readable" in first["error"]
    assert second["label"] in RAVDESS_EMOTIONS


def test_accelerate_launch_of_the_example(corpus_dir, tiny_wav2vec2, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
        str(ROOT / "examples" / "finetune.py"),
        "--model_name_or_path", tiny_wav2vec2,
        "--data_dir", str(corpus_dir),
        "--output_dir", str(out),
        "--test_actors", "7,8",
        "--eval_actors", "6",
        "--finetune_layers", "1",
        "--num_train_epochs", "2",
        "--learning_rate", "3e-3",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert 0.0 <= printed["test_ua"] <= 1.0 and "test_macro_f1" in printed
    assert f"model saved to {out}" in result.stdout  # the run ends by saying where the model is
    assert "phase 1, the probe" in result.stderr and "phase 2, the top 1 layer(s)" in result.stderr
    recognizer = EmotionRecognizer.from_pretrained(out)
    assert recognizer.predict(synth_clip(3, 7, 1)).label in RAVDESS_EMOTIONS
    assert (out / "test_results.json").exists() and not (out / "checkpoints").exists()


def test_train_subcommand_shares_the_example_flags(tiny_wav2vec2, corpus_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ser_hf", "train", "--help"], capture_output=True, text=True, env=_env(tmp_path)
    )
    assert result.returncode == 0
    for flag in ("--model_name_or_path", "--data_dir", "--test_actors", "--eval_actors", "--learning_rate",
                 "--finetune_layers", "--head", "--speaker_adaptive", "--data-dir"):  # fmt: skip
        assert flag in result.stdout
    assert "--strategy" not in result.stdout  # one pipeline, one set of options


def test_the_command_line_starts_without_the_heavy_libraries(tmp_path):
    """`ser-hf --help` and `import ser_hf` load torch, transformers and datasets only when a command needs them."""
    probe = (
        "import sys, ser_hf, ser_hf.cli\n"
        "try:\n    ser_hf.cli.main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert ser_hf.EmotionRecognizer.__module__ == 'ser_hf.recognizer' and 'torch' in sys.modules\n"
        "assert set(ser_hf.__all__) <= set(dir(ser_hf))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout
