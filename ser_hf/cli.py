"""The ``ser-hf`` command line: thin sub-commands over the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import SerHfError
from .vad import DEFAULT_MIN_PAUSE, SILENCE_THRESHOLD_DB


def _print(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _load(args: argparse.Namespace) -> Any:
    from .recognizer import EmotionRecognizer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return EmotionRecognizer.from_pretrained(args.model, device=args.device, num_threads=args.threads)


def _predict(args: argparse.Namespace) -> int:
    recognizer = _load(args)
    if args.speaker_clips:
        recognizer.adapt_to_speaker(_audio_files(args.speaker_clips))
    if args.timeline:
        return _predict_timeline(recognizer, args)
    results = recognizer.predict(list(args.files), batch_size=args.batch_size, errors=args.errors)
    failed = 0
    for path, result in zip(args.files, results):
        if isinstance(result, Exception):
            failed += 1
            record = {"file": path, "error": getattr(result, "problem", str(result))}
            record["reason"] = getattr(result, "reason", type(result).__name__)
            _print(record)
        else:
            _print({"file": path, **result.to_dict()})
    return 1 if failed else 0


def _audio_files(paths: Sequence[str]) -> list[str]:
    """Files as given, folders expanded to the audio files under them."""
    from pathlib import Path

    from .corpora import scan_audio_files

    files: list[str] = []
    for name in paths:
        if not Path(name).is_dir():
            files.append(name)
        elif found := scan_audio_files(name):
            files += [str(p) for p in found]
        else:
            raise SerHfError(f"{name}: no audio files in this folder")
    return files


def _evaluate(argv: Sequence[str]) -> int:
    """``ser-hf evaluate``: cross-validation (``--cv``), leave one corpus out (``--test_corpus``), or a trained
    model scored on a corpus; the report goes to stdout and, with ``--output_dir``, to files."""
    from .arguments import SERArgumentParser

    parser = SERArgumentParser(
        prog="ser-hf evaluate",
        description="Speaker-independent cross-validation (--cv K), leave-one-corpus-out (--test_corpus NAME), or "
        "score a trained model (--model) on a corpus. Takes every option of `ser-hf train`.",
    )
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=list(argv))
    output_given = any(a.split("=")[0] in ("--output_dir", "--output-dir") for a in argv)
    progress = _stderr
    with contextlib.redirect_stdout(sys.stderr):
        if data_args.cv:
            from .crossval import cross_validate

            result = cross_validate(
                arguments=(model_args, data_args, training_args),
                output_dir=training_args.output_dir if output_given else None,
                progress=progress,
            )
            text = result.to_markdown()
            where = f"{training_args.output_dir}/cv_report/" if output_given else None
        elif data_args.test_corpus:
            from .crosscorpus import leave_one_corpus_out

            report = leave_one_corpus_out(model_args, data_args, training_args, progress=progress)
            text = json.dumps(report, indent=2)
            where = _write_report(training_args.output_dir, "cross_corpus.json", report) if output_given else None
        else:
            from .corpora import load_corpora
            from .crosscorpus import evaluate_across
            from .recognizer import EmotionRecognizer

            if not data_args.sources():
                raise SerHfError("ser-hf evaluate needs --data_dir (the corpus to score the model on)")
            corpus = load_corpora(data_args.sources(), data_args.corpus, on_invalid=data_args.on_invalid)
            recognizer = EmotionRecognizer.from_pretrained(model_args.model_name_or_path)
            report = evaluate_across(recognizer, corpus, decode_cache_dir=data_args.decode_cache_dir)
            text = json.dumps(report, indent=2)
            where = _write_report(training_args.output_dir, "evaluation.json", report) if output_given else None
    print(text)
    if where:
        print(f"report: {where}", file=sys.stderr)
    return 0


def _write_report(folder: str, name: str, report: dict[str, Any]) -> str:
    from pathlib import Path

    from .atomic import write_json_atomic

    return str(write_json_atomic(Path(folder) / name, report))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _timeline_options(recognizer: Any, args: argparse.Namespace, *, enrolled: bool = False) -> dict[str, Any]:
    """The timeline or stream keywords of the command line (and a note on stderr about adaptation)."""
    options: dict[str, Any] = {
        "segmentation": args.segmentation,
        "window_seconds": args.window,
        "hop_seconds": args.hop,
        "silence_threshold_db": args.silence_threshold_db,
    }
    if args.segmentation == "windows":
        if args.adapt not in ("auto", "off") or args.min_pause is not None:
            raise SerHfError("--adapt and --min-pause follow utterances: leave them out with --segmentation windows")
        return options
    adapt = "off" if enrolled and args.adapt == "auto" else args.adapt  # the speaker clips given hold
    if adapt == "auto" and not recognizer.is_speaker_adaptive:
        _stderr("note: this model does not adapt to speakers; every utterance is recognised without adapting")
    options["adapt"] = adapt
    if args.min_pause is not None:
        options["min_pause"] = args.min_pause
    return options


def _predict_timeline(recognizer: Any, args: argparse.Namespace) -> int:
    """One JSON line per utterance (or window) of each file, printed as the file is read."""
    from .errors import AudioError

    options = _timeline_options(recognizer, args, enrolled=bool(args.speaker_clips))
    if args.segmentation == "windows":
        options["smoothing"] = args.smoothing
    elif args.smoothing != 1:
        raise SerHfError("--smoothing averages neighbouring windows: it needs --segmentation windows")
    failed = 0
    for path in args.files:
        try:
            for segment in recognizer.iter_timeline(path, batch_size=args.batch_size, **options):
                _print({"file": path, **segment.to_dict()})
        except AudioError as err:
            failed += 1
            _print({"file": path, "error": err.problem})
    return 1 if failed else 0


def _listen(args: argparse.Namespace) -> int:
    from .live import Microphone, import_sounddevice, listen

    import_sounddevice()  # a missing package is reported before the model loads
    recognizer = _load(args)
    if args.adapt == "recording":
        raise SerHfError("--adapt recording needs the whole recording: use it with `ser-hf predict --timeline`")
    options = _timeline_options(recognizer, args)
    with Microphone(args.input_device, sampling_rate=args.sampling_rate) as microphone:
        if args.segmentation == "windows":
            how = f"window {recognizer._window_seconds(args.window):g} s, hop {args.hop:g} s"
        else:
            how = f"an emotion per utterance when you pause, updated every {args.hop:g} s while you speak"
        print(
            f"listening to {microphone.describe()} at {microphone.sampling_rate} Hz ({how}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        segments = listen(
            recognizer, microphone.chunks(args.duration), sampling_rate=microphone.sampling_rate, **options
        )
        try:
            for segment in segments:
                _print(segment.to_dict())
        except KeyboardInterrupt:
            pass
        if microphone.overflows:
            print(f"warning: {microphone.overflows} input overflows (audio was lost)", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(args.model, device="cpu")
    quantize = None if args.quantize == "none" else args.quantize
    folder = recognizer.export_onnx(args.onnx, quantize=quantize)
    info = json.loads((folder / "onnx_export.json").read_text())
    _print({"onnx": str(folder), **info})
    return 0


def _train(argv: Sequence[str]) -> int:
    """``ser-hf train``: the training pipeline (examples/finetune.py's flags); the test metrics as JSON on
    stdout, the logs and progress on stderr."""
    from .arguments import SERArgumentParser
    from .trainer import EmotionTrainer

    parser = SERArgumentParser(prog="ser-hf train", description="Train a speech emotion recognizer (two phases).")
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=list(argv))
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout keeps only the results
        outcome = EmotionTrainer(model_args, data_args, training_args, progress=_stderr).train()
    print(json.dumps({k: round(v, 4) for k, v in outcome.test_metrics.items()}, indent=2))
    if outcome.hub_commit_url:
        print("pushed:", outcome.hub_commit_url)
    return 0


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Saved model folder (PyTorch or exported ONNX) or Hub id.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (PyTorch and ONNX Runtime).")


def _window_options(parser: argparse.ArgumentParser, *, recording: bool = True) -> None:
    parser.add_argument(
        "--segmentation",
        choices=["utterances", "windows"],
        default="utterances",
        help="utterances: one line per utterance, cut at pauses (default); windows: fixed windows every --hop.",
    )
    adapt = ["auto", "online", "recording", "off"] if recording else ["auto", "online", "off"]
    parser.add_argument(
        "--adapt",
        choices=adapt,
        default="auto",
        help="Adapt to the speaker: online (to the voice heard so far; what auto does for models that adapt), "
        + ("recording (the whole file first: one speaker), " if recording else "")
        + "or off.",
    )
    parser.add_argument(
        "--min-pause",
        "--min_pause",
        type=float,
        default=None,
        help=f"Silence that ends an utterance (s; default {DEFAULT_MIN_PAUSE:g}).",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        help="Fixed windows: their length (s; default 3, or the model's window if shorter). Utterances: the "
        "longest stretch predicted at once (default the model's window).",
    )
    parser.add_argument(
        "--hop", type=float, default=1.0, help="Hop between windows, or between the updates of an utterance (s)."
    )
    parser.add_argument(
        "--silence-threshold-db",
        "--silence_threshold_db",
        type=float,
        default=SILENCE_THRESHOLD_DB,
        help="Sound quieter than this (dBFS) is never speech (fixed windows: marked silent).",
    )


def _serve(args: argparse.Namespace) -> int:
    from .web import launch

    launch(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-hf", description="Speech emotion recognition with transformers.")
    parser.add_argument(
        "--verbose", action="store_true", help="Show the libraries' logs, progress bars and warnings (any command)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser(
        "predict",
        help="Recognise the emotion in audio files (one JSON line each; with --timeline, one per utterance, or per "
        "fixed window with --segmentation windows).",
    )
    predict.add_argument("files", nargs="+", help="Audio files (wav, flac, ogg, ...).")
    _model_options(predict)
    predict.add_argument("--batch-size", "--batch_size", type=int, default=8)
    predict.add_argument(
        "--errors",
        choices=["return", "raise"],
        default="return",
        help="An unusable file: 'return' prints an error line for it and goes on (exit 1 at the end); "
        "'raise' stops before predicting anything (exit 2).",
    )

    predict.add_argument(
        "--speaker_clips",
        "--speaker-clips",
        action="append",
        default=None,
        metavar="PATH",
        help="Speaker-adaptive models: adapt to the speaker from these clips first (files or folders; repeatable).",
    )
    predict.add_argument(
        "--timeline",
        action="store_true",
        help="Emotion over time: one JSON line per utterance (or fixed window) as it is read (files of any length).",
    )
    _window_options(predict)
    predict.add_argument(
        "--smoothing", type=int, default=1, help="Fixed windows: average over this many neighbouring windows."
    )

    listen = commands.add_parser(
        "listen",
        help="Recognise emotion live from the microphone, utterance by utterance (needs ser-hf[live]).",
    )
    _model_options(listen)
    _window_options(listen, recording=False)
    listen.add_argument("--input-device", "--input_device", default=None, help="sounddevice input index or name.")
    listen.add_argument("--sampling-rate", "--sampling_rate", type=int, default=None, help="Recording rate (Hz).")
    listen.add_argument("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")

    export = commands.add_parser("export", help="Export a model for CPU serving with ONNX Runtime (ser-hf[export]).")
    export.add_argument("--model", required=True, help="Saved PyTorch model folder or Hub id.")
    export.add_argument("--onnx", required=True, metavar="OUT_DIR", help="Folder to write the ONNX model to.")
    export.add_argument("--quantize", choices=["none", "int8"], default="none", help="Dynamic int8 quantization.")

    serve = commands.add_parser("serve", help="Serve a web page: upload or record speech, see the emotion live.")
    serve.add_argument("--model", required=True, help="Saved model folder or Hub model id.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 for the whole network).")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--max-upload-mb", "--max_upload_mb", type=float, default=50.0, help="Largest upload accepted.")
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")

    commands.add_parser(
        "evaluate",
        help="Speaker-independent cross-validation (--cv K), leave one corpus out (--test_corpus), or score a "
        "trained model on another corpus (see `ser-hf evaluate --help`).",
        add_help=False,
    )
    commands.add_parser(
        "train",
        help="Train a recognizer (the flags of examples/finetune.py; see `ser-hf train --help`).",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in argv:  # anywhere on the line: library logs, progress bars and warnings back on
        import logging
        import os

        argv.remove("--verbose")
        os.environ["SER_HF_VERBOSE"] = "1"
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = build_parser()
    try:
        if argv and argv[0] in ("train", "evaluate"):
            return (_train if argv[0] == "train" else _evaluate)(argv[1:])
        args = parser.parse_args(argv)
        handlers = {"predict": _predict, "listen": _listen, "export": _export, "serve": _serve}
        return handlers[args.command](args)
    except SerHfError as err:
        print(f"ser-hf: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
