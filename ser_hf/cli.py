"""The ``ser-hf`` command line: thin sub-commands over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import SerHfError


def _predict(args: argparse.Namespace) -> int:
    from .recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.from_pretrained(args.model, device=args.device)
    results = recognizer.predict(list(args.files), batch_size=args.batch_size, errors=args.errors)
    failed = 0
    for path, result in zip(args.files, results):
        if isinstance(result, Exception):
            failed += 1
            record = {"file": path, "error": getattr(result, "problem", str(result))}
            record["reason"] = getattr(result, "reason", type(result).__name__)
        else:
            record = {"file": path, **result.to_dict()}
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


def _train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .training import parse_args, run_training

    model_args, data_args, training_args = parse_args(rest)
    outcome = run_training(model_args, data_args, training_args)
    print(json.dumps(outcome.test_metrics, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .web import launch

    launch(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-hf", description="Speech emotion recognition with transformers.")
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="Recognise the emotion in audio files (one JSON line each).")
    predict.add_argument("files", nargs="+", help="Audio files (wav, flac, ogg, ...).")
    predict.add_argument("--model", required=True, help="Saved model folder or Hub model id.")
    predict.add_argument("--batch-size", "--batch_size", type=int, default=8)
    predict.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    predict.add_argument(
        "--errors",
        choices=["return", "raise"],
        default="return",
        help="An unusable file: 'return' prints an error line for it and goes on (exit 1 at the end); "
        "'raise' stops before predicting anything (exit 2).",
    )

    serve = commands.add_parser("serve", help="Serve a web page: upload or record speech, see the emotion live.")
    serve.add_argument("--model", required=True, help="Saved model folder or Hub model id.")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 for the whole network).")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--max-upload-mb", "--max_upload_mb", type=float, default=50.0, help="Largest upload accepted.")
    serve.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")

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
    args = parser.parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _predict(args)
    except SerHfError as err:
        print(f"ser-hf: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
