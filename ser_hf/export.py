"""Export for CPU serving: ONNX (torch.onnx, dynamo exporter), dynamic int8 quantization, ONNX Runtime.

`export_onnx` writes a folder with ``model.onnx``, the transformers ``config.json`` (labels, window),
the feature extractor's ``preprocessor_config.json`` and ``onnx_export.json`` (how it was made).
`OnnxAudioClassifier` runs such a folder with ONNX Runtime behind the same call as a transformers
model (keyword tensors in, ``.logits`` out), so `EmotionRecognizer` loads it with its usual API:
``EmotionRecognizer.from_pretrained(folder)`` and then predict, predict_timeline and stream.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from .atomic import atomic_directory
from .errors import SerHfError
from .features import AudioCollator, is_fixed_window, min_input_samples

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXPORT_INFO_FILE = "onnx_export.json"
QUANTIZATIONS = ("int8",)
#: Ops quantized by default: the matrix products carry almost all of the FLOPs of these encoders, and
#: quantizing the convolutions (ConvInteger) costs accuracy on raw waveforms without gaining speed.
DEFAULT_QUANTIZED_OPS = ("MatMul",)
#: Largest |logit| difference accepted between PyTorch and the fp32 ONNX graph on the export check.
FP32_TOLERANCE = 1e-3
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _require(module: str, extra: str = "export") -> Any:
    """Import an optional dependency or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SerHfError(f"this needs the optional package {module!r}: pip install 'ser-hf[{extra}]' ({err})") from err


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold a noisy library logger at ERROR, and its deprecation and shape-naming warnings, for the duration."""
    noisy = logging.getLogger(logger_name)
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used", category=UserWarning)
            yield
    finally:
        noisy.setLevel(level)


def is_onnx_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by `export_onnx`."""
    folder = Path(path)
    return (folder / ONNX_FILE).is_file() and (folder / EXPORT_INFO_FILE).is_file()


#: The feature extractors' tensors an exported graph may take (torch.export needs them named).
MODEL_INPUTS = ("input_values", "attention_mask", "input_features")


class _LogitsOnly(torch.nn.Module):
    """The classifier with named tensor inputs and a logits tensor output (what ONNX graphs carry)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        given = {"input_values": input_values, "attention_mask": attention_mask, "input_features": input_features}
        return self.model(**{k: v for k, v in given.items() if v is not None}).logits


def _example_batch(model: Any, feature_extractor: Any) -> dict[str, torch.Tensor]:
    """A two-clip batch of unequal lengths (equal once a fixed window pads them) to trace the graph with."""
    rate = int(feature_extractor.sampling_rate)
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(int(rate * seconds)).astype(np.float32) for seconds in (1.0, 0.7)]
    collator = AudioCollator(feature_extractor, min_samples=min_input_samples(model.config))
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in collator.encode(clips).items()}


def _dynamic_shapes(batch: dict[str, torch.Tensor], fixed_window: bool) -> dict[str, dict[int, Any]]:
    """Batch is dynamic everywhere; time too, except in a fixed-window (Whisper) model's features."""
    from torch.export import Dim

    unknown = sorted(set(batch) - set(MODEL_INPUTS))
    if unknown:
        raise SerHfError(f"cannot export a model whose feature extractor gives {unknown} (known: {MODEL_INPUTS})")
    batch_dim, time_dim = Dim("batch"), Dim("time")
    shapes: dict[str, dict[int, Any]] = {}
    for name, tensor in batch.items():
        shapes[name] = {0: batch_dim} if fixed_window or tensor.dim() < 2 else {0: batch_dim, 1: time_dim}
    return shapes


def _session(model_file: str | os.PathLike, num_threads: int | None = None) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: Any,
    feature_extractor: Any,
    output_dir: str | os.PathLike,
    *,
    quantize: str | None = None,
    quantized_ops: tuple[str, ...] = DEFAULT_QUANTIZED_OPS,
    opset_version: int | None = None,
    model_card: Any = None,
) -> Path:
    """Export a transformers audio classifier to ``output_dir`` (ONNX, optionally dynamic int8), atomically.

    The graph takes the feature extractor's tensors (``input_values`` [+ ``attention_mask``], or Whisper's
    ``input_features``) with dynamic batch and time axes and returns logits. The fp32 graph is checked
    against PyTorch before anything is written. ``model_card`` (the model's `huggingface_hub.ModelCard`)
    goes along as ``README.md``, with a section on the export.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise SerHfError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _require(module)
    target = Path(output_dir)
    if target.is_dir() and any((target / name).exists() for name in _WEIGHT_FILES):
        raise SerHfError(f"{target}: holds a PyTorch model; export the ONNX model to another folder")

    model = model.eval()
    batch = _example_batch(model, feature_extractor)
    fixed_window = is_fixed_window(feature_extractor)
    wrapper = _LogitsOnly(model).eval()
    with tempfile.TemporaryDirectory(prefix="ser-hf-onnx-") as tmp:
        fp32_file = Path(tmp) / ONNX_FILE
        logger.info("exporting %s to ONNX (dynamo exporter)", type(model).__name__)
        with torch.inference_mode(False), torch.no_grad(), _quiet("torch.onnx"):
            program = torch.onnx.export(
                wrapper,
                (),
                kwargs=batch,
                dynamic_shapes=_dynamic_shapes(batch, fixed_window),
                dynamo=True,
                external_data=False,
                opset_version=opset_version,
                verbose=False,
            )
            program.save(str(fp32_file))
            expected = model(**batch).logits.float().cpu().numpy()
        got = _session(fp32_file).run(None, {k: _numpy(v) for k, v in batch.items()})[0]
        difference = float(np.abs(got - expected).max())
        if difference > FP32_TOLERANCE:
            raise SerHfError(
                f"the ONNX graph of {type(model).__name__} differs from PyTorch by {difference:.2e} "
                f"(over {FP32_TOLERANCE:g}); not written"
            )
        info = {
            "format": "onnx",
            "file": ONNX_FILE,
            "inputs": list(batch),
            "dynamic_time_axis": not fixed_window,
            "quantization": quantize,
            "quantized_ops": list(quantized_ops) if quantize else [],
            "architecture": type(model).__name__,
            "exporter": f"torch.onnx dynamo (torch {torch.__version__})",
            "fp32_max_logit_difference": difference,
        }
        with atomic_directory(target) as staged:
            if quantize == "int8":
                quantization = _require("onnxruntime.quantization")
                with _quiet("root"):  # onnxruntime suggests an optional pre-processing step on the root logger
                    quantization.quantize_dynamic(
                        fp32_file,
                        staged / ONNX_FILE,
                        weight_type=quantization.QuantType.QInt8,
                        per_channel=True,
                        op_types_to_quantize=list(quantized_ops),
                    )
            else:
                shutil.copyfile(fp32_file, staged / ONNX_FILE)
            model.config.save_pretrained(staged)
            feature_extractor.save_pretrained(staged)
            (staged / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
            if model_card is not None:
                from .model_card import card_for_onnx

                card_for_onnx(model_card, info).save(staged / "README.md")
    return target


class OnnxAudioClassifier:
    """An exported classifier run by ONNX Runtime, called like a transformers model.

    ``model(input_values=...)`` (torch tensors or arrays) returns an object with ``.logits`` (a CPU
    tensor). It runs on the CPU whatever device is asked; ``to``/``eval`` are accepted and ignored.
    """

    def __init__(self, folder: str | os.PathLike, *, num_threads: int | None = None):
        from transformers import AutoConfig

        self.folder = Path(folder)
        if not is_onnx_folder(self.folder):
            raise SerHfError(f"{self.folder}: not an exported ONNX model (needs {ONNX_FILE} and {EXPORT_INFO_FILE})")
        self.info: dict[str, Any] = json.loads((self.folder / EXPORT_INFO_FILE).read_text())
        self.config = AutoConfig.from_pretrained(self.folder)
        self.session = _session(self.folder / ONNX_FILE, num_threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def quantization(self) -> str | None:
        return self.info.get("quantization")

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise SerHfError(f"{self.folder}: the ONNX model needs inputs {missing}, got {sorted(inputs)}")
        feed = {name: _numpy(inputs[name]) for name in self.input_names}
        logits = self.session.run(None, feed)[0]
        return SimpleNamespace(logits=torch.from_numpy(np.asarray(logits)))

    def to(self, device: Any) -> OnnxAudioClassifier:
        return self

    def eval(self) -> OnnxAudioClassifier:
        return self

    def save_pretrained(self, save_directory: str | os.PathLike, *, state_dict: Any = None) -> None:
        """Copy the graph, the config and the export notes (the feature extractor saves itself)."""
        if state_dict is not None:
            raise SerHfError(f"{self.folder}: an ONNX graph holds its own weights; no state_dict replaces them")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in (ONNX_FILE, EXPORT_INFO_FILE):
            shutil.copyfile(self.folder / name, directory / name)
        self.config.save_pretrained(directory)

    def __repr__(self) -> str:
        return f"OnnxAudioClassifier({self.folder}, quantization={self.quantization})"


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array
