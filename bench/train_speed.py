"""Training throughput of ser-hf's training loop: each speed lever, its defaults, its all-off baseline, and a
reference-like row, on the same model, data and machine, in one run.

    flock /tmp/ser-hf-bench.lock python bench/train_speed.py --data_dir ../shared/data/ravdess-16k \
        --whisper ../shared/models/whisper-tiny.en

Models: (a) a wav2vec2-base-sized random-init model (`Wav2Vec2Config()` defaults: 12 layers, 768 hidden;
speed does not depend on the weights) saved with a wav2vec2-base-like feature extractor, and (b) the
Whisper tiny.en encoder. Every ser-hf row goes through `run_training` (`SERTrainer`), batch 8, CNN frozen.

How a row is measured (each row is a fresh Python process, so peak RSS is its own):
- Training data: a fixed random subset of 8 x steps clips of the training actors (1-18), plus one clip of a
  test actor so the speaker split is valid. The run does 1 warm-up step and then ``steps`` timed steps, so
  the timed window covers every batch position of an epoch exactly once (positions 2..steps of epoch 1
  and position 1 of epoch 2): an unbiased epoch estimate for a shuffled or length-grouped sampler. On so
  small a subset `group_by_length` can only sort within megabatches of 16 clips (transformers' rule),
  while a real epoch over 1080 clips sorts megabatches of 264: the "full-epoch padding" table shows what
  that lever does on the real training split.
- clips/s = 8 x steps / wall time of the timed steps (data loading, forward, backward, optimizer).
- FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts the warm-up step (forward + backward, any
  recomputation included; with every layer on, then LayerDrop's expected skips subtracted: wav2vec2's
  default config drops each layer with p = 0.1 in training) and is scaled to the timed steps by their
  padded input length.
- Time before the first step: a separate run of `run_training` on the whole corpus with the default
  splits and a warm decode cache, from the call to the first training step (imports not included; they
  are printed beside it).
- On a CUDA GPU the rows train on the GPU (the Trainer's choice), the step clock is read after
  `torch.cuda.synchronize()`, the matmul peak is the GPU's (8192^3 `torch.mm`, fp32 at torch's default
  float32 matmul precision and bf16), and each row also reports its peak GPU memory
  (`torch.cuda.max_memory_allocated`).

The reference-like row emulates transformers' examples/pytorch/audio-classification/run_audio_classification.py
(plain `Trainer`, random sampler, attention mask on, padding to the longest clip, no trimming) with its data
path: every step decodes the clips again. torchcodec/FFmpeg are not installed here, so it decodes 48 kHz
16-bit WAV copies of the same clips (upsampled from the shared 16 kHz FLAC into a temporary folder) with
soundfile and resamples them to 16 kHz with soxr on every step, which is close to, but not, its decoder.
For Whisper it feeds the feature extractor's full 30 s window (what the script does: ser-hf shortens the
window to the longest training clip) and, since the script's `freeze_feature_encoder()` does not exist on
`WhisperForAudioClassification`, it freezes the two input convolutions by hand as ser-hf does, so that
every row trains the same parameters.

"all levers off" switches off every lever, "levers that change the computation off" only those that change
what is computed (length grouping, trimming, bf16, frozen layers, gradient checkpointing, compilation): it
keeps SDPA attention (the reference script's default too) and fast dropout (`ser_hf.fast_dropout`: masks
with the same keep probability drawn from fewer random bits), which change only how it runs, and the cache of
the frozen CNN front end's outputs (`ser_hf.front_end`, `--cache_front_end`; not Whisper, which has none),
the issue's "for frozen parts, their outputs" cached. Each clip is encoded alone, so for wav2vec2-base's
group-normalised front end the cached features are the clip's own, where a padded batch would normalise
over its padding too. The first row that uses the cache fills it for the rows' clips, before its first step.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Benchmark the checkout this script lives in (not whichever ser-hf is installed).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 8
RATE = 16_000
#: The issue's reference figure: run_audio_classification.py, wav2vec2-base-sized, batch 8, CNN frozen, 2 cores.
QUOTED_REFERENCE_CLIPS_PER_S = (0.8, 1.0)
RESULT_TAG = "BENCH_RESULT "
#: FlopCounterMode's name for one transformer layer (LayerDrop skips whole layers).
LAYER = re.compile(r"\.encoder\.layers\.\d+$")

#: Every lever at its "off" value: ser-hf's computation without any of its speed levers.
ALL_OFF = [
    "--train_sampling_strategy", "random",
    "--trim_silence", "false",
    "--attn_implementation", "eager",
    "--bf16", "false",
    "--freeze_layers", "0",
    "--gradient_checkpointing", "false",
    "--torch_compile", "false",
    "--fast_dropout", "false",
    "--cache_front_end", "false",
]  # fmt: skip

#: The levers that change only how the same computation runs (attention kernel; dropout masks drawn with fewer
#: random bits, same keep probability) and the cache of the frozen CNN front end's outputs, on top of ALL_OFF:
#: the issue's "every lever that changes the computation off" (what caching and the data pipeline give).
SAME_COMPUTATION_ROW = "levers that change the computation off"
SAME_COMPUTATION_KERNELS = ["--attn_implementation", "sdpa", "--fast_dropout", "true"]
#: Only for models with a CNN front end (not Whisper).
FRONT_END_CACHE = ["--cache_front_end", "true"]
#: wav2vec2-base's CNN front end: output channels, and input samples per output frame (20 ms).
FRONT_END_CHANNELS, FRONT_END_HOP = 512, 320


#: The defaults with one lever flipped at a time (``--defaults_ablation``).
DEFAULTS_ABLATION = [
    ("ser-hf defaults without bf16", ["--bf16", "false"]),
    ("ser-hf defaults without length grouping", ["--train_sampling_strategy", "random"]),
    ("ser-hf defaults without sdpa", ["--attn_implementation", "eager"]),
    ("ser-hf defaults without fast_dropout", ["--fast_dropout", "false"]),
    ("ser-hf defaults without cache_front_end", ["--cache_front_end", "false"]),
    ("ser-hf defaults with cudnn attention", ["--cudnn_attention", "true"]),
    ("ser-hf defaults + pad to 0.5 s", ["--pad_to_multiple_of_seconds", "0.5"]),
]


def lever_rows(n_layers: int) -> list[tuple[str, list[str]]]:
    """(row name, flags on top of ALL_OFF): one lever switched on at a time."""
    return [
        ("+ group_by_length", ["--train_sampling_strategy", "group_by_length"]),
        ("+ trim_silence", ["--trim_silence", "true"]),
        ("+ sdpa attention", ["--attn_implementation", "sdpa"]),
        ("+ bf16 autocast", ["--bf16", "true"]),
        ("+ fast_dropout", ["--fast_dropout", "true"]),
        ("+ cache_front_end", FRONT_END_CACHE),
        (f"+ freeze_layers {n_layers // 2}", ["--freeze_layers", str(n_layers // 2)]),
        ("+ gradient_checkpointing", ["--gradient_checkpointing", "true"]),
        ("+ torch_compile", ["--torch_compile", "true"]),
    ]


# ----------------------------------------------------------------------------------------------------------
# Child process: one row.
# ----------------------------------------------------------------------------------------------------------


class StopBench(Exception):
    """Raised by the timer when it has what it needs (the run stops there: no evaluation, no saving)."""


def make_timer(warmup: int, steps: int, count_flops: bool, stop_at_first_step: bool):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    def clock() -> float:
        """The wall clock once the GPU has finished the queued work (CUDA runs asynchronously)."""
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.first_step_at: float | None = None
            self.window: tuple[float, float, float, float] | None = None
            self.shapes: list[tuple[int, ...]] = []
            self.flops: int | None = None
            self.flop_shape_index = 0
            self._counter: Any = None
            self._start: tuple[float, float, int] | None = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            def record(module, inputs, kw):
                if module.training:
                    tensor = kw.get("input_values", kw.get("input_features"))
                    tensor = tensor if tensor is not None else inputs[0]
                    self.shapes.append(tuple(tensor.shape))

            model.register_forward_pre_hook(record, with_kwargs=True)

        def on_step_begin(self, args, state, control, **kwargs):
            if self.first_step_at is None:
                self.first_step_at = time.perf_counter()
                if stop_at_first_step:
                    raise StopBench
            if count_flops and state.global_step == 0:
                # Count with every layer on, then take the expectation over LayerDrop's random skips.
                self._config = kwargs["model"].config
                self._layerdrop = float(getattr(self._config, "layerdrop", 0.0) or 0.0)
                if self._layerdrop:
                    self._config.layerdrop = 0.0
                self.flop_shape_index = len(self.shapes)
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self._counter is not None:
                self._counter.__exit__(None, None, None)
                per_module = self._counter.get_flop_counts()
                layers = sum(sum(ops.values()) for name, ops in per_module.items() if LAYER.search(name))
                self.flops = int(self._counter.get_total_flops() - self._layerdrop * layers)
                if self._layerdrop:
                    self._config.layerdrop = self._layerdrop
                self._counter = None
            if state.global_step == warmup:
                self._start = (clock(), time.process_time(), len(self.shapes))
            elif state.global_step == warmup + steps:
                wall, cpu, first = self._start
                self.window = (clock() - wall, time.process_time() - cpu, first, len(self.shapes))
                raise StopBench

    torch.set_num_threads(torch.get_num_threads())  # touch the thread pool before timing
    return StepTimer()


def summarise(timer: Any, called_at: float, steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "before_first_step_s": (timer.first_step_at - called_at) if timer.first_step_at else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    import torch

    if torch.cuda.is_available():
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if timer.window:
        wall, cpu, first, last = timer.window
        shapes = timer.shapes[first:last]
        out.update(wall_s=wall, cpu_s=cpu, clips=BATCH * steps, clips_per_s=BATCH * steps / wall, shapes=shapes)
        if timer.flops:
            counted = timer.shapes[timer.flop_shape_index]
            per_element = timer.flops / _elements(counted)
            out["flops_per_step"] = per_element * sum(_elements(s) for s in shapes) / len(shapes)
            out["gflops_per_s"] = per_element * sum(_elements(s) for s in shapes) / wall / 1e9
    return out


def _elements(shape: tuple[int, ...]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


def child_ser(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import ser_hf.training as training

    from ser_hf import load_ravdess

    imports_s = time.perf_counter() - started
    timer = make_timer(spec["warmup"], spec["steps"], spec["count_flops"], spec["startup_only"])
    argv = [
        "--model_name_or_path", spec["model"], "--data_dir", spec["data_dir"], "--output_dir", spec["out"],
        "--decode_cache_dir", spec["cache_dir"], "--per_device_train_batch_size", str(BATCH),
        "--disable_tqdm", "true", "--resume", "false", "--report_to", "none", "--seed", "0",
    ]  # fmt: skip
    if not spec["startup_only"]:
        argv += ["--test_actors", spec["test_actor"], "--eval_actors", "", "--max_steps", str(spec["max_steps"])]
        argv += ["--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"]
        argv += ["--logging_steps", "1000"]
    model_args, data_args, training_args = training.parse_args(argv + spec["flags"])
    corpus = None
    if spec.get("rows") is not None:
        corpus = load_ravdess(spec["data_dir"]).select(spec["rows"])
    breakdown = _instrument(training) if spec["startup_only"] else {}
    called_at = time.perf_counter()
    with contextlib.suppress(StopBench):
        training.run_training(model_args, data_args, training_args, corpus=corpus, callbacks=[timer])
    result = summarise(timer, called_at, spec["steps"])
    result.update(imports_s=imports_s, breakdown=breakdown, bf16=training_args.bf16)
    return result


def _instrument(training: Any) -> dict[str, float]:
    """Time what run_training does before the first step, by wrapping the functions it calls."""
    spent: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

        return wrapper

    for name in (
        "load_corpus", "load_backbone", "freeze", "prepare_audio", "add_front_end_features", "make_splits",
        "shorten_whisper_window",
    ):  # fmt: skip
        setattr(training, name, timed(name, getattr(training, name)))
    training.SERTrainer.__init__ = timed("Trainer()", training.SERTrainer.__init__)
    training.make_compute_metrics = timed("metric (evaluate.load)", training.make_compute_metrics)
    return spent


def child_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """Emulation of run_audio_classification.py's training data path and Trainer set-up (see the docstring)."""
    started = time.perf_counter()
    from datasets import Dataset
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Trainer, TrainingArguments

    from ser_hf.audio import load_audio

    imports_s = time.perf_counter() - started
    timer = make_timer(spec["warmup"], spec["steps"], spec["count_flops"], False)
    called_at = time.perf_counter()
    feature_extractor = AutoFeatureExtractor.from_pretrained(spec["model"], return_attention_mask=True)
    model = AutoModelForAudioClassification.from_pretrained(spec["model"], num_labels=8)
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    else:  # Whisper: the script's freeze_feature_encoder would fail; freeze its conv front end as ser-hf does
        for conv in (model.encoder.conv1, model.encoder.conv2):
            conv.requires_grad_(False)
    input_name = feature_extractor.model_input_names[0]
    dataset = Dataset.from_dict({"file": spec["files"], "label": spec["labels"]})

    def decode_every_time(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        waveforms = [load_audio(path, feature_extractor.sampling_rate) for path in batch["file"]]
        inputs = feature_extractor(waveforms, sampling_rate=feature_extractor.sampling_rate)
        return {input_name: inputs[input_name], "labels": list(batch["label"])}

    dataset.set_transform(decode_every_time)
    args = TrainingArguments(
        output_dir=spec["out"],
        per_device_train_batch_size=BATCH,
        learning_rate=3e-5,
        max_steps=spec["max_steps"],
        remove_unused_columns=False,
        save_strategy="no",
        logging_steps=1000,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, processing_class=feature_extractor, callbacks=[timer]
    )
    with contextlib.suppress(StopBench):
        trainer.train()
    result = summarise(timer, called_at, spec["steps"])
    result.update(imports_s=imports_s, breakdown={}, bf16=False)
    return result


# ----------------------------------------------------------------------------------------------------------
# Parent process: set-up, rows, table.
# ----------------------------------------------------------------------------------------------------------


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    if timeout < 1:
        return {"error": "skipped: --time_budget spent"}
    command = [sys.executable, __file__, "--_child", json.dumps(spec)]
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {done.returncode}"}


#: Matmul peak probe: (n, repeats) on the CPU and on a CUDA GPU.
MATMUL_CPU = (2048, 8)
MATMUL_GPU = (8192, 10)


def matmul_peak_gflops(dtype_name: str) -> float:
    """Best-of-``repeats`` rate of one n x n x n `torch.mm` (2 n^3 FLOPs), in GFLOP/s, on the device rows train on.

    On a CUDA GPU, fp32 runs at torch's default float32 matmul precision (what the rows get), bf16 natively.
    """
    import torch

    cuda = torch.cuda.is_available()
    n, repeats = MATMUL_GPU if cuda else MATMUL_CPU
    dtype = getattr(torch, dtype_name)
    device = "cuda" if cuda else "cpu"
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        torch.mm(a, b)
        best = min(best, clock() - start)
    del a, b
    if cuda:
        torch.cuda.empty_cache()
    return 2 * n**3 / best / 1e9


def matmul_peak_description() -> str:
    """Which device and probe the matmul peak line refers to."""
    import torch

    if torch.cuda.is_available():
        n, repeats = MATMUL_GPU
        return (
            f"GPU matmul peak ({torch.cuda.get_device_name(0)}, {n}^3 torch.mm, best of {repeats}; fp32 at "
            f"float32_matmul_precision={torch.get_float32_matmul_precision()!r})"
        )
    n, repeats = MATMUL_CPU
    return f"matmul peak ({n}^3 torch.mm, best of {repeats})"


def build_wav2vec2_base(folder: Path) -> None:
    """A random-init wav2vec2-base-sized encoder saved like facebook/wav2vec2-base (no attention mask)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)


def write_48k_copies(paths: list[str], folder: Path) -> list[str]:
    """48 kHz 16-bit WAV copies of the clips (the RAVDESS originals' format) for the reference-like row."""
    import soundfile as sf
    import soxr

    out = []
    for path in paths:
        samples, rate = sf.read(path, dtype="float32")
        target = folder / (Path(path).stem + ".wav")
        sf.write(target, soxr.resample(samples, rate, 48_000), 48_000, subtype="PCM_16")
        out.append(str(target))
    return out


def warm_decode_cache(corpus: Any, cache_dir: str, trim: bool) -> tuple[list[int], float]:
    """Decode the whole corpus into the cache (a no-op when warm); the decoded lengths and the seconds it took."""
    from ser_hf.features import clip_lengths, prepare_audio

    start = time.perf_counter()
    decoded, _ = prepare_audio(corpus, RATE, trim_silence=trim, cache_dir=cache_dir)
    return clip_lengths(decoded), time.perf_counter() - start


def full_epoch_padding(lengths: list[int], group: bool, seed: int = 0) -> float:
    """Padded samples / real samples over one epoch of batches of 8 from transformers' own samplers."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    if group:
        order = list(LengthGroupedSampler(BATCH, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = [order[k : k + BATCH] for k in range(0, len(order), BATCH)]
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return padded / sum(lengths)


def reference_speed(rows: list[dict[str, Any]]) -> float | None:
    """The reference-like row's clips/s among one model's rows (None when it did not run or failed)."""
    row = next((r for r in rows if r["name"].startswith("reference")), None)
    return row.get("clips_per_s") if row else None


def machine_summary() -> str:
    import torch

    from ser_hf.hardware import cpu_flags

    flags = cpu_flags()
    wide = [f for f in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0)
        return (
            f"GPU {gpu.name} ({gpu.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}); CPU: {os.cpu_count()} "
            f"logical cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
            f"CPU flags: {', '.join(wide) or 'none of avx2/avx512/amx'}"
        )
    device = platform.processor() or "CPU"
    return (
        f"{device}; {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"CPU flags: {', '.join(wide) or 'none of avx2/avx512/amx'}"
    )


def row_progress(row: dict[str, Any]) -> str:
    """One line on a finished row (printed as it ends, so a run cut short still shows its figures)."""
    if "error" in row:
        return f"failed: {row['error'][:200]}"
    gpu = f", peak GPU {row['peak_gpu_gib']:.2f} GiB" if "peak_gpu_gib" in row else ""
    speed = f"{fmt(row.get('clips_per_s'))} clips/s, {fmt(row.get('wall_s'))} s timed"
    return f"{speed}, peak RSS {row['peak_rss_mib'] / 1024:.2f} GiB{gpu}"


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from its repeated runs: the run with the median clips/s, every run's clips/s beside it."""
    timed = sorted((r for r in runs if "clips_per_s" in r), key=lambda r: r["clips_per_s"])
    if not timed:
        return runs[-1]
    row = dict(timed[(len(timed) - 1) // 2])
    row["clips_per_s_runs"] = [r["clips_per_s"] for r in runs if "clips_per_s" in r]
    return row


def workers_row_name(workers: int) -> str:
    return f"ser-hf defaults + {workers} dataloader workers"


def flag_value(flags: list[str], name: str) -> str | None:
    """The value the last ``name`` in a flag list sets (what the argument parser will use)."""
    values = [flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == name]
    return values[-1] if values else None


def fmt(value: Any, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def print_rows(
    title: str, rows: list[dict[str, Any]], peaks: dict[str, float], reference: float | None, gpu: bool = False
) -> None:
    baseline = next((r["clips_per_s"] for r in rows if r["name"] == "all levers off" and "clips_per_s" in r), None)
    print(f"\n### {title}\n")
    peak_name = "% GPU fp32 peak" if gpu else "% fp32 peak"
    gpu_column = " | peak GPU GiB" if gpu else ""
    print(
        "| row | clips/s | x all-off | x reference-like | s/step | CPU-s/step | padded s/clip "
        f"| GFLOP/step | GFLOP/s | {peak_name} | peak RSS GiB{gpu_column} |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---:"
        + (" | ---:" if gpu else "")
        + " |"
    )
    for row in rows:
        if "error" in row:
            print(f"| {row['name']} | failed: {row['error'][:150]} | | | | | | | | | |" + (" |" if gpu else ""))
            continue
        steps = row["clips"] / BATCH
        padded = None
        if row.get("shapes") and len(row["shapes"][0]) == 2:  # raw waveforms: (batch, samples)
            padded = sum(s[1] for s in row["shapes"]) / len(row["shapes"]) / RATE
        elif row.get("shapes") and row["shapes"][0][1] == FRONT_END_CHANNELS:  # cached front end: (batch, 512, frames)
            padded = sum(s[2] for s in row["shapes"]) / len(row["shapes"]) * FRONT_END_HOP / RATE
        gflops = row.get("gflops_per_s")
        cells = [
            row["name"],
            fmt(row["clips_per_s"]),
            fmt(row["clips_per_s"] / baseline if baseline else None),
            fmt(row["clips_per_s"] / reference if reference else None),
            fmt(row["wall_s"] / steps),
            fmt(row["cpu_s"] / steps),
            fmt(padded),
            fmt(row["flops_per_step"] / 1e9 if row.get("flops_per_step") else None, ".0f"),
            fmt(gflops, ".0f"),
            fmt(100 * gflops / peaks["float32"] if gflops else None, ".0f"),
            fmt(row["peak_rss_mib"] / 1024),
        ]
        if gpu:
            cells.append(fmt(row.get("peak_gpu_gib")))
        print("| " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--whisper", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--models", default="wav2vec2,whisper", help="Comma-separated: wav2vec2, whisper.")
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per row (the subset is 8 x steps clips).")
    parser.add_argument("--compile_wav2vec2", action="store_true", help="Also time torch.compile on wav2vec2.")
    parser.add_argument(
        "--only", default="", help="Comma-separated row names to run (default: all; names hold no commas)."
    )
    parser.add_argument("--cache_dir", default=None, help="Decode cache (default: the Hugging Face datasets cache).")
    parser.add_argument("--row_timeout", type=float, default=1200.0)
    parser.add_argument(
        "--time_budget",
        type=float,
        default=None,
        help="Seconds for all rows together: a row is cut to what is left, later rows are skipped (the table prints).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Run every row this many times, round-robin, and report the run with the median clips/s (with all runs).",
    )
    parser.add_argument("--json", default=None, help="Also write every figure to this JSON file.")
    parser.add_argument(
        "--skip_startup", action="store_true", help="Skip the time-before-the-first-step runs (two or three per model)."
    )
    parser.add_argument("--startup_only", action="store_true", help="Only the time-before-the-first-step runs.")
    parser.add_argument(
        "--extra_row_workers",
        type=int,
        default=0,
        help="Also time the defaults with this many DataLoader worker processes (persistent across epochs; 0: no).",
    )
    parser.add_argument(
        "--defaults_ablation",
        action="store_true",
        help="Also time the defaults with one lever flipped at a time (bf16, length grouping, SDPA, fast dropout, "
        "cuDNN attention, padding to 0.5 s multiples).",
    )
    args = parser.parse_args()
    if args._child:
        spec = json.loads(args._child)
        result = child_reference(spec) if spec["kind"] == "reference" else child_ser(spec)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    wanted_models = [m.strip() for m in args.models.split(",") if m.strip()]
    for path in [args.data_dir] + ([args.whisper] if "whisper" in wanted_models else []):
        if not Path(path).exists():
            print(f"skipped: {path} not found (real data and weights live in ../shared)")
            return 0
    began = time.perf_counter()
    load_at_start = os.getloadavg()
    import datasets
    import torch
    from ser_hf.training import DataArguments

    from ser_hf import load_ravdess
    from ser_hf.modeling import whisper_window_seconds

    datasets.disable_progress_bars()
    cache_dir = args.cache_dir or str(Path(datasets.config.HF_DATASETS_CACHE) / "ser_hf")
    work = Path(tempfile.mkdtemp(prefix="ser-hf-train-speed-"))
    atexit.register(shutil.rmtree, work, True)  # the random model, the 48 kHz copies, the rows' output folders
    peaks = {name: matmul_peak_gflops(name) for name in ("float32", "bfloat16")}
    gpu = torch.cuda.is_available()

    corpus = load_ravdess(args.data_dir)
    actors = [int(a) for a in corpus["actor"]]
    lengths, cold = {}, {}
    for trim in (False, True):
        lengths[trim], cold[trim] = warm_decode_cache(corpus, cache_dir, trim)
    train_rows = [i for i, a in enumerate(actors) if a <= 18]
    test_row = next(i for i, a in enumerate(actors) if a >= 21)
    subset = sorted(random.Random(0).sample(train_rows, BATCH * args.steps)) + [test_row]
    test_actor = str(actors[test_row])
    windows = {trim: whisper_window_seconds(max(lengths[trim][i] for i in train_rows) / RATE) for trim in (False, True)}

    wav2vec2_dir = work / "wav2vec2-base-random"
    if "wav2vec2" in wanted_models:
        build_wav2vec2_base(wav2vec2_dir)
    models = {"wav2vec2": (str(wav2vec2_dir), 12), "whisper": (str(Path(args.whisper).resolve()), 4)}
    wanted_rows = {r.strip() for r in args.only.split(",") if r.strip()}

    def row_timeout() -> float:
        """--row_timeout, cut to what is left of --time_budget (a row past the budget gets 0 s and is skipped)."""
        if args.time_budget is None:
            return args.row_timeout
        return max(0.0, min(args.row_timeout, args.time_budget - (time.perf_counter() - began)))

    def spec_for(model: str, flags: list[str], **extra: Any) -> dict[str, Any]:
        out = work / f"run-{time.monotonic_ns()}"
        spec = {
            "kind": "ser", "model": model, "data_dir": str(Path(args.data_dir).resolve()), "out": str(out),
            "cache_dir": cache_dir, "flags": flags, "warmup": 1, "steps": args.steps,
            "max_steps": 1 + args.steps, "count_flops": flag_value(flags, "--torch_compile") != "true",
            "startup_only": False, "rows": subset, "test_actor": test_actor,
        }  # fmt: skip
        spec.update(extra)
        return spec

    def whisper_flags(flags: list[str], trimmed: bool) -> list[str]:
        return flags + ["--whisper_window_seconds", str(windows[trimmed])]

    files48 = write_48k_copies([corpus[i]["path"] for i in subset], work)
    labels = [int(corpus[i]["label"]) for i in subset]
    results: dict[str, list[dict[str, Any]]] = {}
    startup: list[dict[str, Any]] = []
    for key in wanted_models:
        model, n_layers = models[key]
        is_whisper = key == "whisper"
        plan: list[tuple[str, dict[str, Any]]] = []
        ref = spec_for(model, [], kind="reference", files=files48[:-1], labels=labels[:-1])
        plan.append(("reference-like (decode every step)", ref))
        plan.append(("all levers off", spec_for(model, whisper_flags(ALL_OFF, False) if is_whisper else ALL_OFF)))
        kernels = ALL_OFF + SAME_COMPUTATION_KERNELS + ([] if is_whisper else FRONT_END_CACHE)
        plan.append((SAME_COMPUTATION_ROW, spec_for(model, whisper_flags(kernels, False) if is_whisper else kernels)))
        for name, flags in lever_rows(n_layers):
            if name == "+ torch_compile" and not is_whisper and not args.compile_wav2vec2:
                continue
            if name == "+ cache_front_end" and is_whisper:
                continue  # Whisper has no CNN front end
            row_flags = ALL_OFF + flags
            trimmed = flag_value(row_flags, "--trim_silence") == "true"
            plan.append((name, spec_for(model, whisper_flags(row_flags, trimmed) if is_whisper else row_flags)))
        default_trim = DataArguments().trim_silence
        plan.append(("ser-hf defaults", spec_for(model, whisper_flags([], default_trim) if is_whisper else [])))
        # The defaults with the trimming default flipped: what trimming adds to (or takes from) the defaults.
        flipped = ["--trim_silence", "false" if default_trim else "true"]
        flipped_name = "ser-hf defaults without trimming" if default_trim else "ser-hf defaults + trim_silence"
        spec = spec_for(model, whisper_flags(flipped, not default_trim) if is_whisper else flipped)
        plan.append((flipped_name, spec))
        if args.defaults_ablation:  # which lever (or pair) makes the defaults slower than their parts
            for name, flags in DEFAULTS_ABLATION:
                if is_whisper and "cache_front_end" in name:
                    continue
                plan.append((name, spec_for(model, whisper_flags(flags, default_trim) if is_whisper else flags)))
        if args.extra_row_workers > 0:
            workers = ["--dataloader_num_workers", str(args.extra_row_workers)]
            workers += ["--dataloader_persistent_workers", "true"]
            spec = spec_for(model, whisper_flags(workers, default_trim) if is_whisper else workers)
            plan.append((workers_row_name(args.extra_row_workers), spec))
        plan = [(name, spec) for name, spec in plan if not wanted_rows or name in wanted_rows]
        plan = [] if args.startup_only else plan
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
        for repeat in range(args.repeats):  # round-robin: a slow spell of a shared machine hits every row alike
            for name, spec in plan:
                label = f"{name} (run {repeat + 1} of {args.repeats})" if args.repeats > 1 else name
                print(f"[{time.perf_counter() - began:6.0f} s] {key}: {label} ...", file=sys.stderr, flush=True)
                row = {"name": name, **run_child({**spec, "out": f"{spec['out']}-{repeat}"}, row_timeout())}
                runs[name].append(row)
                print(f"         {key}: {label}: {row_progress(row)}", file=sys.stderr, flush=True)
        results[key] = [median_run(runs[name]) for name, _ in plan]
        startup_rows = [("all levers off", ALL_OFF), ("ser-hf defaults", [])]
        if not is_whisper:  # the first defaults run fills the front-end cache for the whole corpus (once, ever)
            startup_rows.insert(1, ("ser-hf defaults (first run: fills a cold front-end cache)", []))
        for name, flags in startup_rows:
            if args.skip_startup or (wanted_rows and not name.startswith(tuple(wanted_rows))):
                continue
            print(f"[{time.perf_counter() - began:6.0f} s] {key}: startup, {name} ...", file=sys.stderr, flush=True)
            spec = spec_for(model, flags, startup_only=True, rows=None, count_flops=False)
            startup.append({"model": key, "name": name, **run_child(spec, row_timeout())})

    # ------------------------------------------------------------------------------------------------------
    print(f"\n## ser-hf training throughput on {'the GPU' if gpu else 'the CPU'} (bench/train_speed.py)\n")
    print(f"- machine: {machine_summary()}")
    load_now = os.getloadavg()[0]
    print(f"- load average at start {load_at_start[0]:.1f}, at end {load_now:.1f} (other work shares the cores)")
    print(
        f"- measured {matmul_peak_description()}: fp32 {peaks['float32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bfloat16']:.0f} GFLOP/s"
    )
    print(
        f"- decode cache {cache_dir}: whole corpus ({len(corpus)} clips) {cold[False]:.1f} s untrimmed, "
        f"{cold[True]:.1f} s trimmed (a few tenths of a second = it was warm)"
    )
    print(
        f"- batch {BATCH}; {args.steps} timed steps after 1 warm-up step on {BATCH * args.steps} training clips"
        f"{f'; each row run {args.repeats} times, round-robin' if args.repeats > 1 else ''}; "
        "CNN feature encoder frozen in every row"
    )
    print("- all levers off = " + " ".join(ALL_OFF))
    print(
        f"- {SAME_COMPUTATION_ROW} = all levers off, then "
        + " ".join(SAME_COMPUTATION_KERNELS + FRONT_END_CACHE)
        + " (Whisper: without the last flag, it has no CNN front end)"
    )
    print(f"- Whisper window: {windows[False]} s untrimmed, {windows[True]} s trimmed (longest training clip)")
    for key, rows in results.items():
        resolved = next((r.get("bf16") for r in rows if r["name"] == "ser-hf defaults"), None)
        if resolved is not None:
            print(f"- {key}: ser-hf's default bf16 resolved to {resolved} on this machine")
    references = {key: reference_speed(rows) for key, rows in results.items()}
    for key, rows in results.items():
        title = "wav2vec2-base-sized (random init, 94 M parameters)" if key == "wav2vec2" else "Whisper tiny.en encoder"
        print_rows(title, rows, peaks, references[key], gpu=gpu)

    if args.repeats > 1:
        print(f"\n### Every run's clips/s ({args.repeats} round-robin runs per row; the tables show the median run)\n")
        for key, rows in results.items():
            for row in rows:
                spread = ", ".join(f"{v:.2f}" for v in row.get("clips_per_s_runs", []))
                print(f"- {key}: {row['name']}: {spread or 'no timed run'}")

    print("\n### Full-epoch padding on the real training split (actors 1-18, 1080 clips; model-free)\n")
    print("| sampler | untrimmed: padded/real samples | trimmed: padded/real samples |")
    print("| --- | ---: | ---: |")
    for group in (False, True):
        train_lengths = {trim: [lengths[trim][i] for i in train_rows] for trim in (False, True)}
        print(
            f"| {'group_by_length' if group else 'random'} | {full_epoch_padding(train_lengths[False], group):.3f} "
            f"| {full_epoch_padding(train_lengths[True], group):.3f} |"
        )
    mean_s = {trim: sum(lengths[trim][i] for i in train_rows) / len(train_rows) / RATE for trim in (False, True)}
    print(f"\nMean training clip: {mean_s[False]:.2f} s untrimmed, {mean_s[True]:.2f} s trimmed.")

    print("\n### Time before the first training step (whole corpus, default splits, warm decode cache)\n")
    if args.skip_startup:
        print("(skipped: --skip_startup)")
    else:
        print("| model | configuration | before first step s | imports s | breakdown (s) | peak RSS GiB |")
        print("| --- | --- | ---: | ---: | --- | ---: |")
    for row in startup:
        if "error" in row:
            print(f"| {row['model']} | {row['name']} | failed: {row['error'][:150]} | | | |")
            continue
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["breakdown"].items(), key=lambda kv: -kv[1]))
        print(
            f"| {row['model']} | {row['name']} | {fmt(row['before_first_step_s'])} | {fmt(row['imports_s'])} "
            f"| {parts} | {fmt(row['peak_rss_mib'] / 1024)} |"
        )

    for key, rows in results.items():
        by_name = {r["name"]: r for r in rows if "clips_per_s" in r}
        reference = references[key]
        if not by_name:
            continue
        print(f"\n### Targets ({key}, batch {BATCH}; the issue asks >= 2x with the defaults, >= 1.2x all-off)\n")
        for name in (
            "ser-hf defaults",
            "ser-hf defaults + trim_silence",
            "ser-hf defaults without trimming",
            workers_row_name(args.extra_row_workers),
            SAME_COMPUTATION_ROW,
            "all levers off",
        ):
            if name not in by_name:
                continue
            speed = by_name[name]["clips_per_s"]
            same_run = f"{speed / reference:.2f}x the reference-like row" if reference else "no reference-like row"
            line = f"- {name}: {speed:.2f} clips/s = {same_run} of this run"
            if key == "wav2vec2":
                lo, hi = QUOTED_REFERENCE_CLIPS_PER_S
                line += f"; {speed / hi:.2f}-{speed / lo:.2f}x the issue's quoted reference ({lo}-{hi} clips/s)"
            print(line)
    print(f"\nTotal benchmark time: {time.perf_counter() - began:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine_summary(),
                    "device": torch.cuda.get_device_name(0) if gpu else "cpu",
                    "peaks": peaks,
                    "rows": results,
                    "startup": startup,
                    "windows": windows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
