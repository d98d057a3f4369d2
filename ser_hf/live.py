"""Live audio: the default (or a chosen) microphone through `sounddevice` (the optional ``live`` extra).

`Microphone` opens an input stream whose callback queues mono float32 chunks; `listen` pushes any
iterable of chunks into the recognizer's stream and yields its segments as they come: by default each
utterance's emotion when the pause after it is heard, and provisional labels while the speaker talks on.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .errors import SerHfError
from .timeline import Segment

#: How long `Microphone.chunks` waits for audio before deciding the device delivers none (seconds).
NO_AUDIO_TIMEOUT = 5.0


def import_sounddevice() -> Any:
    """The `sounddevice` module, or a `SerHfError` that says how to install it (or PortAudio)."""
    try:
        import sounddevice
    except ImportError as err:
        raise SerHfError("live audio needs the optional package 'sounddevice': pip install 'ser-hf[live]'") from err
    except OSError as err:  # sounddevice raises OSError when the PortAudio C library is missing
        raise SerHfError(
            f"sounddevice could not load the PortAudio library ({err}); install it "
            "(Debian/Ubuntu: apt install libportaudio2)"
        ) from err
    return sounddevice


class Microphone:
    """An input device as a context manager; `chunks` yields mono float32 blocks as they are recorded.

    ``device`` is a sounddevice device index or name (default: the system's default input);
    ``sampling_rate`` defaults to the device's own rate (the stream resamples to the model's).
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sampling_rate: int | None = None,
        block_seconds: float = 0.1,
    ):
        self.device = device
        self.requested_rate = sampling_rate
        self.block_seconds = block_seconds
        self.sampling_rate = 0
        self.overflows = 0
        self._queue: queue.Queue[np.ndarray] = queue.Queue()
        self._stream: Any = None

    def describe(self) -> str:
        return "the default microphone" if self.device is None else f"input device {self.device!r}"

    def __enter__(self) -> Microphone:
        sd = import_sounddevice()
        try:
            info = sd.query_devices(self.device, kind="input")
        except (sd.PortAudioError, ValueError) as err:
            raise SerHfError(
                f"no usable microphone: {self.describe()} is not available ({err}); "
                "list the devices with `python -m sounddevice` and pick one with --input-device"
            ) from err
        self.sampling_rate = int(self.requested_rate or info["default_samplerate"])
        try:
            self._stream = sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self.sampling_rate,
                dtype="float32",
                blocksize=max(1, int(self.block_seconds * self.sampling_rate)),
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as err:
            raise SerHfError(f"could not record from {self.describe()} at {self.sampling_rate} Hz: {err}") from err
        return self

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        self._queue.put(np.array(indata[:, 0] if indata.ndim == 2 else indata, dtype=np.float32))

    def chunks(self, max_seconds: float | None = None) -> Iterator[np.ndarray]:
        """Recorded blocks in order, until ``max_seconds`` of audio (or forever)."""
        if self._stream is None:
            raise SerHfError("open the microphone first: `with Microphone() as mic: ...`")
        limit = None if max_seconds is None else int(max_seconds * self.sampling_rate)
        received = 0
        while limit is None or received < limit:
            try:
                chunk = self._queue.get(timeout=NO_AUDIO_TIMEOUT)
            except queue.Empty:
                raise SerHfError(f"{self.describe()} delivered no audio for {NO_AUDIO_TIMEOUT:.0f} s") from None
            if limit is not None:
                chunk = chunk[: limit - received]
            received += chunk.size
            yield chunk

    def __exit__(self, *exc: Any) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


def listen(recognizer: Any, chunks: Iterable[np.ndarray], *, sampling_rate: int, **options: Any) -> Iterator[Segment]:
    """Segments for live chunks at ``sampling_rate`` as soon as they are known; the tail at the end.
    ``options``: `EmotionRecognizer.stream`'s (``segmentation``, ``adapt``, ``hop_seconds``, ...)."""
    stream = recognizer.stream(sampling_rate=sampling_rate, **options)
    try:
        for chunk in chunks:
            yield from stream.push(chunk)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the recording; what was heard after the last full window is still recognised
    yield from stream.flush()
