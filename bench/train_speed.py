"""Phase-2 training throughput: the top encoder layers and the head fine-tuned on cached inputs, per speed lever.

    python bench/train_speed.py --data_dir ../shared/data/ravdess-16k --whisper ../shared/models/whisper-tiny.en

Models (``--models``): the Whisper tiny.en encoder, and a random-init wav2vec2-base-sized one (12 x 768, built
here: speed does not depend on the weights). For each model and number of trained layers (``--layers``), the
corpus is prepared once (`EmotionTrainer.prepare`, cached in a temporary folder removed at exit); every row then
runs `EmotionTrainer.fit` on the training speakers' rows (no validation rows), so phase 2's `SERTrainer` is built
as in training, and times ``--steps`` steps (data loading, forward, backward, optimizer) after one warm-up step.
On a GPU the clock is read after `torch.cuda.synchronize()`.

Rows: the defaults; every lever off (random sampler, torch's dropout, fp32; on CUDA also SDPA free to pick
cuDNN attention); each lever flipped alone from the defaults (fast dropout only on a CPU, cuDNN attention only on
CUDA: elsewhere they change nothing). ``--repeats`` runs the rows round-robin and shows each row's median run.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts the warm-up step (trained layers and head, forward and
backward); each timed step is scaled from it by its shape (matrix products by clips x positions, attention's by
clips x positions^2). GFLOP/s is compared with the square-matmul peak, measured in this process, of the precision
the row ran in (fp32, or bf16 under bf16 autocast). Positions per real one: positions computed per speech
position (Whisper computes its whole window). Peak RSS: the high-water mark during the row (reset before it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import environment, missing, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Operators whose cost grows with the square of the clip length (attention's products).
QUADRATIC = ("bmm", "scaled_dot_product", "flash_attention", "efficient_attention", "flex_attention")


class StopTiming(Exception):
    """Raised by the timer once the timed steps are done: nothing after phase 2's training runs."""


def clock(cuda: bool) -> float:  # the wall clock once the GPU has finished its queued work
    import torch

    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def memory(cuda: bool, reset: bool = False) -> dict[str, float]:
    """Peak RSS (and peak GPU memory) in GiB since the last reset; ``reset=True`` resets them."""
    import torch

    if reset:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM, the peak resident set
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        return {}
    try:  # VmHWM: the peak resident set since the reset (Linux); else the process' peak
        rss = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if "VmHWM" in x)
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = {"peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30} if cuda else {}
    return {"peak_rss_gib": rss / 2**20, **gpu}


def matmul_peak(dtype_name: str, cuda: bool, repeats: int = 5) -> float:
    """Best GFLOP/s of an n^3 `torch.mm` in ``dtype_name`` on the training device (fp32 at torch's precision)."""
    import torch

    n = 8192 if cuda else 2048
    a, b = (torch.randn(n, n, device="cuda" if cuda else "cpu", dtype=getattr(torch, dtype_name)) for _ in "ab")
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = clock(cuda)
        torch.mm(a, b)
        best = min(best, clock(cuda) - start)
    return 2 * n**3 / best / 1e9


def build_wav2vec2(folder: Path) -> str:
    """A random-init wav2vec2-base-sized encoder (`Wav2Vec2Config()`), saved like facebook/wav2vec2-base."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)
    return str(folder)


def make_timer(steps: int, cuda: bool) -> Any:
    """A `TrainerCallback` that counts the FLOPs of step 1, times steps 2 .. steps + 1, then stops training."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.batches: list[tuple[int, int, Any]] = []  # (clips, positions computed, real positions)
            self.counter: Any = None
            self.bf16, self.start, self.wall = False, None, None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.bf16 = bool(args.bf16)

            def record(module, inputs, named):
                if module.training:
                    hidden = named["hidden_state"]
                    self.batches.append((hidden.shape[0], hidden.shape[1], named["positions"].detach()))

            self.hook = model.register_forward_pre_hook(record, with_kwargs=True)

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                self.counter = FlopCounterMode(display=False)
                self.counter.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.counter is not None:
                self.counter.__exit__(None, None, None)
                self.ops = {str(op): int(n) for op, n in self.counter.get_flop_counts().get("Global", {}).items()}
                self.counter = None
            if state.global_step == 1:
                self.start = (clock(cuda), len(self.batches))
            elif state.global_step == 1 + steps:
                self.wall = clock(cuda) - self.start[0]
                self.hook.remove()
                raise StopTiming

        def figures(self) -> dict[str, Any]:
            quadratic = sum(n for op, n in self.ops.items() if any(q in op for q in QUADRATIC))
            linear, (clips0, length0, _) = sum(self.ops.values()) - quadratic, self.batches[0]
            timed = [(b, n, int(p.sum())) for b, n, p in self.batches[self.start[1] :]]
            flops = sum(linear * b * n / (clips0 * length0) + quadratic * b * n**2 / (clips0 * length0**2)
                        for b, n, _ in timed)  # fmt: skip
            clips = sum(b for b, _, _ in timed)
            return {
                "clips_per_s": clips / self.wall, "s_per_step": self.wall / len(timed), "wall_s": self.wall,
                "clips": clips, "positions_per_real": sum(b * n for b, n, _ in timed) / sum(r for *_, r in timed),
                "gflop_per_step": flops / len(timed) / 1e9, "gflops": flops / self.wall / 1e9,
                "precision": "bf16" if self.bf16 else "fp32",
                "counted_step": {"clips": clips0, "positions": length0, "flops_by_op": self.ops},
            }  # fmt: skip

    return StepTimer()


def lever_rows(defaults: dict[str, Any], cuda: bool) -> list[tuple[str, dict[str, Any]]]:
    """(name, options): the defaults, every lever off, each lever flipped alone from the defaults."""
    off = {"train_sampling_strategy": "random", "fast_dropout": False, "bf16": False}
    rows = [("ser-hf defaults", {}), ("all levers off", {**off, **({"cudnn_attention": True} if cuda else {})})]
    rows.append(("defaults, random sampler", {"train_sampling_strategy": "random"}))
    flips = [("fast dropout", "fast_dropout")] if not cuda else [("cuDNN attention", "cudnn_attention")]
    for label, name in [*flips, ("bf16", "bf16")]:
        rows.append((f"defaults, {label} {'off' if defaults[name] else 'on'}", {name: not defaults[name]}))
    return rows


def describe(chosen: dict[str, Any]) -> str:
    parts = [chosen["train_sampling_strategy"], "fast dropout" if chosen["fast_dropout"] else "torch dropout"]
    cudnn = {True: ["cuDNN attention"], False: ["no cuDNN attention"], None: []}[chosen.get("cudnn_attention")]
    return ", ".join(parts + cudnn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--whisper", default="../shared/models/whisper-tiny.en")
    parser.add_argument("--models", default="whisper,wav2vec2", help="Comma-separated: whisper, wav2vec2.")
    parser.add_argument("--layers", default="1,all", help="Comma-separated: trained top layers (N or 'all').")
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per run (after one warm-up step).")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per row, round-robin; the median is shown.")
    parser.add_argument("--batch_size", type=int, default=None, help="Clips per step (default: ser-hf's).")
    parser.add_argument("--clips", type=int, default=0, help="Prepare this many clips spread over the corpus "
                        "(0: all; fewer prepare faster, but length grouping then sorts fewer clips).")  # fmt: skip
    parser.add_argument("--json", default=None, help="Also write every figure to this JSON file.")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if message := missing(args.data_dir, *([args.whisper] if "whisper" in models else [])):
        print(message)
        return 0

    print(environment())
    import datasets
    import numpy as np
    import torch

    from ser_hf import load_ravdess
    from ser_hf.arguments import arguments, default_bf16
    from ser_hf.fast_dropout import fast_dropout_pays
    from ser_hf.modeling import is_whisper
    from ser_hf.trainer import EmotionTrainer

    datasets.disable_progress_bars()
    cuda = torch.cuda.is_available()
    fp32 = "fp32" if not cuda or torch.get_float32_matmul_precision() == "highest" else "tf32"
    peaks = {"fp32": matmul_peak("float32", cuda), "bf16": matmul_peak("bfloat16", cuda)}
    where = f"{torch.cuda.get_device_name(0) + ', 8192' if cuda else 'CPU, 2048'}^3 torch.mm, best of 5"
    print(f"\nmatmul peak ({where}), GFLOP/s: {fp32} {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f}")
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    corpus = load_ravdess(args.data_dir)
    if 0 < args.clips < len(corpus):
        corpus = corpus.select([i * len(corpus) // args.clips for i in range(args.clips)])
    report: dict[str, Any] = {"environment": environment(), "peaks_gflops": peaks, "fp32_is": fp32, "runs": []}
    with tempfile.TemporaryDirectory(prefix="ser-hf-train-speed-") as work:
        paths = {"whisper": str(Path(args.whisper).resolve())}
        if "wav2vec2" in models:
            paths["wav2vec2"] = build_wav2vec2(Path(work) / "wav2vec2-base-random")
        for key in models:
            for layers in [n.strip() for n in args.layers.split(",") if n.strip()]:
                common = {"model_name_or_path": paths[key], "finetune_layers": layers, "decode_cache_dir": work,
                          "features_cache_dir": work, "output_dir": f"{work}/out", "disable_tqdm": True, "seed": 0,
                          "report_to": "none", "eval_strategy": "no", "save_strategy": "no", "logging_steps": 10**6,
                          "max_steps": args.steps + 2,
                          **({"per_device_train_batch_size": args.batch_size} if args.batch_size else {})}  # fmt: skip
                started = time.perf_counter()
                first = EmotionTrainer(*arguments(**common), corpus=corpus, progress=say)
                encoded = first.prepare()
                prepared = time.perf_counter() - started
                fit_rows, trained = first.split_rows(encoded)[0], first.phase2_layers(encoded.model)
                defaults = {"train_sampling_strategy": first.args.train_sampling_strategy,
                            "fast_dropout": fast_dropout_pays(first.args.device),
                            "bf16": default_bf16(encoded.model.config, use_cpu=first.args.use_cpu),
                            **({"cudnn_attention": is_whisper(encoded.model)} if cuda else {})}  # fmt: skip
                rows = lever_rows(defaults, cuda)
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in rows}
                for repeat in range(args.repeats):  # round-robin: a slow spell of a shared machine hits every row
                    for name, options in rows:
                        timer = make_timer(args.steps, cuda)
                        trainer = EmotionTrainer(*arguments(**common, **options), corpus=corpus, callbacks=[timer],
                                                 progress=lambda line: None)  # fmt: skip
                        gc.collect()
                        memory(cuda, reset=True)
                        try:
                            trainer.fit(encoded, fit_rows, np.zeros(0, dtype=int))
                            figures = {"error": "training ended before the timed steps"}
                        except StopTiming:
                            figures = {**timer.figures(), **memory(cuda)}
                        except Exception as err:  # report the row, go on with the others
                            figures = {"error": f"{type(err).__name__}: {err}"[:200].replace("|", "/")}
                            if timer.counter is not None:
                                timer.counter.__exit__(None, None, None)
                        figures["settings"] = describe({**defaults, **options})
                        runs[name].append(figures)
                        figures.update(model=key, layers=trained, row=name, run=repeat + 1)
                        report["runs"].append(figures)
                        shown = f"{figures['clips_per_s']:.2f} clips/s" if "clips_per_s" in figures else "failed"
                        say(f"{key}, top {trained}: {name} (run {repeat + 1} of {args.repeats}): {shown}")
                print_table(key, trained, len(fit_rows), prepared, args, runs, peaks, fp32, cuda)
                del encoded, first
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


def print_table(key, layers, clips, prepared, args, runs, peaks, fp32, cuda) -> None:
    title = "Whisper tiny.en encoder" if key == "whisper" else "wav2vec2-base-sized encoder (random init, 12 x 768)"
    print(f"\n### {title}: phase 2 on the top {layers} layer(s)\n")
    print(f"{clips} training clips (prepared in {prepared:.0f} s from cold caches); batch "
          f"{args.batch_size or 'ser-hf default'}; {args.steps} timed steps after 1 warm-up step"
          f"{f'; median of {args.repeats} round-robin runs' if args.repeats > 1 else ''}\n")  # fmt: skip
    rows = {}
    for name, tries in runs.items():
        timed = sorted((r for r in tries if "clips_per_s" in r), key=lambda r: r["clips_per_s"])
        rows[name] = timed[(len(timed) - 1) // 2] if timed else tries[-1]
    baseline = rows["all levers off"].get("clips_per_s")
    header = ["row", "sampler, dropout", "precision", "clips/s", "x all off", "s/step", "positions per real",
              "GFLOP/step", "GFLOP/s", "% of its precision's peak", "peak RSS GiB"]  # fmt: skip
    header += ["peak GPU GiB"] if cuda else []
    lines = []
    for name, row in rows.items():
        if "clips_per_s" not in row:
            lines.append([name, row["settings"], f"failed: {row['error']}"] + [""] * (len(header) - 3))
            continue
        precision = fp32 if row["precision"] == "fp32" else "bf16"
        share = 100 * row["gflops"] / peaks[row["precision"]]
        lines.append([name, row["settings"], precision if precision != "bf16" else "bf16 autocast",
                      f"{row['clips_per_s']:.2f}", f"{row['clips_per_s'] / baseline:.2f}" if baseline else "—",
                      f"{row['s_per_step']:.2f}", f"{row['positions_per_real']:.2f}", f"{row['gflop_per_step']:.1f}",
                      f"{row['gflops']:.0f}", f"{share:.1f}% of {precision} peak", f"{row['peak_rss_gib']:.2f}"]
                     + ([f"{row['peak_gpu_gib']:.2f}"] if cuda else []))  # fmt: skip
    print(table(header, lines))
    for name, tries in runs.items() if args.repeats > 1 else ():
        each = ", ".join(f"{r['clips_per_s']:.2f}" if "clips_per_s" in r else "failed" for r in tries)
        print(f"- {name}: clips/s of each run: {each}")


if __name__ == "__main__":
    sys.exit(main())
