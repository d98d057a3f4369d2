"""CPU inference: transformers pipeline vs EmotionRecognizer (PyTorch) vs ONNX int8; timeline memory and speed.

    flock /tmp/ser-hf-bench.lock python bench/inference.py --data_dir ../shared/data/ravdess-16k \
        --whisper ../shared/models/whisper-tiny.en [--trained_model runs/bench-finetune] [--clips 48]

Prints, in one run, for the Whisper tiny.en encoder (a fine-tuned folder when --trained_model exists,
else the shared encoder with a random head and ser-hf's 6 s window) and a wav2vec2-base-sized random
model: clips/s, real-time factor (wall / audio seconds) and achieved GFLOP/s (FLOPs counted with
torch.utils.flop_counter) beside this machine's fp32 matmul peak, for
  (a) transformers.pipeline("audio-classification"),
  (b) EmotionRecognizer.predict (PyTorch): exact (no trimming) and with silence trimming,
  (c) the same on the ONNX Runtime int8 export;
then peak RSS and real-time factor of predict_timeline on a generated 1-hour 16 kHz file (child process).
Speed figures are ratios against the pipeline measured in the same run. Exits 0 when the data are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from common import environment, missing, table

RATE = 16_000
TEST_ACTORS = (21, 22, 23, 24)


@dataclass
class Run:
    """One inference path over the clip set."""

    name: str
    wall: float
    labels: list[str]
    scores: list[dict[str, float]]
    flops: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- machine
def matmul_peak_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """Best fp32 GFLOP/s of square matmuls over a few timed bursts (torch, all intra-op threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(8):
            a @ b
        best = max(best, 8 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


# ---------------------------------------------------------------------------------------------- data
def pick_clips(data_dir: Path, count: int) -> list[Path]:
    """``count`` clips spread evenly over the sorted test-actor files (fixed, balanced across emotions)."""
    files = sorted(p for actor in TEST_ACTORS for p in (data_dir / f"Actor_{actor:02d}").glob("*.flac"))
    if count >= len(files):
        return files
    return [files[int(i * len(files) / count)] for i in range(count)]


def true_label(path: Path) -> str:
    from ser_hf.labels import RAVDESS_EMOTIONS

    return RAVDESS_EMOTIONS[int(path.name.split("-")[2]) - 1]


def unweighted_recall(predicted: list[str], files: list[Path], labels: list[str]) -> float:
    from ser_hf.evaluation import score

    index = {label: i for i, label in enumerate(labels)}
    return float(score([index[p] for p in predicted], [index[true_label(f)] for f in files], labels)["ua"])


# ---------------------------------------------------------------------------------------------- models
def wav2vec2_base_random(folder: Path) -> Path:
    """wav2vec2-base dimensions (12 x 768, 7-layer CNN, group norm: no attention mask), random weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    from ser_hf.labels import RAVDESS_EMOTIONS

    torch.manual_seed(0)
    id2label = dict(enumerate(RAVDESS_EMOTIONS))
    config = Wav2Vec2Config(num_labels=8, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)
    return folder


def whisper_model(args: argparse.Namespace, folder: Path) -> tuple[Path, str]:
    """The fine-tuned Whisper folder if given, else the shared encoder with a random head and a 6 s window."""
    if args.trained_model:
        trained = Path(args.trained_model)
        if not (trained / "config.json").exists():
            from transformers.trainer_utils import get_last_checkpoint

            last = get_last_checkpoint(str(trained)) if trained.is_dir() else None
            trained = Path(last) if last else trained
        if (trained / "config.json").exists():
            return trained, f"fine-tuned ({trained})"
        print(f"note: --trained_model {args.trained_model} holds no model; using a random head")
    from ser_hf.labels import RAVDESS_EMOTIONS
    from ser_hf.modeling import load_backbone, shorten_whisper_window

    torch.manual_seed(0)
    model, extractor = load_backbone(args.whisper, list(RAVDESS_EMOTIONS))
    shorten_whisper_window(model, extractor, 6)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder, "shared encoder + random head, 6 s window"


def flops_per_clip(model_dir: Path, lengths: list[int]) -> list[float]:
    """Forward FLOPs per clip, counted by FlopCounterMode on meta tensors (no arithmetic is run).

    Fixed-window models cost the same for every clip. For the others the count is exact at three
    lengths and interpolated with a quadratic in the length (attention is quadratic, the rest linear).
    """
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    from ser_hf.features import AudioCollator, is_fixed_window, min_input_samples

    config = AutoConfig.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForAudioClassification.from_config(config).eval()
    collator = AudioCollator(extractor, min_samples=min_input_samples(config))

    def count(samples: int) -> float:
        batch = collator.encode([np.full(samples, 0.01, np.float32)])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(**{k: v.to("meta") for k, v in batch.items()})
        return float(counter.get_total_flops())

    if is_fixed_window(extractor):
        return [count(RATE)] * len(lengths)
    points = np.array([min(lengths), int(np.median(lengths)), max(lengths)], dtype=np.float64)
    points = np.unique(points)
    values = [count(int(p)) for p in points]
    fit = np.polyfit(points, values, deg=min(2, len(points) - 1))
    return [float(np.polyval(fit, n)) for n in lengths]


# ---------------------------------------------------------------------------------------------- runs
def run_pipeline(model_dir: Path, files: list[Path], flops: list[float]) -> Run:
    """transformers' pipeline, one file at a time (its default), on paths if it can decode them."""
    from transformers import pipeline

    classify = pipeline("audio-classification", model=str(model_dir), top_k=None, device="cpu")
    try:
        classify(str(files[0]))
        on_paths, note = True, "file paths"
    except Exception as err:
        on_paths = False
        note = (
            f"pipeline(path) fails here ({type(err).__name__}: {str(err).splitlines()[0]}): it decodes paths "
            "with an ffmpeg subprocess; timed instead on soundfile-decoded arrays (decode time included)"
        )

    def one(path: Path) -> list[dict[str, Any]]:
        if on_paths:
            return classify(str(path))
        samples, rate = sf.read(path, dtype="float32")
        return classify({"raw": samples, "sampling_rate": rate})

    one(files[0])  # warm-up
    start = time.perf_counter()
    outputs = [one(f) for f in files]
    wall = time.perf_counter() - start
    scores = [{item["label"]: float(item["score"]) for item in out} for out in outputs]
    return Run("(a) pipeline", wall, [out[0]["label"] for out in outputs], scores, sum(flops), note)


def with_trimming(recognizer: Any, trim: bool) -> Any:
    """The same model, its clips cut of leading and trailing silence or not (loudness as the model's own)."""
    from ser_hf import EmotionRecognizer
    from ser_hf.feature_extraction import SERFeatureExtractor, base_extractor

    loudness = getattr(recognizer.feature_extractor, "loudness_db", None)
    extractor = SERFeatureExtractor(base_extractor(recognizer.feature_extractor), trim=trim, loudness_db=loudness)
    return EmotionRecognizer(recognizer.model, extractor, device=recognizer.device)


def run_recognizer(name: str, recognizer: Any, files: list[Path], flops: list[float], *, trim: bool) -> Run:
    recognizer = with_trimming(recognizer, trim)
    recognizer.predict([str(f) for f in files[:2]])  # warm-up
    start = time.perf_counter()
    predictions = recognizer.predict([str(f) for f in files])
    wall = time.perf_counter() - start
    return Run(name, wall, [p.label for p in predictions], [dict(p.scores) for p in predictions], sum(flops))


def agreement(a: Run, b: Run) -> float:
    return float(np.mean([x == y for x, y in zip(a.labels, b.labels, strict=True)]))


def max_score_difference(a: Run, b: Run) -> float:
    return max(abs(x[k] - y[k]) for x, y in zip(a.scores, b.scores, strict=True) for k in x)


def bench_model(
    title: str, model_dir: Path, files: list[Path], work: Path, peak: float, trained: bool
) -> dict[str, Any]:
    from ser_hf import EmotionRecognizer
    from ser_hf.preparation import trim_silence

    recognizer = EmotionRecognizer.from_pretrained(model_dir, device="cpu")
    decoded = [recognizer.load(str(f)) for f in files]
    seconds = sum(w.size for w in decoded) / RATE
    lengths = [w.size for w in decoded]
    trimmed = [trim_silence(w, RATE).size for w in decoded]
    start = time.perf_counter()
    flops = flops_per_clip(model_dir, lengths + trimmed)
    flops_full, flops_trimmed = flops[: len(files)], flops[len(files) :]
    count_time = time.perf_counter() - start

    runs = [run_pipeline(model_dir, files, flops_full)]
    runs.append(run_recognizer("(b) predict, exact", recognizer, files, flops_full, trim=False))
    runs.append(run_recognizer("(b) predict, trimmed", recognizer, files, flops_trimmed, trim=True))
    start = time.perf_counter()
    onnx_dir = recognizer.export_onnx(work / f"{model_dir.name}-onnx-int8", quantize="int8")
    export_time = time.perf_counter() - start
    onnx = EmotionRecognizer.from_pretrained(onnx_dir)
    runs.append(run_recognizer("(c) onnx int8, exact", onnx, files, flops_full, trim=False))
    runs.append(run_recognizer("(c) onnx int8, trimmed", onnx, files, flops_trimmed, trim=True))
    by_name = {r.name: r for r in runs}
    pipeline_run = runs[0]

    print(f"\n## {title}\n")
    print(f"- model: {model_dir}")
    print(f"- clips: {len(files)} ({seconds:.1f} s of audio; {sum(trimmed) / RATE:.1f} s after trimming)")
    print(f"- FLOPs per clip (mean): {np.mean(flops_full) / 1e9:.2f} G untrimmed, {np.mean(flops_trimmed) / 1e9:.2f} G")
    print(f"  trimmed (FlopCounterMode on meta tensors, {count_time:.1f} s); ONNX int8 export took {export_time:.1f} s")
    print(f"- (a): {pipeline_run.note}")
    print()
    header = ["path", "wall s", "clips/s", "RTF", "x (a)", "GFLOP/s", "% of the fp32 peak", "top-1 = (a)"]
    header += ["max Δp vs (a)"] + (["UA"] if trained else [])
    rows = []
    for run in runs:
        gflops = run.flops / run.wall / 1e9
        row = [run.name, f"{run.wall:.1f}", f"{len(files) / run.wall:.2f}", f"{run.wall / seconds:.3f}"]
        row += [f"{pipeline_run.wall / run.wall:.2f}", f"{gflops:.0f}", f"{100 * gflops / peak:.0f}"]
        row += [f"{100 * agreement(run, pipeline_run):.1f}%", f"{max_score_difference(run, pipeline_run):.1e}"]
        if trained:
            row.append(f"{100 * unweighted_recall(run.labels, files, recognizer.labels):.1f}")
        rows.append(row)
    print(table(header, rows))
    exact, trim = by_name["(b) predict, exact"], by_name["(b) predict, trimmed"]
    onnx_exact, onnx_trim = by_name["(c) onnx int8, exact"], by_name["(c) onnx int8, trimmed"]
    summary = {
        "b_exact_over_a": pipeline_run.wall / exact.wall,
        "b_trimmed_over_a": pipeline_run.wall / trim.wall,
        "c_over_b_exact": exact.wall / onnx_exact.wall,
        "c_over_b_trimmed": trim.wall / onnx_trim.wall,
        "c_agreement_exact": agreement(onnx_exact, exact),
        "c_agreement_trimmed": agreement(onnx_trim, trim),
    }
    print(
        f"\n(b) exact vs (a): {summary['b_exact_over_a']:.2f}x, top labels {100 * agreement(exact, pipeline_run):.1f}% "
        f"equal, max prob. difference {max_score_difference(exact, pipeline_run):.1e}; (b) trimmed vs (a): "
        f"{summary['b_trimmed_over_a']:.2f}x"
    )
    print(
        f"(c) vs (b): {summary['c_over_b_exact']:.2f}x exact ({100 * summary['c_agreement_exact']:.1f}% top-label "
        f"agreement), {summary['c_over_b_trimmed']:.2f}x trimmed ({100 * summary['c_agreement_trimmed']:.1f}%)"
    )
    if trained:
        ua = {r.name: unweighted_recall(r.labels, files, recognizer.labels) for r in runs}
        summary["ua"] = ua
        print(
            f"UA on these clips: trimming {100 * (ua['(b) predict, trimmed'] - ua['(b) predict, exact']):+.1f} "
            f"points, ONNX int8 {100 * (ua['(c) onnx int8, exact'] - ua['(b) predict, exact']):+.1f} points (exact), "
            f"{100 * (ua['(c) onnx int8, trimmed'] - ua['(b) predict, trimmed']):+.1f} points (trimmed)"
        )
    summary["onnx_dir"] = str(onnx_dir)
    return summary


# ------------------------------------------------------------------------------------------ timeline
def write_long_file(path: Path, data_dir: Path, minutes: float) -> float:
    """RAVDESS clips (all actors, in order, repeated) back to back, written block by block (16-bit WAV)."""
    clips = sorted(data_dir.glob("Actor_*/*.flac"))
    target, written = int(minutes * 60 * RATE), 0
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as out:
        while written < target:
            for clip in clips:
                samples, _ = sf.read(clip, dtype="float32")
                samples = samples[: target - written]
                out.write(samples)
                written += samples.size
                if written >= target:
                    break
    return written / RATE


TIMELINE_CHILD = """
import json, sys, time
from ser_hf import EmotionRecognizer
model, path, window, hop = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
recognizer = EmotionRecognizer.from_pretrained(model, device="cpu")
start = time.perf_counter()
segments = recognizer.predict_timeline(path, segmentation="windows", window_seconds=window, hop_seconds=hop)
wall = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"wall": wall, "segments": len(segments), "silent": sum(s.silent for s in segments),
                  "backend": recognizer.backend, "vmhwm_kb": int(status["VmHWM"].split()[0])}))
"""


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` in a fresh process (its own memory high-water mark, read from /proc)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def bench_timeline(
    model_dirs: dict[str, Path], long_file: Path, seconds: float, window: float | None, hop: float
) -> None:
    shown = "the default window" if window is None else f"{window:g} s windows"
    print(f"\n## predict_timeline on a {seconds / 60:.0f}-minute 16 kHz file ({shown}, {hop:g} s hop), child process\n")
    # VmHWM, read by the child itself: wait4's ru_maxrss would count the parent's memory copied at fork.
    rows = []
    for name, folder in model_dirs.items():
        child = run_child(TIMELINE_CHILD, str(folder), str(long_file), json.dumps(window), str(hop))
        if child.returncode != 0:
            problem = str((child.stderr.strip().splitlines() or [child.returncode])[-1]).replace("|", "/")
            rows.append([name, f"failed: {problem}", "", "", "", "", ""])
            continue
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append([name, result["backend"], f"{result['wall']:.1f}", f"{result['wall'] / seconds:.4f}",
                     result["segments"], result["silent"], f"{result['vmhwm_kb'] / 1024:.0f}"])  # fmt: skip
    header = ["model", "backend", "wall s", "RTF", "segments", "silent", "peak RSS of the process (VmHWM, MiB)"]
    print(table(header, rows))


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--whisper", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--trained_model", default=None, help="A fine-tuned Whisper folder (UA and agreement).")
    parser.add_argument("--clips", type=int, default=48, help="Test-actor clips timed per model.")
    parser.add_argument("--timeline_minutes", type=float, default=60.0)
    parser.add_argument("--timeline_window", type=float, default=None, help="Seconds (default: the library's).")
    parser.add_argument("--timeline_hop", type=float, default=1.0, help="Seconds between window starts.")
    parser.add_argument(
        "--timeline_backends",
        default="pytorch,onnx-int8",
        help="Which Whisper backends run the long-file timeline (comma-separated; empty: none).",
    )
    parser.add_argument("--skip_wav2vec2", action="store_true")
    parser.add_argument("--skip_clips", action="store_true", help="Only the long-file timeline (Whisper).")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    if message := missing(data_dir, args.whisper):
        print(message)
        return 0

    import onnxruntime

    run_start = time.perf_counter()
    print(environment())
    peak = matmul_peak_gflops()
    print("\n# ser-hf CPU inference\n")
    print(f"- onnxruntime {onnxruntime.__version__}; torch {torch.get_num_threads()} threads")
    print(f"- fp32 matmul peak (torch, 1024x1024, best burst): {peak:.0f} GFLOP/s")
    files = pick_clips(data_dir, args.clips)
    summaries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ser-hf-bench-") as tmp:
        work = Path(tmp)
        whisper_dir, origin = whisper_model(args, work / "whisper-tiny")
        if args.skip_clips:
            from ser_hf import EmotionRecognizer

            onnx_dir = EmotionRecognizer.from_pretrained(whisper_dir, device="cpu").export_onnx(
                work / "whisper-onnx-int8", quantize="int8"
            )
            summaries["whisper"] = {"onnx_dir": str(onnx_dir)}
        else:
            summaries["whisper"] = bench_model(
                f"Whisper tiny.en encoder: {origin}", whisper_dir, files, work, peak, trained="fine-tuned" in origin
            )
        if not args.skip_wav2vec2 and not args.skip_clips:
            w2v_dir = wav2vec2_base_random(work / "wav2vec2-base-random")
            summaries["wav2vec2"] = bench_model(
                "wav2vec2-base-sized, random init", w2v_dir, files, work, peak, trained=False
            )
        backends = [b for b in args.timeline_backends.split(",") if b]
        if backends and args.timeline_minutes > 0:
            long_file = work / "long.wav"
            seconds = write_long_file(long_file, data_dir, args.timeline_minutes)
            dirs = {"pytorch": whisper_dir, "onnx-int8": Path(summaries["whisper"]["onnx_dir"])}
            bench_timeline(
                {f"Whisper tiny ({b})": dirs[b] for b in backends},
                long_file,
                seconds,
                args.timeline_window,
                args.timeline_hop,
            )
    print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"total benchmark time: {time.perf_counter() - run_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
