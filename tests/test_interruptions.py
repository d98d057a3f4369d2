"""Killed processes: training resumes from the last complete checkpoint; a save is the old or the new model.

Every kill here is a real SIGKILL of a real child process. Where the kill must land at one exact
point of a save, the child (a script written by the test) pauses there and says so; nothing in
ser-hf is replaced, only slowed down.
"""

import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import synth_clip

from ser_hf import EmotionRecognizer, Prediction, SerHfError
from ser_hf.labels import RAVDESS_EMOTIONS
from ser_hf.modeling import load_backbone

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env["HF_DATASETS_CACHE"] = str(tmp_path / "datasets-cache")
    env["HF_HOME"] = str(tmp_path / "hf-home")
    return env


def _wait_for(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the child ended (rc {process.returncode}) before the kill:\n{process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.02)


def _kill(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return out, err


# --------------------------------------------------------------------------- training killed mid-epoch
TRAIN_STEPS = 20  # phase 2 on 80 training clips, batch 4, 1 epoch


def _finetune_command(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "examples" / "finetune.py"),
        "--model_name_or_path", model, "--data_dir", str(data), "--output_dir", str(out),
        "--test_actors", "7,8", "--eval_actors", "6",  # 5 training actors x 16 clips = 80 clips
        "--finetune_layers", "1", "--num_train_epochs", "1", "--per_device_train_batch_size", "4",  # 20 steps
        "--save_strategy", "steps", "--save_steps", "3", "--save_total_limit", "2", "--keep_checkpoints", "true",
        "--eval_strategy", "no",
        "--logging_steps", "1", "--learning_rate", "3e-3", "--disable_tqdm", "true", "--seed", "0",
        *extra,
    ]  # fmt: skip


def _complete_checkpoints(out: Path) -> list[Path]:
    found = [
        Path(p).parent
        for p in glob.glob(str(out / "checkpoints" / "selection" / "checkpoint-*" / "trainer_state.json"))
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _steps_run(log: str) -> int:
    """Optimisation steps a run performed: with logging_steps=1 the Trainer prints one loss line each (stderr)."""
    return sum(line.startswith("{'loss'") for line in log.splitlines())


def test_finetune_killed_mid_epoch_resumes_from_the_last_checkpoint(corpus_dir, tiny_wav2vec2, tmp_path):
    out, env = tmp_path / "out", _env(tmp_path)
    run = lambda *extra: subprocess.Popen(  # noqa: E731
        _finetune_command(tiny_wav2vec2, corpus_dir, out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip

    # 1. Killed as soon as a first checkpoint is complete: in the middle of the first epoch.
    first = run()
    _wait_for(first, lambda: _complete_checkpoints(out))
    _kill(first)
    resume_at = _complete_checkpoints(out)[-1]
    state = json.loads((resume_at / "trainer_state.json").read_text())
    assert 0 < state["epoch"] < 1 and state["global_step"] < TRAIN_STEPS
    # A kill during a checkpoint save leaves a folder with partial weights and no trainer state.
    broken = resume_at.parent / f"checkpoint-{state['global_step'] + 1}"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((resume_at / "model.safetensors").read_bytes()[:1000])

    # 2. Rerun as it was: resumes automatically from the last complete checkpoint; killed again later.
    second = run()
    _wait_for(second, lambda: int(_complete_checkpoints(out)[-1].name.split("-")[1]) > state["global_step"])
    _, second_err = _kill(second)
    assert f"Skipping {broken}: not a complete checkpoint" in second_err
    assert f"Resuming from {resume_at}" in second_err
    again_at = _complete_checkpoints(out)[-1]
    again_step = json.loads((again_at / "trainer_state.json").read_text())["global_step"]
    assert again_step > state["global_step"]
    assert _steps_run(second_err) >= again_step - state["global_step"]  # it went on from there, not from 0

    # 3. Resumed explicitly with --resume_from_checkpoint: runs exactly the remaining steps.
    third = subprocess.run(
        _finetune_command(tiny_wav2vec2, corpus_dir, out, "--resume_from_checkpoint", str(again_at)),
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    assert _steps_run(third.stderr) == TRAIN_STEPS - again_step
    final = json.loads((_complete_checkpoints(out)[-1] / "trainer_state.json").read_text())
    assert final["global_step"] == TRAIN_STEPS
    losses = [entry["step"] for entry in final["log_history"] if "loss" in entry]
    assert losses == list(range(1, TRAIN_STEPS + 1))  # every step logged once across the three runs

    recognizer = EmotionRecognizer.from_pretrained(out)
    assert isinstance(recognizer.predict(synth_clip(3, 7, 1)), Prediction)
    assert json.loads((out / "test_results.json").read_text())["test_ua"] >= 0


def test_an_incomplete_checkpoint_is_refused_by_name(corpus_dir, tiny_wav2vec2, tmp_path):
    from ser_hf.trainer import finetune

    broken = tmp_path / "out" / "checkpoints" / "selection" / "checkpoint-3"
    broken.mkdir(parents=True)
    with pytest.raises(SerHfError, match="checkpoint-3: not a complete checkpoint"):
        finetune(tiny_wav2vec2, str(corpus_dir), output_dir=str(tmp_path / "out"), resume_from_checkpoint=str(broken))


# --------------------------------------------------------------------------- a save killed midway
#: A child that saves "model" folders through ser_hf/atomic.py alone (loaded by path: no torch to import,
#: so it starts in a blink). Version v is a config.json saying v and weights whose every byte is v.
ATOMIC_CHILD = r"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
target, stage, version, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def pause(where):
    print("PAUSED", where, flush=True)
    time.sleep(600)

def after(function, where, when=lambda *a: True):
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        if when(*args):
            pause(where)
        return result
    return wrapped

if stage == "swap":  # everything staged and linked, right before the exchange
    original = atomic._swap_in
    atomic._swap_in = lambda staged, target: (pause(stage), original(staged, target))
elif stage == "aside":  # no atomic exchange on this system: between the two renames
    atomic.exchange = lambda a, b: False
    atomic._move_aside = after(atomic._move_aside, stage)
elif stage == "merge":  # no hard links on this file system: files moved in one by one, config.json removed
    atomic._keep_others = lambda target, staged: False
    atomic._fsync_dir = after(atomic._fsync_dir, stage, lambda path: str(path) == str(atomic.Path(target).absolute()))

while True:  # until killed
    version += 1
    with atomic.atomic_directory(target) as staged:
        (staged / "config.json").write_text(json.dumps({"version": version}))
        with open(staged / "model.safetensors", "wb") as f:
            f.write(bytes([version % 256]) * (size // 2))
            if stage == "writing":
                f.flush()
                pause(stage)
            f.write(bytes([version % 256]) * (size - size // 2))
        (staged / "preprocessor_config.json").write_text(json.dumps({"version": version}))
    print("SAVED", version, flush=True)
"""


def _fake_version(folder: Path) -> int:
    """The version a fake model folder holds; every file must come from the same save."""
    version = json.loads((folder / "config.json").read_text())["version"]
    assert json.loads((folder / "preprocessor_config.json").read_text())["version"] == version
    weights = (folder / "model.safetensors").read_bytes()
    assert weights and set(weights) == {version % 256}, "files of different saves"
    return version


def _make_target(tmp_path: Path, layout: str, version: int = 7) -> Path:
    target = tmp_path / "out"
    target.mkdir()
    (target / "config.json").write_text(json.dumps({"version": version}))
    (target / "preprocessor_config.json").write_text(json.dumps({"version": version}))
    (target / "model.safetensors").write_bytes(bytes([version]) * 1000)
    if layout == "output_dir":  # a training output folder: the model at the top, beside checkpoints and metrics
        (target / "checkpoint-7").mkdir()
        (target / "checkpoint-7" / "trainer_state.json").write_text('{"global_step": 7}')
        (target / "test_results.json").write_text('{"test_ua": 0.5}')
    return target


def _others_intact(target: Path, layout: str) -> None:
    if layout == "output_dir":
        assert json.loads((target / "checkpoint-7" / "trainer_state.json").read_text()) == {"global_step": 7}
        assert json.loads((target / "test_results.json").read_text()) == {"test_ua": 0.5}


def _atomic_child(tmp_path: Path, target: Path, stage: str, size: int = 100_000) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(ATOMIC_CHILD)
    command = [sys.executable, str(script), str(ROOT / "ser_hf" / "atomic.py"), str(target), stage, "7", str(size)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out"))


@pytest.mark.parametrize(
    ("layout", "stage"),
    [
        ("plain", "writing"),
        ("output_dir", "writing"),
        ("output_dir", "swap"),
        ("plain", "aside"),
        ("output_dir", "aside"),
    ],
)
def test_a_save_killed_midway_leaves_the_old_model(tmp_path, layout, stage):
    from ser_hf.atomic import atomic_directory, recover

    target = _make_target(tmp_path, layout)
    child = _atomic_child(tmp_path, target, stage)
    assert child.stdout.readline().strip() == f"PAUSED {stage}", child.stderr.read()
    _kill(child)
    assert _leftovers(tmp_path)  # the killed save left its staging (or the old folder) behind
    if stage == "aside":  # killed between the two renames of the fallback swap: the old folder is aside
        assert not target.exists()
        assert recover(target, clean=False) == target.absolute()  # what loading and saving do first
    assert _fake_version(target) == 7
    _others_intact(target, layout)
    with atomic_directory(target) as staged:  # the next save cleans up after the killed one
        (staged / "config.json").write_text('{"version": 9}')
    assert _leftovers(tmp_path) == []
    _others_intact(target, layout)
    assert not (target / "model.safetensors").exists()  # the new model's files replace the old ones as a set


def test_a_file_by_file_merge_killed_midway_is_refused_not_mixed(tmp_path):
    """Without hard links the model files move in one by one; config.json goes first and comes back last."""
    target = _make_target(tmp_path, "output_dir")
    child = _atomic_child(tmp_path, target, "merge")
    assert child.stdout.readline().strip() == "PAUSED merge", child.stderr.read()
    _kill(child)
    with pytest.raises(SerHfError, match="holds weights but no config.json .an interrupted save"):
        EmotionRecognizer.from_pretrained(target)
    _others_intact(target, "output_dir")


@pytest.mark.parametrize("layout", ["plain", "output_dir"])
def test_saves_killed_at_random_moments_are_always_whole(tmp_path, layout):
    target = _make_target(tmp_path, layout)
    rng = random.Random(os.getpid())
    for _ in range(4):
        child = _atomic_child(tmp_path, target, "loop", size=4_000_000)
        first = child.stdout.readline().split()
        assert first[0] == "SAVED", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.2))
        out, _ = _kill(child)
        last = int(([first] + [line.split() for line in out.splitlines()])[-1][1])
        assert _fake_version(target) in (last, last + 1)  # the last complete save, or the one being made
        _others_intact(target, layout)


def test_a_real_model_save_killed_at_random_still_loads(tiny_wav2vec2, tmp_path):
    """End to end: EmotionRecognizer.save_pretrained into a training output folder, killed mid-loop."""
    model, feature_extractor = load_backbone(tiny_wav2vec2, list(RAVDESS_EMOTIONS))
    target = tmp_path / "out"
    EmotionRecognizer(model, feature_extractor, device="cpu").save_pretrained(target)
    (target / "checkpoint-7").mkdir()
    (target / "checkpoint-7" / "trainer_state.json").write_text('{"global_step": 7}')
    script = tmp_path / "save_loop.py"
    script.write_text(
        "import sys, torch\n"
        "from ser_hf import EmotionRecognizer\n"
        "rec = EmotionRecognizer.from_pretrained(sys.argv[1], device='cpu')\n"
        "for version in range(1, 10_000):\n"
        "    rec.model.config.ser_hf_test_version = version\n"
        "    with torch.no_grad():\n"
        "        rec.model.classifier.bias.fill_(float(version))\n"
        "    rec.save_pretrained(sys.argv[1])\n"
        "    print('SAVED', version, flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, str(script), str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
    )  # fmt: skip
    first = child.stdout.readline().split()
    assert first[:1] == ["SAVED"], child.stderr.read()
    time.sleep(random.uniform(0.0, 0.1))
    out, _ = _kill(child)
    last = int(([first] + [line.split() for line in out.splitlines()])[-1][1])
    recognizer = EmotionRecognizer.from_pretrained(target, device="cpu")
    version = recognizer.model.config.ser_hf_test_version
    assert version in (last, last + 1)
    assert torch.all(recognizer.model.classifier.bias == float(version)), "config and weights of different saves"
    assert isinstance(recognizer.predict(synth_clip(2, 1, 1)), Prediction)
    assert (target / "checkpoint-7" / "trainer_state.json").exists()


def test_loading_puts_back_a_model_left_aside(tiny_wav2vec2, tmp_path):
    """A kill between the two renames of the fallback swap leaves the old model aside; loading restores it."""
    model, feature_extractor = load_backbone(tiny_wav2vec2, list(RAVDESS_EMOTIONS))
    target = EmotionRecognizer(model, feature_extractor, device="cpu").save_pretrained(tmp_path / "model")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.rename(target, tmp_path / f".model.old-{socket.gethostname()}-{int(dead.stdout)}-abc123")
    assert isinstance(EmotionRecognizer.from_pretrained(target).predict(synth_clip(2, 1, 1)), Prediction)
