"""Run a frozen convolutional front end once per clip, and train on its cached outputs.

wav2vec2-style encoders (wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW) start with a CNN
"feature encoder" that ser-hf freezes by default. Its output for a clip never changes while training, yet
every training step recomputes it, for every clip of every epoch (on 2 CPU cores, 1.4 s of a ~7-9 s
wav2vec2-base step of 8 clips). `add_front_end_features` computes it once per clip, stored through
`datasets` in an Arrow file named by the decoded audio and the front end's weights (so epochs, folds and
later runs reuse it); `FrontEndCollator` pads those features into batches, and `front_end_bypassed` lets
the model take them in place of waveforms. Models without such a front end (Whisper) are unaffected.

Each clip is encoded alone, as `EmotionRecognizer.predict` sees it. For a front end with layer
normalisation that is exactly what a padded batch computes on the clip's own frames; for one with group
normalisation (wav2vec2-base) a padded batch would also normalise over the padding, which the cache does not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn

from .features import AudioCollator, add_waveform_columns, cache_folder, extractor_settings, is_cached, weights_digest
from .hardware import default_device

#: Bump when the cached features change, so old caches are not reused.
FRONT_END_VERSION = "1"
#: The column that holds a clip's front-end output, ``(frames, channels)`` float32.
FRONT_END_COLUMN = "front_end"


def frozen_front_end(model: nn.Module) -> nn.Module | None:
    """The model's CNN feature encoder when it has one and it is frozen, else ``None``."""
    module = getattr(getattr(model, "base_model", None), "feature_extractor", None)
    if not isinstance(module, nn.Module) or not hasattr(module, "conv_layers"):
        return None
    if any(p.requires_grad for p in module.parameters()):
        return None
    return module


def front_end_to_cache(model: nn.Module, chosen: bool | None, *, torch_compile: bool = False) -> nn.Module | None:
    """The front end whose outputs training should cache (``--cache_front_end``), or ``None``.

    Unset (``chosen=None``): the model's frozen CNN front end if it has one, unless the model is compiled.
    ``True`` without a frozen front end, or with ``torch_compile``, is an error.
    """
    module = frozen_front_end(model)
    if chosen is None:
        return None if torch_compile else module
    if not chosen:
        return None
    if module is None:
        raise ValueError(
            f"--cache_front_end true needs a frozen CNN front end, and {type(model).__name__} has none "
            "(keep --freeze_feature_encoder true; Whisper has no such front end)"
        )
    if torch_compile:
        raise ValueError("--cache_front_end true cannot be combined with --torch_compile (it patches the front end)")
    return module


def output_frames(model: nn.Module, samples: int) -> int:
    """Frames the front end gives for ``samples`` input samples."""
    return int(model.base_model._get_feat_extract_output_lengths(torch.tensor(samples)).item())


def _encode_batch(
    batch: dict[str, list[Any]], module: nn.Module, collator: AudioCollator, device: torch.device
) -> dict[str, list[Any]]:
    out = []
    for waveform in batch["waveform"]:
        values = collator.encode([waveform])[collator.feature_extractor.model_input_names[0]]
        with torch.inference_mode():
            out.append(module(values.to(device))[0].transpose(0, 1).float().cpu().numpy())
    return {FRONT_END_COLUMN: out}


def add_front_end_features(
    decoded: Dataset,
    model: nn.Module,
    feature_extractor: Any,
    *,
    audio_key: str,
    min_samples: int = 1,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Dataset:
    """Add ``front_end`` (the frozen front end's ``(frames, channels)`` output per clip) to ``decoded``.

    ``decoded`` comes from `ser_hf.features.prepare_audio` and ``audio_key`` names its decoded audio
    (`ser_hf.features.decoded_audio_key`). The features are cached in an Arrow file keyed by that, the
    front end's weights and the feature extractor's settings, so the same front end on the same audio
    runs once, ever (float32: about 0.1 MB per second of audio for a 512-channel front end). The front
    end runs on ``device`` (default: the GPU when there is one) and is back where it was afterwards.
    Clips shorter than ``min_samples`` are zero-padded to it first, as `AudioCollator` pads them.
    """
    module = frozen_front_end(model)
    if module is None:
        raise ValueError(
            f"{type(model).__name__} has no frozen CNN front end to cache (freeze it with freeze_feature_encoder; "
            "Whisper and other models without one train on waveforms or features as they are)"
        )
    settings = extractor_settings(feature_extractor)
    key = Hasher.hash((FRONT_END_VERSION, audio_key, weights_digest(module), settings, min_samples))
    cache_file = cache_folder(cache_dir) / f"front-end-{key}.arrow"
    channels = int(model.config.conv_dim[-1])
    features = datasets.Features({FRONT_END_COLUMN: datasets.Array2D(shape=(None, channels), dtype="float32")})
    collator = AudioCollator(feature_extractor, min_samples=min_samples)
    was_on = next(module.parameters()).device
    on = torch.device(device) if device is not None else default_device()
    was_training = module.training
    module.eval()
    try:
        return add_waveform_columns(
            decoded,
            _encode_batch,
            fn_kwargs={
                "module": module if is_cached(cache_file) else module.to(on),
                "collator": collator,
                "device": on,
            },
            features=features,
            cache_file=cache_file,
            desc="Running the frozen front end once per clip",
        )
    finally:
        module.to(was_on).train(was_training)


@contextlib.contextmanager
def front_end_bypassed(module: nn.Module | None) -> Iterator[None]:
    """Inside, ``module`` passes 3-D ``(batch, channels, frames)`` inputs (its cached outputs) through
    unchanged, and still runs on waveforms. The patch is on this instance only and leaves its weights alone."""
    if module is None or "forward" in vars(module):  # nothing to bypass, or already bypassed
        yield
        return
    run = module.forward

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return inputs if inputs.dim() == 3 else run(inputs)

    module.forward = forward
    try:
        yield
    finally:
        del module.forward


@dataclass
class FrontEndCollator(AudioCollator):
    """`AudioCollator` for rows that carry cached front-end features (other rows: waveforms, as before).

    Pads ``front_end`` features into ``input_values`` of shape ``(batch, channels, frames)`` (zeros after
    a clip's frames) and, when the feature extractor returns one, the waveform-level attention mask the
    model expects, from which it derives the frame mask. Clips longer than ``max_samples`` are cropped to
    the frames those samples give (a random window when ``random_crop``). ``frames_for`` maps samples to
    frames (`output_frames`).
    """

    frames_for: Any = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if FRONT_END_COLUMN not in rows[0]:
            return super().__call__(rows)
        max_frames = self.frames_for(self.max_samples) if self.max_samples else None
        clips, samples = [], []
        for row in rows:
            frames = np.asarray(row[FRONT_END_COLUMN], dtype=np.float32)
            length = max(int(row["length"]), self.min_samples)
            if max_frames is not None and frames.shape[0] > max_frames:
                start = int(torch.randint(0, frames.shape[0] - max_frames + 1, ()).item()) if self.random_crop else 0
                frames, length = frames[start : start + max_frames], self.max_samples
            clips.append(torch.from_numpy(frames))
            samples.append(length)
        width = max(samples)
        padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)  # (batch, frames, channels)
        if self.pad_to_multiple_of:  # the frames a waveform batch padded to that multiple would give
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            padded = torch.nn.functional.pad(padded, (0, 0, 0, max(0, self.frames_for(width) - padded.shape[1])))
        batch: dict[str, torch.Tensor] = {
            self.feature_extractor.model_input_names[0]: padded.transpose(1, 2).contiguous()
        }
        if getattr(self.feature_extractor, "return_attention_mask", False):
            batch["attention_mask"] = (torch.arange(width) < torch.tensor(samples)[:, None]).to(torch.int32)
        if "label" in rows[0]:
            batch["labels"] = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        return batch
