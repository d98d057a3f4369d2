"""`ser-hf listen` against a fake `sounddevice` module (the machine has no microphone), and its errors."""

import importlib.abc
import json
import sys
import threading
import types

import numpy as np
import pytest
import soxr
from conftest import RATE, synth_clip

from ser_hf.cli import main
from ser_hf.live import import_sounddevice

MIC_RATE = 48_000


def fake_sounddevice(signal: np.ndarray, *, has_input: bool = True) -> types.ModuleType:
    """A stand-in for the sounddevice module: an input stream whose callback plays ``signal`` (at 48 kHz)."""
    module = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(device=None, kind=None):
        if not has_input:
            raise PortAudioError("Error querying device -1")
        return {"name": "fake mic", "default_samplerate": float(MIC_RATE), "max_input_channels": 1}

    class InputStream:
        def __init__(self, *, device, channels, samplerate, dtype, blocksize, callback):
            assert channels == 1 and dtype == "float32" and samplerate == MIC_RATE
            self.blocksize, self.callback, self.thread = blocksize, callback, None

        def _play(self):
            for start in range(0, signal.size, self.blocksize):
                block = signal[start : start + self.blocksize]
                self.callback(block[:, None].copy(), block.size, None, None)

        def start(self):
            self.thread = threading.Thread(target=self._play, daemon=True)
            self.thread.start()

        def stop(self):
            self.thread.join()

        def close(self):
            pass

    module.PortAudioError = PortAudioError
    module.query_devices = query_devices
    module.InputStream = InputStream
    return module


def test_listen_prints_a_segment_per_hop(trained, monkeypatch, capsys):
    speech = np.concatenate([synth_clip(5, 7, 1, seconds=3.0), np.zeros(RATE, np.float32)])
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(soxr.resample(speech, RATE, MIC_RATE)))
    model = str(trained.output_dir)
    code = main(
        ["listen", "--model", model, "--segmentation", "windows", "--window", "1", "--hop", "1", "--duration", "4"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    segments = [json.loads(line) for line in captured.out.splitlines()]
    assert [s["start"] for s in segments] == [0.0, 1.0, 2.0, 3.0]
    assert [s["silent"] for s in segments] == [False, False, False, True]
    assert [s["label"] for s in segments[:3]].count("angry") >= 2
    assert "default microphone at 48000 Hz" in captured.err


def test_listen_without_sounddevice_says_what_to_install(trained, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    assert main(["listen", "--model", str(trained.output_dir)]) == 2
    assert "pip install 'ser-hf[live]'" in capsys.readouterr().err


def test_listen_without_a_microphone_says_so(trained, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(np.zeros(10, np.float32), has_input=False))
    assert main(["listen", "--model", str(trained.output_dir)]) == 2
    err = capsys.readouterr().err
    assert "no usable microphone" in err and "Error querying device -1" in err


def test_missing_portaudio_library_is_explained(monkeypatch):
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(Exception, match="libportaudio2"):
        import_sounddevice()
