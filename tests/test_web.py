"""The web page: its logic (files, recordings, live chunks, bad input), its HTTP API, `ser-hf serve`, and a
real headless Chromium driving the page (skipped with a reason where Chromium or Playwright is missing)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import RATE, synth_clip
from test_conversation import LABELS, build_conversation

from ser_hf import EmotionRecognizer
from ser_hf.conversation import summarize
from ser_hf.web import EmotionPage

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("SER_HF_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def recognizer(trained):
    return EmotionRecognizer.from_pretrained(str(trained.output_dir))


@pytest.fixture(scope="module")
def page(recognizer):
    return EmotionPage(recognizer, max_upload_mb=1.0, hop_seconds=1.0)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Files a visitor might send: good clips, and each kind of bad input."""
    root = tmp_path_factory.mktemp("media")
    files = {
        "clip": root / "clip.wav",
        "recording": root / "recording.wav",
        "conversation": root / "conversation.wav",
        "mostly_angry": root / "mostly_angry.wav",
        "text": root / "notes.txt",
        "text_as_wav": root / "fake.wav",
        "zero_bytes": root / "empty.wav",
        "no_samples": root / "nosamples.wav",
        "digital_silence": root / "quiet.wav",
        "silent_recording": root / "room.wav",
        "quiet_speech": root / "whisper.wav",
        "m4a": root / "voice.m4a",
        "nan": root / "broken.wav",
        "oversize": root / "huge.wav",
    }
    sf.write(files["clip"], synth_clip(5, 3, 1), RATE)
    # 8 s: angry 2 s, silence 2 s, sad 2 s, angry 2 s
    parts = [synth_clip(5, 7, 1, seconds=2.0), np.zeros(2 * RATE, np.float32)]
    parts += [synth_clip(4, 7, 1, seconds=2.0), synth_clip(5, 8, 2, seconds=2.0)]
    sf.write(files["recording"], np.concatenate(parts), RATE)
    sf.write(files["conversation"], build_conversation()[0], RATE)  # angry, sad, surprised, with pauses
    pause = np.zeros(RATE // 2, np.float32)
    angry = [pause, synth_clip(5, 7, 1, seconds=3.0), pause, synth_clip(8, 7, 1, seconds=1.0), pause]
    sf.write(files["mostly_angry"], np.concatenate(angry), RATE)
    files["text"].write_text("this is not audio\n" * 20)
    files["text_as_wav"].write_text("this is not audio either\n" * 20)
    files["zero_bytes"].write_bytes(b"")
    sf.write(files["no_samples"], np.zeros(0, np.float32), RATE)
    sf.write(files["digital_silence"], np.zeros(RATE, np.float32), RATE)
    sf.write(
        files["silent_recording"], np.full(5 * RATE, 1e-4, np.float32) * np.sign(np.sin(np.arange(5 * RATE))), RATE
    )
    sf.write(files["quiet_speech"], synth_clip(4, 7, 1, seconds=5.0) * 10 ** (-58 / 20), RATE)  # about -70 dBFS
    files["m4a"].write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    sf.write(files["nan"], np.array([0.1, np.nan, 0.2] * 1000, np.float32), RATE, subtype="FLOAT")
    sf.write(files["oversize"], (0.1 * np.random.default_rng(0).standard_normal(40 * RATE)).astype(np.float32), RATE)
    assert files["oversize"].stat().st_size > 2**20
    return files


# ------------------------------------------------------------------ page logic
def test_short_clip_shows_the_prediction(page, recognizer, media):
    view = page.analyse(str(media["clip"]))
    expected = recognizer.predict(media["clip"])
    assert not view.error and view.label == expected.label
    assert view.scores == pytest.approx(expected.scores)
    assert view.segments == [] and f"**{expected.label}**" in view.message and "clip" in view.message


def test_long_recording_shows_its_utterances_and_an_honest_summary(page, recognizer, media):
    view = page.analyse(str(media["conversation"]))
    expected = recognizer.predict_timeline(media["conversation"])
    assert not view.error and [s.label for s in view.segments] == [s.label for s in expected] == LABELS
    assert [(s.start, s.end) for s in view.segments] == [(s.start, s.end) for s in expected]
    summary = summarize(expected)
    assert summary.majority is None and view.summary == summary
    assert summary.describe(markdown=True) in view.message and "mixed: " in view.message
    assert view.scores == {label: summary.shares.get(label, 0.0) for label in recognizer.labels}
    assert f"Adapted to the speaker's voice on {expected[-1].adapted_seconds:.0f} s of speech" in view.message


def test_a_clear_majority_of_the_voiced_time_is_mostly_that_emotion(page, media):
    view = page.analyse(str(media["mostly_angry"]))
    assert [s.label for s in view.segments] == ["angry", "surprised"] and view.label == "angry"
    assert "mostly **angry** (7" in view.message  # 3 s of 4 s of speech


def test_quiet_speech_is_labelled_with_a_warning(page, recognizer, media):
    """Nothing above the -65 dBFS silence threshold, but louder than an empty room: raised, labelled, noted."""
    assert recognizer.predict_timeline(media["quiet_speech"]) == []  # as it is, no speech is found
    view = page.analyse(str(media["quiet_speech"]))
    samples, _ = sf.read(media["quiet_speech"], dtype="float32")
    gain = 10 ** ((-30 - 20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))) / 20)
    expected = recognizer.predict_timeline([samples * np.float32(gain)])
    assert not view.error and "very quiet recording (-70 dBFS): raised by 40 dB" in view.message
    assert [s.label for s in view.segments] == [s.label for s in expected] == ["sad"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("text", "notes.txt is not an audio file this server can read"),
        ("text_as_wav", "fake.wav is not an audio file this server can read"),
        ("zero_bytes", "empty.wav is empty"),
        ("no_samples", "nosamples.wav is empty"),
        ("digital_silence", "quiet.wav is silent"),
        ("silent_recording", "no speech found"),
        ("m4a", "the .m4a format is not supported"),
        ("nan", "NaN or infinite"),
        ("oversize", "over this server's 1 MB upload limit"),
    ],
)
def test_bad_input_gets_a_readable_message(page, media, kind, expected):
    view = page.analyse(str(media[kind]))
    message = view.message.replace("\\", "")  # file names are Markdown-escaped
    assert view.error and expected in message, message
    assert view.scores is None and "Traceback" not in message and str(media[kind].parent) not in message


def test_a_bug_becomes_a_message_not_a_traceback(page, media, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(page.recognizer, "predict", broken)
    view = page.analyse(str(media["clip"]))
    assert view.error and "internal error" in view.message and "boom" not in view.message
    assert "boom" in caplog.text  # ...while the server log keeps the details


def _mic_chunks(clip: np.ndarray, rate: int, sizes: list[int]) -> list[tuple[int, np.ndarray]]:
    """A clip as a browser microphone sends it: int16 chunks at the browser's rate."""
    pcm = np.clip(np.round(soxr.resample(clip, RATE, rate) * 32767), -32768, 32767).astype(np.int16)
    bounds = np.cumsum([0, *sizes])
    return [(rate, pcm[a:b]) for a, b in itertools.pairwise(bounds) if a < pcm.size]


def test_live_sessions_are_separate_and_match_the_stream(page, recognizer):
    """Two visitors stream at once; each gets exactly what EmotionStream gives for their own audio."""
    angry, sad = synth_clip(5, 7, 1, seconds=5.5), synth_clip(4, 8, 2, seconds=4.5)
    rng = np.random.default_rng(1)
    chunks_a = _mic_chunks(angry, 48_000, list(rng.integers(4000, 30000, 200)))
    chunks_b = _mic_chunks(sad, 44_100, list(rng.integers(4000, 30000, 200)))
    session_a = session_b = None
    first_view = None
    for i in range(max(len(chunks_a), len(chunks_b))):
        if i < len(chunks_a):
            session_a, view = page.live_chunk(session_a, chunks_a[i])
            first_view = first_view or view
        if i < len(chunks_b):
            session_b, _ = page.live_chunk(session_b, chunks_b[i])
    assert "the emotion shows while you speak" in first_view.message and first_view.scores is None
    assert session_a is not session_b and session_a.seconds == pytest.approx(5.5, abs=1e-3)
    assert session_a.stream.speaker is not session_b.stream.speaker  # each visitor's voice is their own
    end_a, end_b = page.live_stop(session_a), page.live_stop(session_b)

    for session_end, chunks in ((end_a, chunks_a), (end_b, chunks_b)):
        stream = recognizer.stream(sampling_rate=chunks[0][0], hop_seconds=1.0)
        pcm = np.concatenate([c for _, c in chunks]).astype(np.float32) / 32768
        expected = [s for s in stream.push(pcm) + stream.flush() if s.final]
        assert [(round(s.start, 3), round(s.end, 3), s.label) for s in session_end.segments] == [
            (round(s.start, 3), round(s.end, 3), s.label) for s in expected
        ]
        assert session_end.summary == summarize(expected)
        assert "Recording" in session_end.message and "mostly" in session_end.message and not session_end.error


def test_a_chunk_after_the_summary_starts_a_new_recording(page):
    chunks = _mic_chunks(synth_clip(5, 7, 1, seconds=4.0), 48_000, [4800] * 40)
    session = None
    for chunk in chunks[:-1]:
        session, _ = page.live_chunk(session, chunk)
    summary = page.live_stop(session)
    assert "Recording (3.9 s)" in summary.message and session.stopped_at is not None
    seconds, segments = session.seconds, list(session.segments)
    fresh, view = page.live_chunk(session, chunks[-1])
    assert fresh is not session and fresh.seconds == pytest.approx(0.1) and "Listening: 0.1 s" in view.message
    assert fresh.stream.speaker is not session.stream.speaker and fresh.stream.speaker.seconds == 0  # a new voice
    assert (session.seconds, session.segments) == (seconds, segments)  # the summarised recording is untouched


def test_the_stop_button_waits_for_the_summary_unless_no_audio_came(page):
    """The summary follows the stream's end; the stop event itself speaks only for a stream that never began."""
    assert page.live_stop_pressed(None).error
    session, _ = page.live_chunk(None, _mic_chunks(synth_clip(5, 7, 1, seconds=0.5), 16_000, [8000])[0])
    assert page.live_stop_pressed(session) is None  # recording: its summary is coming
    page.live_stop(session)
    assert page.live_stop_pressed(session) is None  # just summarised: this stop was that recording's
    session.stopped_at -= 60  # a stop long after the last summary: this recording sent nothing
    view = page.live_stop_pressed(session)
    assert view.error and "no audio reached the server" in view.message


def test_live_view_shows_the_utterance_so_far_then_its_final_label(page):
    speech = np.concatenate([synth_clip(5, 7, 1, seconds=2.2), np.zeros(RATE, np.float32)])
    session, views = None, []
    for chunk in _mic_chunks(speech, 16_000, [1600] * 40):
        session, view = page.live_chunk(session, chunk)
        views.append(view)
    speaking = views[15]  # 1.6 s in: a provisional label for the utterance so far
    assert "now **angry**" in speaking.message and "so far" in speaking.message
    assert [s.final for s in speaking.segments] == [False] and speaking.label == "angry"
    done = views[-1]  # the pause after it was heard: the utterance is final
    assert "last utterance **angry**" in done.message and [s.final for s in done.segments] == [True]
    assert session.segments == done.segments and session.provisional is None


def test_live_stop_without_audio_says_so(page):
    view = page.live_stop(None)
    assert view.error and "no audio reached the server" in view.message


def test_live_chunk_with_nan_is_a_message(page):
    _, view = page.live_chunk(None, (16_000, np.array([0.1, np.nan], np.float32)))
    assert view.error and "NaN" in view.message


# ------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _gradio_uploads_in_tmp_path(tmp_path_factory):
    """Keep the uploads this module makes out of the shared /tmp/gradio."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio-uploads")))
        yield


@pytest.fixture(scope="module")
def server(recognizer):
    pytest.importorskip("gradio")
    from ser_hf.web import launch

    port = _free_port()
    app = launch(recognizer, port=port, max_upload_mb=1.0, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_http_api_answers_and_reports_bad_input(server, recognizer, media):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False, analytics_enabled=False, download_files=False)
    message, label, _, _ = client.predict(handle_file(str(media["clip"])), api_name="/analyse")
    assert label["label"] == recognizer.predict(media["clip"]).label and label["label"] in message
    message, label, _, _ = client.predict(handle_file(str(media["text_as_wav"])), api_name="/analyse")
    assert "not an audio file this server can read" in message and not label
    with pytest.raises(Exception, match="(?i)exceed|size"):  # refused by the server before it is stored
        client.predict(handle_file(str(media["oversize"])), api_name="/analyse")
    message, label, _, _ = client.predict(handle_file(str(media["clip"])), api_name="/analyse")
    assert label["label"] in message  # still serving


def test_serve_command_starts_the_page(trained, tmp_path):
    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ser_hf", "serve", "--model", str(trained.output_dir)]
    command += ["--port", str(port), "--max-upload-mb", "2"]
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline, config = time.monotonic() + 180, None
        while config is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
            except OSError:
                time.sleep(1)
        log.seek(0)
        assert config is not None, log.read()[-3000:]
        assert config["max_file_size"] == 2 * 2**20 and config["title"] == "Speech emotion recognition"
        assert {"analyse", "analyse_recording"} <= {d.get("api_name") for d in config["dependencies"]}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# ------------------------------------------------------------ a real browser
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@pytest.fixture(scope="module")
def browser(media):
    missing = None
    try:
        import playwright.sync_api as playwright_api
    except ImportError:
        missing = "Python Playwright is not installed (pip install playwright; no `playwright install` needed)"
    if not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if missing:
        if os.environ.get("SER_HF_REQUIRE_BROWSER"):  # CI installs both: a missing one is a failure there
            pytest.fail(missing)
        pytest.skip(missing)
    # the fake microphone plays the 8 s recording in a loop
    args = [*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={media['recording']}"]
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser, server):
    """A fresh page on the app that blocks, and records, any request that leaves this machine."""
    context = browser.new_context(permissions=["microphone"], viewport={"width": 1280, "height": 900})
    web = context.new_page()
    web.outside, web.console = [], []
    web.on("console", lambda message: web.console.append(f"{message.type}: {message.text}"))
    web.on("pageerror", lambda error: web.console.append(f"pageerror: {error}"))

    def local_only(route):
        url = route.request.url
        if url.startswith((server, "data:", "blob:")):
            route.continue_()
        else:
            web.outside.append(url)
            route.abort()

    web.route("**/*", local_only)
    web.goto(server)
    web.wait_for_selector("#audio-input input[type=file]", state="attached", timeout=60_000)
    yield web
    assert web.outside == [], f"the page tried to reach the internet: {web.outside}"
    context.close()


def _status(web) -> str:
    return web.inner_text("#status [data-testid=markdown]")


def _wait_status(web, text: str, timeout: float = 90_000) -> str:
    try:
        web.wait_for_function(
            "t => (document.querySelector('#status [data-testid=markdown]')?.innerText || '').includes(t)",
            arg=text,
            timeout=timeout,
        )
    except Exception as err:
        ARTIFACTS.mkdir(exist_ok=True)
        web.screenshot(path=str(ARTIFACTS / "web-failure.png"), full_page=True)
        console = "\n".join(web.console[-30:])
        raise AssertionError(
            f"waited for {text!r} in the status; it shows {_status(web)!r}; the browser console:\n{console}"
        ) from err
    return _status(web).replace("\\", "")


def test_browser_upload_shows_the_predicted_emotion(tab, recognizer, media):
    expected = recognizer.predict(media["clip"]).label
    tab.set_input_files("#audio-input input[type=file]", str(media["clip"]))
    tab.wait_for_selector("#emotion [data-testid=label-output-value]", timeout=90_000)
    assert tab.inner_text("#emotion [data-testid=label-output-value]").strip() == expected
    assert expected in _wait_status(tab, "clip.wav")
    assert len(tab.query_selector_all("#emotion [data-testid$=-confidence-set]")) == len(recognizer.labels)


def test_browser_conversation_shows_its_utterances_and_summary(tab, page, recognizer, media):
    expected = page.analyse(str(media["conversation"]))
    tab.set_input_files("#audio-input input[type=file]", str(media["conversation"]))
    status = _wait_status(tab, "mixed")
    assert expected.summary.describe() in status and "Adapted to the speaker's voice" in status
    tab.wait_for_selector("#timeline-table [data-testid=cell-0-2]", timeout=30_000)
    shown = tab.eval_on_selector_all(
        "#timeline-table [data-testid^=cell-][data-testid$='-2']",
        "cells => cells.map(c => [Number(c.dataset.testid.split('-')[1]), c.innerText.trim()])",
    )
    assert [label for _, label in sorted(shown)] == LABELS
    bars = tab.eval_on_selector_all("#timeline-plot svg rect[data-label]", "bars => bars.map(b => b.dataset.label)")
    assert bars == LABELS  # one bar per utterance, coloured by its emotion
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)


def test_browser_bad_uploads_get_readable_messages(tab, media):
    # not audio, by name: the page refuses it before upload
    tab.set_input_files("#audio-input input[type=file]", str(media["text"]))
    toast = tab.wait_for_selector("[data-testid=toast-body]", timeout=30_000)
    assert "Invalid file type: notes.txt" in toast.inner_text()
    tab.click("[data-testid=toast-close]")
    # not audio, named .wav: the server reads it and says why it cannot
    tab.set_input_files("#audio-input input[type=file]", str(media["text_as_wav"]))
    assert "fake.wav is not an audio file this server can read" in _wait_status(tab, "fake.wav")
    # over the upload limit: refused before it is stored
    tab.reload()
    tab.wait_for_selector("#audio-input input[type=file]", state="attached", timeout=60_000)
    tab.set_input_files("#audio-input input[type=file]", str(media["oversize"]))
    toast = tab.wait_for_selector("[data-testid=toast-body].error", timeout=30_000)
    assert "exceed the maximum allowed size" in toast.inner_text() and "huge.wav" in toast.inner_text()


def _start_live_recording(web, attempts: int = 4) -> None:
    """Start the live microphone and wait until its chunks reach the server.

    Gradio 6's streaming recorder now and then never opens its stream (the status stays at the start
    event's "Listening…" and no chunk reaches the server; seen in about 1 of 4 full runs of this file).
    The console then says "Failed to construct 'MediaRecorder' ... (audio/wav) is not supported": the
    recorder loads its WAV encoder lazily and registers it without awaiting the registration, so a press
    that comes too soon falls back to the browser's own recorder, which has no WAV. A visitor would wait,
    reload and press record again; so does this (waiting for the page's lazy modules, and longer each
    time), at most ``attempts`` times. When every try failed with that upstream error and no other, the
    test is marked xfail (the live path was not reached); any other failure fails it.
    """
    upstream, only_upstream = "Failed to construct 'MediaRecorder'", True
    for attempt in range(1, attempts + 1):
        web.get_by_role("tab", name="Live microphone").click()
        with contextlib.suppress(Exception):  # Gradio may hold a connection open: then this just times out
            web.wait_for_load_state("networkidle", timeout=10_000)
        web.wait_for_timeout(1_000 * attempt)
        seen = len(web.console)
        web.click("#live-input .record-button")
        try:
            _wait_status(web, "Listening: ", timeout=30_000)  # seconds heard: the server has chunks
            return
        except AssertionError:
            only_upstream = only_upstream and any(upstream in line for line in web.console[seen:])
            if attempt == attempts and only_upstream:
                pytest.xfail(f"Gradio's recorder fell back to the browser's (no WAV) on all {attempts} tries")
            if attempt == attempts:
                raise
            web.reload()
            web.wait_for_selector("#audio-input input[type=file]", state="attached", timeout=60_000)


def test_browser_live_microphone_updates_while_speaking(tab, recognizer):
    _start_live_recording(tab)
    live = _wait_status(tab, "now ", timeout=120_000)  # a label for the utterance so far, while recording
    assert any(f"now {label}" in live for label in recognizer.labels), live
    tab.wait_for_selector("#emotion [data-testid=label-output-value]", timeout=30_000)
    time.sleep(2)
    tab.click("#live-input .stop-button")
    summary = _wait_status(tab, "Recording (", timeout=60_000)
    assert "mostly" in summary or "mixed" in summary or "no speech" in summary
    tab.wait_for_timeout(3_000)  # nothing that arrives after the summary (the stream's last output) replaces it
    assert _status(tab).replace("\\", "") == summary
    tab.wait_for_selector("#timeline-plot svg rect[data-label]", timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "web-live.png"), full_page=True)
