"""`accelerate launch` with two CPU processes (gloo): data-parallel phase 2 of the example, as a subprocess.

A small wrapper (written by the test) runs `examples/finetune.py` unchanged and records, per rank, the
clips each phase-2 training batch holds, how many clips each scoring sees, and every model save.
"""

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import synth_clip

from ser_hf import EmotionRecognizer, Prediction, SerHfError
from ser_hf.evaluation import flat_metrics

ROOT = Path(__file__).resolve().parents[1]
BATCH, PROCESSES, EPOCHS = 4, 2, 2
#: What a single-process run writes at the top of --output_dir (tests/test_cli_and_example.py runs one).
SINGLE_PROCESS_FILES = {
    "config.json", "model.safetensors", "preprocessor_config.json", "test_results.json", "test_report.json",
    "skipped_audio.json", "README.md", "layer_stats.py", "feature_extraction.py", "preparation.py",
}  # fmt: skip

RECORDER = r"""
import json, os, runpy, sys
from ser_hf import evaluation, recognizer, top_layers

log = open(os.path.join(os.environ["SER_HF_TEST_LOG"], f"rank{os.environ.get('RANK', '0')}.jsonl"), "a")

def record(kind, **data):
    log.write(json.dumps({"kind": kind, **data}) + "\n")
    log.flush()

collate = top_layers.CachedCollator.__call__  # phase 2's batches of cached inputs
def recording_collate(self, rows):
    if self.training:  # the training collator
        record("train_batch", clips=[[int(row["positions"]), int(row["labels"]), float(row["lower"].sum())] for row in rows])
    return collate(self, rows)
top_layers.CachedCollator.__call__ = recording_collate

score = evaluation.score
def recording_score(predictions, references, label_names):
    record("score", clips=len(references))
    return score(predictions, references, label_names)
evaluation.score = recording_score

save = recognizer.EmotionRecognizer.save_pretrained
def recording_save(self, folder, **kwargs):
    record("save_pretrained", folder=str(folder))
    return save(self, folder, **kwargs)
recognizer.EmotionRecognizer.save_pretrained = recording_save

sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _free_port() -> int:
    """A port nobody listens on now (other test runs may launch at the same time: not the default 29500)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(tmp_path: Path, model: str, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "log").mkdir(exist_ok=True)
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.update(
        HF_DATASETS_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"), SER_HF_TEST_LOG=str(tmp_path / "log")
    )
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(PROCESSES), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(recorder), str(ROOT / "examples" / "finetune.py"),
        "--model_name_or_path", model, "--data_dir", str(data), "--output_dir", str(out),
        "--test_actors", "7,8", "--eval_actors", "6",  # 80 training, 16 validation and 32 test clips
        "--finetune_layers", "1", "--refit", "false",
        "--num_train_epochs", str(EPOCHS), "--per_device_train_batch_size", str(BATCH),
        "--per_device_eval_batch_size", "5",  # 16 does not split evenly over 2 x 5: padding must be dropped
        "--learning_rate", "3e-3", "--disable_tqdm", "true", "--save_total_limit", "1",
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _records(tmp_path: Path, rank: int, kind: str) -> list[dict]:
    lines = (tmp_path / "log" / f"rank{rank}.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def test_two_cpu_processes_train_data_parallel(corpus_dir, corpus, tiny_wav2vec2, tmp_path):
    out = tmp_path / "out"
    result = _launch(tmp_path, tiny_wav2vec2, corpus_dir, out, "--use_cpu", "true")
    assert result.returncode == 0, result.stderr[-4000:]

    # Each clip once per epoch: the two ranks' batches of an epoch partition the training split.
    from ser_hf.arguments import arguments
    from ser_hf.trainer import EmotionTrainer

    local = EmotionTrainer(*arguments(model_name_or_path=model_path(tiny_wav2vec2), output_dir=str(tmp_path / "x"),
                                      finetune_layers="1", test_speakers="7,8", eval_speakers="6"), corpus=corpus)  # fmt: skip
    encoded = local.prepare()
    fit, _, _, _, _ = local.split_rows(encoded)
    lower = encoded.statistics[:, : encoded.keep_layer]
    expected = Counter(
        (int(encoded.positions[r]), int(encoded.labels[r]), round(float(lower[r].sum()), 2)) for r in fit
    )
    steps_per_epoch = len(fit) // (PROCESSES * BATCH)
    assert len(fit) == 80 and steps_per_epoch == 10
    batches = {rank: _records(tmp_path, rank, "train_batch") for rank in range(PROCESSES)}
    assert [len(batches[rank]) for rank in range(PROCESSES)] == [EPOCHS * steps_per_epoch] * PROCESSES
    for epoch in range(EPOCHS):
        seen = Counter()
        for rank in range(PROCESSES):
            for batch in batches[rank][epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]:
                assert len(batch["clips"]) == BATCH
                seen.update((n, label, round(total, 2)) for n, label, total in batch["clips"])
        assert seen == expected, f"epoch {epoch + 1}: clips seen twice or never"

    # Validation metrics are gathered across processes: every rank scores the whole validation split, each epoch
    # (epoch 0 is the probe), then the whole test split.
    for rank in range(PROCESSES):
        scored = [record["clips"] for record in _records(tmp_path, rank, "score")]
        assert scored == [16] * (EPOCHS + 1) + [32, 32], scored  # test: per clip, then adapted to each speaker
    report = json.loads((out / "test_report.json").read_text())
    assert sum(map(sum, report["confusion_matrix"])) == 32
    assert len(report["phases"]["phase2"]["validation_ua_by_epoch"]) == EPOCHS + 1

    # Only the main process writes the model (once, completely) and the reports.
    assert [len(_records(tmp_path, rank, "save_pretrained")) for rank in range(PROCESSES)] == [1, 0]
    assert not [p.name for p in tmp_path.rglob(".out.*")], "a staging folder was left behind"
    skipped = json.loads((out / "skipped_audio.json").read_text())
    assert (skipped["clips"], skipped["skipped"]) == (128, 0)

    # The results printed once, the files a single-process run writes, the checkpoints removed.
    printed = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    assert set(printed) == {f"test_{key}" for key in flat_metrics(report)} | {"test_adapted_ua"}
    assert result.stdout.count('"test_ua"') == 1
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written - {"confusion_matrix.png"} == SINGLE_PROCESS_FILES  # the card's figure needs matplotlib
    assert not (out / "checkpoints").exists()
    assert isinstance(EmotionRecognizer.from_pretrained(out).predict(synth_clip(4, 7, 1)), Prediction)


def model_path(path: str) -> str:
    return path


def test_a_cpu_launch_without_use_cpu_is_refused(tmp_path, monkeypatch):
    """Without --use_cpu each CPU process would train alone on everything and write the same folder."""
    if torch.cuda.is_available():
        pytest.skip("with GPUs the launch is data-parallel without --use_cpu")
    from ser_hf.arguments import SERTrainingArguments
    from ser_hf.trainer import check_launch

    # torchrun also sets RANK, LOCAL_RANK and MASTER_ADDR; without a peer process this sets the count alone.
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SerHfError, match="launched as 2 processes.*add --use_cpu true"):
        check_launch(SERTrainingArguments(output_dir=str(tmp_path)))
