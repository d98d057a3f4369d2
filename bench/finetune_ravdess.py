"""The main job as a new user runs it: ``make finetune`` from a cold cache, timed, with its output checked.

    python bench/finetune_ravdess.py --data_dir ../shared/data/ravdess-16k --model ../shared/models/whisper-tiny.en

Runs ``make finetune`` (``accelerate launch examples/finetune.py`` with the README's arguments: Whisper tiny.en,
RAVDESS, test actors 21-24, validation actors 19-20) with empty caches and a fresh output folder, and prints
its wall time, its test scores, how often it reported progress, and what it printed last. ``--args`` passes
extra flags (e.g. ``--args "--finetune_layers 1"``). On a GPU it also reports phase 2's throughput.

Exits 0 with a message when the data or model folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import environment, missing, table, target

ROOT = Path(__file__).resolve().parents[1]
SECONDS_TARGET, UA_TARGET = 300.0, 80.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--args", default="", help="Extra flags for examples/finetune.py.")
    args = parser.parse_args()
    if message := missing(args.data_dir, args.model):
        print(message)
        return 0
    print(environment())
    with tempfile.TemporaryDirectory(prefix="ser-hf-finetune-") as scratch:
        out = Path(scratch) / "out"
        env = dict(os.environ, HF_DATASETS_CACHE=str(Path(scratch) / "datasets"), HF_HUB_OFFLINE="1")
        command = [
            "make", "--no-print-directory", "finetune", f"DATA={Path(args.data_dir).resolve()}",
            f"MODEL={Path(args.model).resolve()}", f"OUT={out}", f"ARGS={args.args}",
        ]  # fmt: skip
        print("running:", " ".join(command))
        start = time.perf_counter()
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            print(run.stderr[-4000:])
            print(f"make finetune failed (exit {run.returncode})")
            return 1
        results = json.loads((out / "test_results.json").read_text())
        report = json.loads((out / "test_report.json").read_text())
        progress = [
            line for line in run.stderr.splitlines() if line.startswith(("prepared", "phase", "saved", "refit"))
        ]
        bars = run.stderr.count("examples/s]") + run.stderr.count("it/s]")
    last = [line for line in run.stdout.strip().splitlines() if line.strip()][-1]
    ua = 100 * results["test_ua"]
    print("\nprogress lines:\n  " + "\n  ".join(progress))
    print(f"\nlast line printed: {last}")
    rows = [
        ("test UA % (actors 21-24)", f"{ua:.1f}"),
        ("test WA %", f"{100 * results['test_wa']:.1f}"),
        ("test macro-F1 %", f"{100 * results['test_macro_f1']:.1f}"),
        (
            "adapted to each test actor, UA % (another protocol)",
            f"{100 * results.get('test_adapted_ua', float('nan')):.1f}",
        ),
        ("wall time (cold cache, install done)", f"{seconds:.0f} s"),
        ("phases", ", ".join(report["phases"])),
    ]
    phase2 = report["phases"].get("phase2")
    if phase2:
        rows.append(
            ("phase 2 validation UA by epoch", " ".join(f"{100 * v:.1f}" for v in phase2["validation_ua_by_epoch"]))
        )
    print("\n" + table(["make finetune", "value"], rows))
    print("\ntargets:")
    print(target(f"ends in <= {SECONDS_TARGET:.0f} s", seconds <= SECONDS_TARGET))
    print(target(f"test UA >= {UA_TARGET}", ua >= UA_TARGET))
    print(target("shows progress throughout", bool(progress) and bars > 0))
    print(target("ends by printing where the model is", "model saved to" in last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
