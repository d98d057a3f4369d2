"""A local web page: upload or record speech, or stream the microphone, and see the emotion as it goes.

`EmotionPage` is the page's logic in plain Python over `EmotionRecognizer` (tested without a browser):
it turns a file, a recording or live microphone chunks into a `PageView` (a status line, the emotion's
probabilities, the utterances), and turns every bad input into a readable message, never a stack trace.
A recording is followed utterance by utterance (`ser_hf.conversation`), adapted to the speaker where the
model can, each recording on its own: the page says when adaptation is on, and on how much speech.
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
from .conversation import Summary, UtteranceStream, summarize
from .errors import (
    AudioError,
    EmptyAudioError,
    SerHfError,
    SilentAudioError,
    UnreadableAudioError,
)
from .recognizer import DEFAULT_WINDOW_SECONDS, EmotionRecognizer
from .timeline import Segment, rms_dbfs
from .vad import SILENCE_THRESHOLD_DB

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
#: A recording with no frame above the silence threshold but whose level (30 s blocks) reaches this is
#: taken as quiet speech and labelled with a warning; an empty room sits near -80 dBFS.
QUIET_FLOOR_DB = -75.0
#: The level (dBFS) such a quiet recording is raised to, to find its speech (the model sets every utterance's
#: loudness itself, so this changes where speech is found, not what is recognised in it).
QUIET_TARGET_DB = -30.0
TIMELINE_COLUMNS = ["start (s)", "end (s)", "emotion", "score", "speech (s)"]
#: One colour per emotion in the timeline (RAVDESS emotions first; others take the spare colours in turn).
EMOTION_COLOURS = {
    "neutral": "#9e9e9e",
    "calm": "#4db6ac",
    "happy": "#fbc02d",
    "sad": "#1e88e5",
    "angry": "#e53935",
    "fearful": "#8e24aa",
    "disgust": "#6d8b2f",
    "surprised": "#fb8c00",
}
_SPARE_COLOURS = ("#5c6bc0", "#8d6e63", "#26a69a", "#ec407a", "#78909c", "#c0ca33")
EMPTY_RECORDING = "⚠️ The recording is empty: no audio reached the server. Check the microphone and try again."
#: A stop pressed within this many seconds of a recording's summary belongs to that recording.
STOP_GRACE_SECONDS = 5.0


def _escape_markdown(text: str) -> str:
    """A file name shown in Markdown, with its formatting characters escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def adaptation_note(segments: Sequence[Segment]) -> str:
    """What the page says about speaker adaptation, from a recording's latest segment."""
    latest = next((s for s in reversed(segments) if not s.silent), None)
    if latest is None or latest.adaptation == "off":
        return ""
    if latest.adaptation == "unsupported":
        return " This model does not adapt to speakers: every utterance is recognised as if by a new speaker."
    if latest.adapted:
        return f" Adapted to the speaker's voice on {latest.adapted_seconds:.0f} s of speech."
    return " Not yet adapted to the speaker (it starts after a few seconds of speech)."


@dataclass(frozen=True)
class PageView:
    """What the page shows after an event.

    ``message`` is the status line (Markdown), ``scores`` the emotion's probabilities (``None`` for no
    result; for a recording, each emotion's share of its voiced time), ``segments`` the utterances (empty for
    a clip no longer than one window; the last one may be provisional while recording), ``error`` whether
    the message reports a problem with the input, ``summary`` the recording's `Summary`.
    """

    message: str
    scores: dict[str, float] | None = None
    segments: list[Segment] = field(default_factory=list)
    error: bool = False
    summary: Summary | None = None

    @property
    def label(self) -> str | None:
        """The top emotion shown, if any."""
        return max(self.scores, key=self.scores.__getitem__) if self.scores else None


@dataclass
class LiveSession:
    """One visitor's microphone stream (kept in Gradio's per-session state, never shared): its utterances
    so far, the provisional label of the one in progress, and its own speaker adaptation."""

    stream: UtteranceStream
    sampling_rate: int
    segments: list[Segment] = field(default_factory=list)
    provisional: Segment | None = None
    seconds: float = 0.0
    #: When the recording was summarised (``time.monotonic()``); ``None`` while recording.
    stopped_at: float | None = None
    #: Held while a chunk or the summary is processed, so the two never interleave.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class EmotionPage:
    """The page's logic: files, recordings and live chunks in, `PageView` out; bad input → a message.

    A file up to ``clip_seconds`` (default: the model's window, else 3 s) is one clip; a longer one is
    followed utterance by utterance. ``hop_seconds``: how often the live label of an utterance in progress
    updates. ``adapt``: the speaker adaptation of each recording (`ser_hf.conversation`; ``"recording"``
    adapts live streams online).
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        clip_seconds: float | None = None,
        hop_seconds: float = 1.0,
        silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
        adapt: str = "auto",
    ):
        if max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be positive, not {max_upload_mb}")
        self.recognizer = recognizer
        self.max_upload_mb = max_upload_mb
        self.clip_seconds = clip_seconds or recognizer.window_seconds or DEFAULT_WINDOW_SECONDS
        self.hop_seconds = hop_seconds
        self.silence_threshold_db = silence_threshold_db
        self.adapt = adapt

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    # ------------------------------------------------------------------ files
    def analyse(self, path: str | os.PathLike | None) -> PageView:
        """A file or finished recording: its emotion, and its utterances when it is longer than one clip."""
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
        if duration <= self.clip_seconds:
            prediction = self.recognizer.predict(str(path))
            return PageView(
                f"**{shown}** ({duration:.1f} s): **{prediction.label}** ({prediction.score:.0%})",
                scores=dict(prediction.scores),
            )
        heading = f"**{shown}** ({duration:.1f} s)"
        segments = self._timeline(path)
        if not segments:
            level = max(rms_dbfs(block) for block in audio.iter_blocks(path, self.recognizer.sampling_rate))
            if QUIET_FLOOR_DB <= level < QUIET_TARGET_DB:  # quiet speech, not an empty room: label it, and say so
                gain = QUIET_TARGET_DB - level
                view = self._summary(heading, self._timeline(path, gain_db=gain))
                note = (
                    f" ⚠️ A very quiet recording ({level:.0f} dBFS): raised by {gain:.0f} dB to find its speech; "
                    "results may be unreliable."
                )
                return replace(view, message=view.message + note)
        return self._summary(heading, segments)

    def _timeline(self, path: Path, *, gain_db: float = 0.0) -> list[Segment]:
        source: Any = str(path)
        if gain_db:
            gain = np.float32(10 ** (gain_db / 20))
            source = (block * gain for block in audio.iter_blocks(path, self.recognizer.sampling_rate))
        return self.recognizer.predict_timeline(
            source, adapt=self.adapt, silence_threshold_db=self.silence_threshold_db
        )

    def _summary(self, heading: str, segments: list[Segment]) -> PageView:
        summary = summarize(segments)
        if summary is None:
            return PageView(
                f"⚠️ {heading}: no speech found. Check that the microphone is on and not muted.",
                segments=segments,
                error=True,
            )
        shares = {label: summary.shares.get(label, 0.0) for label in self.recognizer.labels}
        return PageView(
            f"{heading}: {summary.describe(markdown=True)}.{adaptation_note(segments)}",
            scores=shares,
            segments=segments,
            summary=summary,
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
                session = LiveSession(self._stream(rate), rate)
            got = session.stream.push(samples)
            session.segments.extend(s for s in got if s.final)
            provisional = [s for s in got if not s.final]
            if provisional:
                session.provisional = provisional[-1]
            elif any(s.final for s in got) or not session.stream.speaking:
                session.provisional = None
            session.seconds += samples.size / rate
        except AudioError as err:
            return session, PageView(self.explain(err, "the microphone stream"), error=True)
        except Exception:
            logger.exception("live stream chunk failed")
            return session, PageView("⚠️ The live stream failed; the server log has the details.", error=True)
        return session, self._live_view(session)

    def _stream(self, rate: int) -> UtteranceStream:
        return self.recognizer.stream(  # type: ignore[return-value]
            sampling_rate=rate,
            adapt="online" if self.adapt == "recording" else self.adapt,  # live, the recording is not whole yet
            hop_seconds=self.hop_seconds,
            silence_threshold_db=self.silence_threshold_db,
        )

    def _live_view(self, session: LiveSession) -> PageView:
        heard = f"🎙️ Listening: {session.seconds:.1f} s"
        segments = session.segments + ([session.provisional] if session.provisional else [])
        note = adaptation_note(segments)
        if session.provisional is not None:
            now = session.provisional
            return PageView(
                f"{heard}, now **{now.label}** ({now.score:.0%}, so far in this utterance).{note}",
                scores=dict(now.scores),
                segments=segments,
            )
        if not session.segments:
            return PageView(
                f"{heard}; the emotion shows while you speak, and settles on each utterance when you pause."
            )
        last = session.segments[-1]
        return PageView(
            f"{heard}, last utterance **{last.label}** ({last.score:.0%}); waiting for speech.{note}",
            scores=dict(last.scores),
            segments=segments,
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
            session.provisional = None
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
    """The timeline table: one row per utterance (start, end, emotion, score, speech seconds); the emotion
    of an utterance still in progress is marked "so far"."""
    return [
        [
            round(s.start, 2),
            round(s.end, 2),
            s.label if s.final else f"{s.label} (so far)",
            round(s.score, 3),
            None if s.voiced is None else round(s.voiced, 2),
        ]
        for s in segments
    ]


def emotion_colour(label: str, labels: Sequence[str]) -> str:
    """The timeline colour of an emotion."""
    if label in EMOTION_COLOURS:
        return EMOTION_COLOURS[label]
    others = [name for name in labels if name not in EMOTION_COLOURS]
    return _SPARE_COLOURS[others.index(label) % len(_SPARE_COLOURS)] if label in others else "#bdbdbd"


def timeline_svg(segments: Sequence[Segment], labels: Sequence[str]) -> str:
    """The timeline plot: a bar per utterance over time, coloured by its emotion, as tall as its score (an
    utterance still in progress is drawn faint), with a time axis and a legend. Plain SVG, no scripts."""
    from html import escape

    shown = [s for s in segments if not s.silent]
    if not shown:
        return ""
    total = max(s.end for s in shown) or 1.0
    width, top, height = 1000.0, 10.0, 120.0
    parts = [
        '<div style="font-size: 13px; opacity: 0.7">Emotion of each utterance over time (bar height: its score)</div>',
        f'<svg class="ser-hf-timeline" viewBox="0 0 {width:g} 190" width="100%" role="img" '
        'aria-label="Emotion of each utterance over time" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="0" y1="{top + height}" x2="{width:g}" y2="{top + height}" stroke="#888" stroke-width="1"/>',
    ]
    step = next((t for t in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if total / t <= 12), 7200)
    for tick in np.arange(0, total + 1e-9, step):
        x = tick / total * width
        anchor = "start" if tick == 0 else "end" if x > width - 20 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{top + height + 16}" font-size="12" fill="#666" text-anchor="{anchor}">'
            f"{tick:g} s</text>"
        )
    for s in shown:
        x, w = s.start / total * width, max((s.end - s.start) / total * width, 1.0)
        h = max(s.score, 0.05) * height
        colour = emotion_colour(s.label, labels)
        state = "final" if s.final else "provisional"
        title = f"{s.start:.1f}-{s.end:.1f} s: {s.label} ({s.score:.0%}){'' if s.final else ', so far'}"
        parts.append(
            f'<rect data-label="{escape(s.label)}" data-state="{state}" x="{x:.1f}" y="{top + height - h:.1f}" '
            f'width="{w:.1f}" height="{h:.1f}" fill="{colour}" fill-opacity="{1.0 if s.final else 0.4}">'
            f"<title>{escape(title)}</title></rect>"
        )
    x = 0.0
    for label in dict.fromkeys(s.label for s in shown):
        parts.append(f'<rect x="{x:.0f}" y="166" width="12" height="12" fill="{emotion_colour(label, labels)}"/>')
        parts.append(f'<text x="{x + 16:.0f}" y="177" font-size="13" fill="#444">{escape(label)}</text>')
        x += 24 + 8 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def build_app(
    recognizer: EmotionRecognizer,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    clip_seconds: float | None = None,
    hop_seconds: float = 1.0,
    silence_threshold_db: float | None = SILENCE_THRESHOLD_DB,
    adapt: str = "auto",
    title: str = DEFAULT_TITLE,
    concurrency_limit: int = 2,
    live_time_limit: int | None = 600,
) -> Any:
    """The Gradio app (a ``gradio.Blocks``) over ``recognizer``; serve it with `launch` or ``app.launch()``.

    ``concurrency_limit`` bounds how many files are analysed at once (and, separately, how many live
    chunks); ``live_time_limit`` ends a live stream after that many seconds. The other options are
    `EmotionPage`'s.
    """
    gr = _gradio()
    page = EmotionPage(
        recognizer,
        max_upload_mb=max_upload_mb,
        clip_seconds=clip_seconds,
        hop_seconds=hop_seconds,
        silence_threshold_db=silence_threshold_db,
        adapt=adapt,
    )

    def show(view: PageView) -> tuple[Any, ...]:
        has_timeline = bool(view.segments)
        return (
            view.message,
            view.scores,
            gr.update(value=timeline_svg(view.segments, recognizer.labels), visible=has_timeline),
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
            f"({SUPPORTED_FORMATS}); recordings longer than {page.clip_seconds:g} s get an emotion per "
            "utterance (speech between pauses)."
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
        plot = gr.HTML(label="Emotion over time", visible=False, elem_id="timeline-plot")
        table = gr.Dataframe(
            headers=TIMELINE_COLUMNS, interactive=False, label="Utterances", visible=False, elem_id="timeline-table"
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
