"""A local web page: upload or record speech, or stream the microphone, and see the emotion as it goes.

`EmotionPage` is the page's logic in plain Python over `EmotionRecognizer` (tested without a browser):
it turns a file, a recording or live microphone chunks into a `PageView` (a status line, the emotion's
probabilities, the timeline), and turns every bad input into a readable message, never a stack trace.
`build_app` wraps it in a Gradio ``Blocks`` app; `launch` loads a model and serves it (what
``ser-hf serve`` runs; examples/space/app.py runs the same on a Hugging Face Space).

Nothing is fetched from the internet: Gradio's analytics and version check are off, and the default
theme uses the fonts Gradio ships.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import audio
from .errors import (
    AudioError,
    EmptyAudioError,
    SerHfError,
    SilentAudioError,
    UnreadableAudioError,
)
from .recognizer import DEFAULT_WINDOW_SECONDS, EmotionRecognizer
from .timeline import SILENCE_THRESHOLD_DB, EmotionStream, Segment, rms_dbfs

# Before Gradio is imported anywhere: no telemetry, no version check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_TITLE = "Speech emotion recognition"
#: What a visitor is told to upload instead of a file this server cannot decode.
SUPPORTED_FORMATS = "WAV, FLAC, OGG (Vorbis/Opus) or MP3"
#: Common audio/video containers libsndfile does not decode (no FFmpeg here): named in the message.
UNSUPPORTED_EXTENSIONS = frozenset(
    {"aac", "ac3", "amr", "3gp", "m4a", "m4b", "mka", "mkv", "mov", "mp4", "webm", "wma"}
)
#: A recording whose every window is below the silence threshold but whose level (30 s blocks) reaches
#: this is taken as quiet speech and labelled with a warning; an empty room sits near -80 dBFS.
QUIET_FLOOR_DB = -75.0
TIMELINE_COLUMNS = ["start (s)", "end (s)", "emotion", "score"]
EMPTY_RECORDING = "⚠️ The recording is empty: no audio reached the server. Check the microphone and try again."
#: A stop pressed within this many seconds of a recording's summary belongs to that recording.
STOP_GRACE_SECONDS = 5.0


def _escape_markdown(text: str) -> str:
    """A file name shown in Markdown, with its formatting characters escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def average_scores(segments: Sequence[Segment]) -> dict[str, float] | None:
    """Mean probabilities over the voiced segments (``None`` when every window was silent)."""
    voiced = [s for s in segments if not s.silent]
    if not voiced:
        return None
    labels = list(voiced[0].scores)
    mean = np.mean([[s.scores[label] for label in labels] for s in voiced], axis=0)
    return {label: float(p) for label, p in zip(labels, mean)}


@dataclass(frozen=True)
class PageView:
    """What the page shows after an event.

    ``message`` is the status line (Markdown), ``scores`` the emotion's probabilities (``None`` for no
    result), ``segments`` the timeline (empty for a clip no longer than one window), ``error`` whether
    the message reports a problem with the input.
    """

    message: str
    scores: dict[str, float] | None = None
    segments: list[Segment] = field(default_factory=list)
    error: bool = False

    @property
    def label(self) -> str | None:
        """The top emotion shown, if any."""
        return max(self.scores, key=self.scores.__getitem__) if self.scores else None


@dataclass
class LiveSession:
    """One visitor's microphone stream (kept in Gradio's per-session state, never shared)."""

    stream: EmotionStream
    sampling_rate: int
    segments: list[Segment] = field(default_factory=list)
    seconds: float = 0.0
    #: When the recording was summarised (``time.monotonic()``); ``None`` while recording.
    stopped_at: float | None = None
    #: Held while a chunk or the summary is processed, so the two never interleave.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class EmotionPage:
    """The page's logic: files, recordings and live chunks in, `PageView` out; bad input → a message.

    ``window_seconds`` (default 3 s, or the model's window if shorter) and ``hop_seconds`` set the
    timeline and the live stream; a file longer than one window gets a timeline.
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        window_seconds: float | None = None,
        hop_seconds: float = 1.0,
        smoothing: int = 1,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
    ):
        if max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be positive, not {max_upload_mb}")
        self.recognizer = recognizer
        self.max_upload_mb = max_upload_mb
        self.window_seconds = window_seconds or min(
            DEFAULT_WINDOW_SECONDS, recognizer.window_seconds or DEFAULT_WINDOW_SECONDS
        )
        self.hop_seconds = hop_seconds
        self.smoothing = smoothing
        self.silence_threshold_db = silence_threshold_db

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    # ------------------------------------------------------------------ files
    def analyse(self, path: str | os.PathLike | None) -> PageView:
        """A file or finished recording: its emotion, and a timeline when it is longer than one window."""
        if path is None:
            return PageView("Upload a file or record from the microphone.")
        name = Path(path).name
        try:
            return self._analyse(Path(path), name)
        except AudioError as err:
            return PageView(self.explain(err, name, path=path), error=True)
        except SerHfError as err:
            message = str(err).replace(os.fspath(path), name)
            return PageView(f"⚠️ {_escape_markdown(name)}: {message}", error=True)
        except Exception:  # a bug must not show a stack trace to the visitor or stop the server
            logger.exception("analysing %s failed", name)
            return PageView(f"⚠️ {_escape_markdown(name)}: internal error; the server log has the details.", error=True)

    def _analyse(self, path: Path, name: str) -> PageView:
        size = path.stat().st_size
        if size > self.max_upload_bytes:
            return PageView(
                f"⚠️ {_escape_markdown(name)} is {size / 2**20:.1f} MB, over this server's "
                f"{self.max_upload_mb:g} MB upload limit.",
                error=True,
            )
        if size == 0:
            raise EmptyAudioError(name, "is an empty file (0 bytes)")
        duration = audio.audio_info(path, name=name).duration
        shown = _escape_markdown(name)
        if duration <= self.window_seconds:
            prediction = self.recognizer.predict(str(path))
            return PageView(
                f"**{shown}** ({duration:.1f} s): **{prediction.label}** ({prediction.score:.0%})",
                scores=dict(prediction.scores),
            )
        heading = f"**{shown}** ({duration:.1f} s)"
        segments = self._timeline(path, self.silence_threshold_db)
        if segments and all(s.silent for s in segments):
            level = max(rms_dbfs(block) for block in audio.iter_blocks(path, self.recognizer.sampling_rate))
            if level >= QUIET_FLOOR_DB:  # quiet speech, not an empty room: label it, and say so
                view = self._summary(heading, self._timeline(path, None))
                note = (
                    f" ⚠️ A very quiet recording ({level:.0f} dBFS): no window reached the "
                    f"{self.silence_threshold_db:g} dBFS speech level, so all were labelled; results may be unreliable."
                )
                return replace(view, message=view.message + note)
        return self._summary(heading, segments)

    def _timeline(self, path: Path, silence_threshold_db: float | None) -> list[Segment]:
        return self.recognizer.predict_timeline(
            str(path),
            window_seconds=self.window_seconds,
            hop_seconds=self.hop_seconds,
            smoothing=self.smoothing,
            silence_threshold_db=silence_threshold_db,
        )

    def _summary(self, heading: str, segments: list[Segment]) -> PageView:
        scores = average_scores(segments)
        silent = sum(s.silent for s in segments)
        if scores is None:
            return PageView(
                f"⚠️ {heading}: no speech found; every {self.window_seconds:g} s window is silent. "
                "Check that the microphone is on and not muted.",
                segments=segments,
                error=True,
            )
        top = max(scores, key=scores.__getitem__)
        voiced = len(segments) - silent
        note = f", {silent} silent" if silent else ""
        return PageView(
            f"{heading}: mostly **{top}** ({scores[top]:.0%} on average over {voiced} windows of "
            f"{self.window_seconds:g} s{note})",
            scores=scores,
            segments=segments,
        )

    def explain(self, err: AudioError, name: str, *, path: str | os.PathLike | None = None) -> str:
        """A readable message for an unusable input: what is wrong and what to do (server paths left out)."""
        shown = _escape_markdown(name)
        problem = err.problem.replace(os.fspath(path), name) if path is not None else err.problem
        if isinstance(err, UnreadableAudioError):
            extension = Path(name).suffix.lower().lstrip(".")
            if extension in UNSUPPORTED_EXTENSIONS:
                return (
                    f"⚠️ {shown}: the .{extension} format is not supported by this server. "
                    f"Convert it to {SUPPORTED_FORMATS}."
                )
            return f"⚠️ {shown} is not an audio file this server can read ({problem}). Upload {SUPPORTED_FORMATS}."
        if isinstance(err, EmptyAudioError):
            return f"⚠️ {shown} is empty ({problem}): nothing to analyse. Record or upload again."
        if isinstance(err, SilentAudioError):
            return (
                f"⚠️ {shown} is silent: nothing to recognise. Check that the microphone is on, selected and not muted."
            )
        return f"⚠️ {shown}: {problem}."

    # ------------------------------------------------------------ live stream
    def live_chunk(self, session: LiveSession | None, chunk: Any) -> tuple[LiveSession | None, PageView | None]:
        """One microphone chunk (``(sampling_rate, samples)``, int16 or float) → the session and the view.

        A chunk after a summarised recording starts a new one. (The browser's last buffered audio, sent
        when the visitor presses stop, still belongs to the recording: the summary comes after the stream
        has ended, see `build_app`.)
        """
        if chunk is None:
            return session, PageView("🎙️ Listening…")
        if session is None or session.stopped_at is not None:
            return self._live_chunk(None, chunk)
        with session.lock:
            if session.stopped_at is not None:  # summarised while this chunk waited
                return self._live_chunk(None, chunk)
            return self._live_chunk(session, chunk)

    def _live_chunk(self, session: LiveSession | None, chunk: Any) -> tuple[LiveSession | None, PageView]:
        try:
            rate, samples = _chunk_samples(chunk)
            if session is None or session.sampling_rate != rate:
                stream = self.recognizer.stream(
                    sampling_rate=rate,
                    window_seconds=self.window_seconds,
                    hop_seconds=self.hop_seconds,
                    silence_threshold_db=self.silence_threshold_db,
                )
                session = LiveSession(stream, rate)
            session.segments.extend(session.stream.push(samples))
            session.seconds += samples.size / rate
        except AudioError as err:
            return session, PageView(self.explain(err, "the microphone stream"), error=True)
        except Exception:
            logger.exception("live stream chunk failed")
            return session, PageView("⚠️ The live stream failed; the server log has the details.", error=True)
        return session, self._live_view(session)

    def _live_view(self, session: LiveSession) -> PageView:
        heard = f"🎙️ Listening: {session.seconds:.1f} s"
        if not session.segments:
            return PageView(f"{heard}; the first result comes after {self.window_seconds:g} s.")
        latest = session.segments[-1]
        if latest.silent:
            return PageView(f"{heard}, now silence", segments=list(session.segments))
        return PageView(
            f"{heard}, now **{latest.label}** ({latest.score:.0%})",
            scores=dict(latest.scores),
            segments=list(session.segments),
        )

    def live_stop_pressed(self, session: LiveSession | None) -> PageView | None:
        """The stop button: ``None`` when the recording's summary is coming or has just come (keep the page
        as it is), else a message that no audio reached the server."""
        if session is None or session.seconds == 0:
            return PageView(EMPTY_RECORDING, error=True)
        if session.stopped_at is None or time.monotonic() - session.stopped_at < STOP_GRACE_SECONDS:
            return None
        return PageView(EMPTY_RECORDING, error=True)  # the last summary is old: this recording sent nothing

    def live_stop(self, session: LiveSession | None) -> PageView:
        """End of a live recording: cover its tail and summarise the whole of it."""
        if session is None or session.seconds == 0:
            return PageView(EMPTY_RECORDING, error=True)
        with session.lock:
            session.stopped_at = time.monotonic()
            try:
                session.segments.extend(session.stream.flush())
            except Exception:
                logger.exception("closing the live stream failed")
        return self._summary(f"Recording ({session.seconds:.1f} s)", list(session.segments))


def _chunk_samples(chunk: Any) -> tuple[int, np.ndarray]:
    """Gradio's ``(sampling_rate, samples)`` microphone chunk → (rate, mono float32)."""
    rate, data = chunk
    samples = np.asarray(data)
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        samples = (samples.astype(np.float32) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    samples = audio.to_mono(samples.astype(np.float32, copy=False))
    return int(rate), audio.check_samples(samples, "<microphone>", allow_silence=True) if samples.size else samples


# ------------------------------------------------------------------ Gradio glue
def _gradio() -> Any:
    try:
        import gradio
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise SerHfError("the web app needs Gradio: pip install 'ser-hf[web]'") from err
    return gradio


def timeline_rows(segments: Sequence[Segment]) -> list[list[Any]]:
    """The timeline table: one row per window (start, end, emotion, score)."""
    return [[round(s.start, 2), round(s.end, 2), s.label, round(s.score, 3)] for s in segments]


def timeline_frame(segments: Sequence[Segment]) -> Any:
    """The timeline plot's data: each emotion's probability at each voiced window's centre."""
    import pandas as pd

    rows = [
        {"time (s)": round((s.start + s.end) / 2, 3), "probability": p, "emotion": label}
        for s in segments
        if not s.silent
        for label, p in s.scores.items()
    ]
    return pd.DataFrame(rows, columns=["time (s)", "probability", "emotion"])


def build_app(
    recognizer: EmotionRecognizer,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    window_seconds: float | None = None,
    hop_seconds: float = 1.0,
    smoothing: int = 1,
    silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
    title: str = DEFAULT_TITLE,
    concurrency_limit: int = 2,
    live_time_limit: int | None = 600,
) -> Any:
    """The Gradio app (a ``gradio.Blocks``) over ``recognizer``; serve it with `launch` or ``app.launch()``.

    ``concurrency_limit`` bounds how many files are analysed at once (and, separately, how many live
    chunks); ``live_time_limit`` ends a live stream after that many seconds.
    """
    gr = _gradio()
    page = EmotionPage(
        recognizer,
        max_upload_mb=max_upload_mb,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        smoothing=smoothing,
        silence_threshold_db=silence_threshold_db,
    )

    def show(view: PageView) -> tuple[Any, ...]:
        has_timeline = len(view.segments) > 1
        return (
            view.message,
            view.scores,
            gr.update(value=timeline_frame(view.segments), visible=has_timeline),
            gr.update(value=timeline_rows(view.segments), visible=has_timeline),
        )

    def analyse(path: str | None) -> tuple[Any, ...]:
        return show(page.analyse(path))

    def live_start() -> tuple[Any, ...]:
        return show(PageView("🎙️ Listening…"))

    def live_chunk(chunk: Any, session: LiveSession | None) -> tuple[Any, ...]:
        session, view = page.live_chunk(session, chunk)
        return (session, *show(view))

    def live_stop_pressed(session: LiveSession | None) -> tuple[Any, ...]:
        view = page.live_stop_pressed(session)
        return (gr.skip(),) * len(outputs) if view is None else show(view)  # None: keep what the page shows

    def live_stop(session: LiveSession | None) -> tuple[Any, ...]:
        return show(page.live_stop(session))  # marks the session (shared with the state) as summarised

    labels = ", ".join(recognizer.labels)
    # uploads and recordings are deleted from the server an hour after they arrive
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"# {title}\nUpload a file or record yourself, or stream the microphone and watch the emotion "
            f"change as you speak. Recognised emotions: {labels}. Files up to {max_upload_mb:g} MB "
            f"({SUPPORTED_FORMATS}); recordings longer than {page.window_seconds:g} s get a timeline."
        )
        with gr.Tabs():
            with gr.Tab("File or recording", id="file"):
                audio_in = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="audio-input"
                )
            with gr.Tab("Live microphone", id="live"):
                live_in = gr.Audio(
                    sources=["microphone"], type="numpy", streaming=True, label="Microphone", elem_id="live-input"
                )
        status = gr.Markdown("Upload a file or record from the microphone.", elem_id="status")
        emotion = gr.Label(num_top_classes=len(recognizer.labels), label="Emotion", elem_id="emotion")
        plot = gr.LinePlot(
            x="time (s)",
            y="probability",
            color="emotion",
            y_lim=[0, 1],
            label="Emotion over time",
            visible=False,
            elem_id="timeline-plot",
        )
        table = gr.Dataframe(
            headers=TIMELINE_COLUMNS, interactive=False, label="Timeline", visible=False, elem_id="timeline-table"
        )
        session = gr.State(None)
        outputs = [status, emotion, plot, table]

        analysis = {"fn": analyse, "inputs": audio_in, "outputs": outputs, "concurrency_id": "analyse"}
        audio_in.upload(**analysis, api_name="analyse", concurrency_limit=concurrency_limit)
        audio_in.stop_recording(**analysis, api_name="analyse_recording", concurrency_limit=concurrency_limit)
        audio_in.clear(lambda: show(PageView("Upload a file or record from the microphone.")), None, outputs)
        # The start event leaves the session alone (a late start must not drop the first chunks); a summarised
        # session is replaced by the next recording's first chunk (EmotionPage.live_chunk). The summary runs
        # after the stream event has ended: when it ends, Gradio sends the stream's last output once more,
        # which would overwrite a summary given by the stop event itself, and the browser's last buffered
        # audio (sent on stop) is then part of the recording. The stop event only reports a stream that
        # never began (no audio reached the server).
        live_in.start_recording(live_start, None, outputs, api_visibility="private")
        live = live_in.stream(
            live_chunk,
            inputs=[live_in, session],
            outputs=[session, *outputs],
            stream_every=0.5,
            time_limit=live_time_limit,
            concurrency_limit=concurrency_limit,
            concurrency_id="live",
            show_progress="hidden",
            api_visibility="private",
        )
        live.then(live_stop, inputs=session, outputs=outputs, api_visibility="private")
        live_in.stop_recording(live_stop_pressed, inputs=session, outputs=outputs, api_visibility="private")
    app.ser_hf_page = page  # the page logic, for tests and for `launch`'s upload limit
    return app


def launch(
    model: str | os.PathLike | EmotionRecognizer,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    device: str | None = None,
    block: bool = True,
    **app_kwargs: Any,
) -> Any:
    """Load ``model`` (a saved folder, a Hub id or a recognizer) and serve the page at http://host:port.

    With ``block=False`` it returns the running app at once (``app.close()`` stops it). Uploads over
    ``max_upload_mb`` are refused by the server before they are stored.
    """
    recognizer = (
        model if isinstance(model, EmotionRecognizer) else EmotionRecognizer.from_pretrained(model, device=device)
    )
    app = build_app(recognizer, max_upload_mb=max_upload_mb, **app_kwargs)
    app.queue()
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=app.ser_hf_page.max_upload_bytes,
        prevent_thread_lock=not block,
        show_error=False,
        quiet=not block,
    )
    return app
