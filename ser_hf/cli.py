"""The ``ser-hf`` command line: thin sub-commands over the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import SerHfError
from .timeline import SILENCE_THRESHOLD_DB


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
    results = recognizer.predict(
        list(args.files), batch_size=args.batch_size, errors=args.errors, trim_silence=args.trim_silence
    )
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


def _evaluate(args: argparse.Namespace) -> int:
    from .corpora import load_corpus

    corpus = load_corpus(args.data_dir, args.corpus, on_invalid=args.on_invalid)
    if args.cv:
        from .crossval import cross_validate

        options = _strategy_options(args)
        result = cross_validate(
            corpus,
            args.model,
            strategy=args.strategy,
            n_folds=args.cv,
            folds=_parse_folds(args.folds),
            validation=int(args.validation) if str(args.validation).isdigit() else args.validation,
            speaker_column=args.speaker_column,
            output_dir=args.output_dir,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            **options,
        )
        print(result.to_markdown())
        if args.output_dir:
            print(f"report: {args.output_dir}/cv_report/ (cv_report.json, cv_report.md, confusion_matrix.csv/.png)")
        return 0
    from .crosscorpus import evaluate_across
    from .recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)
    result = evaluate_across(recognizer, corpus)
    print(json.dumps(result, indent=2))
    return 0


def _strategy_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {"trim_silence": not args.no_trim_silence, "window_seconds": args.window_seconds}
    if args.strategy == "frozen":
        options["head_type"] = args.head or "stats"
        if args.speaker_adaptive:
            if options["head_type"] != "stats":
                raise SerHfError("--speaker_adaptive needs the statistics head (--head stats)")
            options["speaker_adaptive"] = True
    elif args.speaker_adaptive:
        raise SerHfError("--speaker_adaptive is for --strategy frozen (the statistics head)")
    elif args.head not in (None, "stats"):
        raise SerHfError(f"--head {args.head} is for --strategy frozen; the recipe trains the statistics head")
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    if args.device:
        options["device"] = args.device
    return options


def _parse_folds(text: str | None) -> list[list[str]] | None:
    """``"1,2,3,4;5,6,7,8;..."`` → test speakers per fold."""
    if not text:
        return None
    return [[s.strip() for s in group.split(",") if s.strip()] for group in text.split(";") if group.strip()]


def _add_strategy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strategy",
        default="frozen",
        choices=["frozen", "finetune"],
        help="frozen: cached encoder features + light head (fast); finetune: ser-hf's fine-tuning recipe.",
    )
    parser.add_argument(
        "--recipe",
        dest="strategy",
        action="store_const",
        const="finetune",
        help="Same as --strategy finetune (ser-hf's fine-tuning recipe). Takes the value 'ser-hf'.",
    )
    parser.add_argument(
        "--head",
        default=None,
        choices=["stats", "weighted"],
        help="Frozen path's head. stats (default): mean and std of every layer over the real frames + a linear "
        "classifier, saved as a LayerStatsForAudioClassification (plain transformers loads it with "
        "trust_remote_code=True); weighted: transformers' own weighted-layer-sum head (a plain "
        "*ForAudioClassification checkpoint, lower UA).",
    )
    parser.add_argument(
        "--speaker_adaptive",
        "--speaker-adaptive",
        action="store_true",
        help="Frozen statistics head: centre every clip on its speaker's mean (unlabelled clips; in cross-"
        "validation the test speakers' own). A different protocol, reported as such; the model then adapts to "
        "a speaker from a few of their clips (predict --speaker_clips).",
    )
    parser.add_argument(
        "--window_seconds",
        "--window-seconds",
        type=int,
        default=None,
        help="Whisper input window in seconds (default: the corpus' longest trimmed clip).",
    )
    parser.add_argument(
        "--no_trim_silence", "--no-trim-silence", action="store_true", help="Keep leading and trailing silence."
    )
    parser.add_argument("--cache_dir", "--cache-dir", default=None, help="Where encoder features are cached.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")


def _train_with_strategy(argv: Sequence[str]) -> int:
    from .corpora import load_corpus
    from .crossval import train_and_save
    from .splits import parse_speakers

    parser = argparse.ArgumentParser(prog="ser-hf train", description="Train with a ser-hf strategy.")
    parser.add_argument("--model_name_or_path", "--model", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--corpus", default="auto")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--test_actors", default="21,22,23,24")
    parser.add_argument("--eval_actors", default="19,20")
    _add_strategy_flags(parser)
    args = parser.parse_args(_recipe_to_strategy(argv))
    corpus = load_corpus(args.data_dir, args.corpus)
    trained = train_and_save(
        corpus,
        args.model_name_or_path,
        args.output_dir,
        strategy=args.strategy,
        test_speakers=parse_speakers(args.test_actors),
        validation_speakers=parse_speakers(args.eval_actors),
        **_strategy_options(args),
    )
    scores = trained.test_scores or {}
    print(json.dumps({f"test_{k}": scores[k] for k in ("ua", "wa", "macro_f1") if k in scores}, indent=2))
    return 0


def _recipe_to_strategy(argv: Sequence[str]) -> list[str]:
    """``--recipe ser-hf`` (or ``--recipe=ser-hf``) → ``--strategy finetune``."""
    out, items = [], list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--recipe" and i + 1 < len(items) and not items[i + 1].startswith("--"):
            if items[i + 1] != "ser-hf":
                raise SerHfError(f"unknown recipe {items[i + 1]!r}; the recipe is 'ser-hf'")
            out += ["--strategy", "finetune"]
            i += 2
            continue
        if item.startswith("--recipe="):
            if item.split("=", 1)[1] != "ser-hf":
                raise SerHfError(f"unknown recipe {item.split('=', 1)[1]!r}; the recipe is 'ser-hf'")
            out += ["--strategy", "finetune"]
        else:
            out.append(item)
        i += 1
    return out


def _predict_timeline(recognizer: Any, args: argparse.Namespace) -> int:
    """One JSON line per window of each file, printed as the file is read."""
    from .errors import AudioError

    failed = 0
    for path in args.files:
        try:
            for segment in recognizer.iter_timeline(
                path,
                window_seconds=args.window,
                hop_seconds=args.hop,
                smoothing=args.smoothing,
                silence_threshold_db=args.silence_threshold_db,
                batch_size=args.batch_size,
            ):
                _print({"file": path, **segment.to_dict()})
        except AudioError as err:
            failed += 1
            _print({"file": path, "error": err.problem})
    return 1 if failed else 0


def _listen(args: argparse.Namespace) -> int:
    from .live import Microphone, import_sounddevice, listen

    import_sounddevice()  # a missing package is reported before the model loads
    recognizer = _load(args)
    with Microphone(args.input_device, sampling_rate=args.sampling_rate) as microphone:
        print(
            f"listening to {microphone.describe()} at {microphone.sampling_rate} Hz "
            f"(window {recognizer._window_seconds(args.window):g} s, hop {args.hop:g} s); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        segments = listen(
            recognizer,
            microphone.chunks(args.duration),
            sampling_rate=microphone.sampling_rate,
            window_seconds=args.window,
            hop_seconds=args.hop,
            silence_threshold_db=args.silence_threshold_db,
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


def _train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    if any(a.startswith(("--strategy", "--recipe")) for a in rest):
        return _train_with_strategy(rest)
    from .training import parse_args, run_training

    model_args, data_args, training_args = parse_args(rest)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout keeps only the results
        outcome = run_training(model_args, data_args, training_args)
    print(json.dumps(outcome.test_metrics, indent=2))
    if outcome.hub_commit_url:
        print("pushed:", outcome.hub_commit_url)
    return 0


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Saved model folder (PyTorch or exported ONNX) or Hub id.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (PyTorch and ONNX Runtime).")


def _window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window", type=float, default=None, help="Window (s; default 3, or the model's window if shorter)."
    )
    parser.add_argument("--hop", type=float, default=1.0, help="Hop between windows (s).")
    parser.add_argument(
        "--silence-threshold-db",
        "--silence_threshold_db",
        type=float,
        default=SILENCE_THRESHOLD_DB,
        help="Windows quieter than this (dBFS) are marked silent.",
    )


def _serve(args: argparse.Namespace) -> int:
    from .web import launch

    launch(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-hf", description="Speech emotion recognition with transformers.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser(
        "predict", help="Recognise the emotion in audio files (one JSON line each, or per window with --timeline)."
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
        "--trim-silence",
        "--trim_silence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Cut leading/trailing silence first (default: the recognizer's setting).",
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
        "--timeline", action="store_true", help="Emotion over time: one JSON line per window (files of any length)."
    )
    _window_options(predict)
    predict.add_argument("--smoothing", type=int, default=1, help="Average over this many neighbouring windows.")

    listen = commands.add_parser("listen", help="Recognise emotion live from the microphone (needs ser-hf[live]).")
    _model_options(listen)
    _window_options(listen)
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

    evaluate = commands.add_parser(
        "evaluate",
        help="Speaker-independent cross-validation (--cv K), or score a trained model on another corpus.",
    )
    evaluate.add_argument("--data_dir", "--data-dir", required=True, help="Corpus folder, archive or manifest.")
    evaluate.add_argument(
        "--corpus", default="auto", help="auto, ravdess, crema-d, tess, savee, emodb, folders or manifest."
    )
    evaluate.add_argument(
        "--model", required=True, help="With --cv: the pretrained encoder. Without: a trained model to score."
    )
    evaluate.add_argument("--cv", type=int, default=None, help="Number of folds of whole speakers (RAVDESS: 6).")
    evaluate.add_argument("--folds", default=None, help="Test speakers per fold, e.g. '1,2,3,4;5,6,7,8;...'.")
    evaluate.add_argument(
        "--validation", default="next", help="'next' (the next fold's speakers) or a number of training speakers."
    )
    evaluate.add_argument("--speaker_column", "--speaker-column", default="speaker")
    evaluate.add_argument("--output_dir", "--output-dir", default=None, help="Where to write the reports.")
    evaluate.add_argument("--on_invalid", default="raise", choices=["raise", "skip"])
    _add_strategy_flags(evaluate)

    commands.add_parser(
        "train",
        help="Fine-tune a model (same flags as examples/finetune.py; see `ser-hf train --help`).",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        return _train(argparse.Namespace(), argv[1:])
    if argv and argv[0] == "evaluate":
        argv = ["evaluate", *_recipe_to_strategy(argv[1:])]
    args = parser.parse_args(argv)
    handlers = {"predict": _predict, "evaluate": _evaluate, "listen": _listen, "export": _export, "serve": _serve}
    try:
        return handlers[args.command](args)
    except SerHfError as err:
        print(f"ser-hf: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
