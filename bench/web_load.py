"""Load check for the web page: N concurrent requests through the Gradio API, all must be answered.

    python bench/web_load.py --model out/best                       # a trained model
    python bench/web_load.py --backbone ../shared/models/whisper-tiny.en --data_dir ../shared/data/ravdess-16k

With ``--backbone`` the model is that encoder with a fresh (untrained) 8-emotion head and a 6 s window:
the answers are meaningless but the work per request is the real one. Clips come from ``--data_dir``
(RAVDESS FLAC files) or are synthesised. The server runs in this process on a free port; the script
first times requests one at a time (the baseline), then sends ``--requests`` at once, and prints
p50/p95 latency and the ratio to the baseline. Exits 0 with a message when no model is available.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from common import environment, table


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load_recognizer(args: argparse.Namespace):
    from ser_hf import EmotionRecognizer
    from ser_hf.labels import RAVDESS_EMOTIONS
    from ser_hf.modeling import is_whisper, load_backbone, shorten_whisper_window

    if args.model:
        return EmotionRecognizer.from_pretrained(args.model), f"model {args.model}"
    model, extractor = load_backbone(args.backbone, list(RAVDESS_EMOTIONS))
    if is_whisper(model):
        shorten_whisper_window(model, extractor, 6)
    return EmotionRecognizer(model, extractor), f"backbone {args.backbone} (untrained head: latency only)"


def clips(args: argparse.Namespace, folder: Path) -> list[Path]:
    """``--requests`` clip files: RAVDESS files spread over the actors, or synthetic tones."""
    data = Path(args.data_dir) if args.data_dir else None
    if data and data.is_dir():
        files = sorted(data.glob("Actor_*/*.flac"))
        if files:
            return [files[i * len(files) // args.requests] for i in range(args.requests)]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.requests):
        seconds = 3.0 + 2.0 * rng.random()
        t = np.arange(int(seconds * 16_000)) / 16_000
        tone = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(t.size)
        paths.append(folder / f"synthetic-{i:02d}.wav")
        sf.write(paths[-1], tone.astype(np.float32), 16_000)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Saved model folder (or Hub id).")
    parser.add_argument("--backbone", default="../shared/models/whisper-tiny.en", help="Used when --model is not.")
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--baseline_requests", type=int, default=5)
    parser.add_argument("--concurrency_limit", type=int, default=2, help="The app's analyses at once.")
    args = parser.parse_args()
    if not args.model and not Path(args.backbone).is_dir():
        print(f"no --model given and no backbone at {args.backbone}: nothing to measure")
        return 0

    print(environment())
    from gradio_client import Client, handle_file

    from ser_hf.web import launch

    recognizer, described = load_recognizer(args)
    port = free_port()
    app = launch(recognizer, port=port, block=False, concurrency_limit=args.concurrency_limit)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False)

    def request(path: Path) -> tuple[float, str | None]:
        start = time.perf_counter()
        try:
            message, label, _, _ = client.predict(handle_file(str(path)), api_name="/analyse")
            error = None if label else f"no result: {message}"
        except Exception as err:  # report, do not stop the run
            error = f"{type(err).__name__}: {err}"
        return time.perf_counter() - start, error

    with tempfile.TemporaryDirectory() as tmp:
        paths = clips(args, Path(tmp))
        request(paths[0])  # warm-up
        baseline = [request(p)[0] for p in paths[: args.baseline_requests]]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.requests) as pool:
            results = list(pool.map(request, paths))
        wall = time.perf_counter() - start
    app.close()

    latencies = [seconds for seconds, error in results if error is None]
    errors = [error for _, error in results if error is not None]
    base = statistics.median(baseline)
    print(f"\n## Web page under load: {described}\n")
    print(f"clips from {paths[0].parent}; app concurrency_limit={args.concurrency_limit}")
    print(f"baseline (one at a time, n={len(baseline)}): p50 {base:.3f} s\n")
    columns = ["requests at once", "answered", "errors", "p50 s", "p95 s", "max s", "wall s", "req/s"]
    row = [len(results), len(latencies), len(errors), f"{percentile(latencies, 50):.3f}"]
    row += [f"{percentile(latencies, 95):.3f}", f"{max(latencies, default=float('nan')):.3f}", f"{wall:.2f}"]
    print(table(columns, [[*row, f"{len(latencies) / wall:.2f}"]]))
    print(f"\np50 under load / baseline p50: {percentile(latencies, 50) / base:.1f}x")
    for error in errors[:5]:
        print("error:", error)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
