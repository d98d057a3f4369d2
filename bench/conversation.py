"""Following a conversation: per-utterance accuracy, speaker adaptation, latency and speed, on RAVDESS.

    python bench/conversation.py --data_dir ../shared/data/ravdess-16k --model /tmp/conv-model
    python bench/conversation.py --data_dir ../shared/data/ravdess-16k     # trains a model first (about 2 min)

Conversations are built from the clips of actors unseen in training (21-24 by default): each actor's clips,
shuffled (seeded), played back to back with random pauses of 0.3-1.2 s, ``--clips`` clips per conversation.
The model must have been trained without those actors (the default training here: actors 1-20, 19-20
validating, Whisper tiny.en). Every clip is one utterance of the truth; a timeline labels a clip with the
probabilities of the segments overlapping it, weighted by the overlap (the same rule for fixed windows).

Printed: the per-clip UA of ``predict()`` on the same clips; the per-utterance UA of the default timeline,
of fixed windows, and with each kind of speaker adaptation; the latency from the end of a clip's speech
to its final label in the live stream fed ``--chunk`` s chunks in real time (processing and queueing
included, the pause the voice activity detector waits for included) and the stream's real-time factor.
``--sweep`` adds the measurements that chose the defaults: the pause that ends an utterance and the voice
activity detector, and the speech heard before adapting (``min_seconds``) and the weight of the training
voices (``prior_clips``).

Exits 0 with a message when the data (or, to train, the base model) is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import environment

RATE = 16_000
LIBRARIES = ("numpy", "webrtcvad-wheels", "silero-vad", "soxr")  # besides those every bench names
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@dataclass
class Conversation:
    actor: int
    samples: np.ndarray
    spans: list[tuple[float, float]]  # each clip's start and end (seconds)
    speech_ends: list[float]  # where each clip's speech ends (seconds)
    labels: list[int]
    clips: list[np.ndarray]


def header(title: str, model: str) -> str:
    """A section title, the machine, the versions and the command, and the model measured."""
    return f"## {title}\n{environment(LIBRARIES)}\nmodel: {model}\n"


def build_conversations(args: argparse.Namespace) -> list[Conversation]:
    import soundfile as sf

    from ser_hf.feature_extraction import trim_silence

    rng = np.random.default_rng(args.seed)
    conversations = []
    for actor in [int(a) for a in args.actors.split(",")]:
        files = sorted(Path(args.data_dir, f"Actor_{actor:02d}").glob("*.flac"))
        files += sorted(Path(args.data_dir, f"Actor_{actor:02d}").glob("*.wav"))
        order = rng.permutation(len(files))
        for c in range(min(args.conversations, len(files) // args.clips)):
            parts, spans, ends, labels, clips, t = [], [], [], [], [], 0
            for i in order[c * args.clips : (c + 1) * args.clips]:
                clip, rate = sf.read(files[i], dtype="float32")
                assert rate == RATE and clip.ndim == 1, f"{files[i]}: expected 16 kHz mono"
                speech = trim_silence(clip, RATE, margin_seconds=0.0)
                speech_end = _find_end(clip, speech)
                pause = np.zeros(int(rng.uniform(0.3, 1.2) * RATE), np.float32)
                spans.append((t / RATE, (t + clip.size) / RATE))
                ends.append((t + speech_end) / RATE)
                labels.append(int(files[i].name.split("-")[2]) - 1)
                clips.append(clip)
                parts += [clip, pause]
                t += clip.size + pause.size
            conversations.append(Conversation(actor, np.concatenate(parts), spans, ends, labels, clips))
    return conversations


def _find_end(clip: np.ndarray, speech: np.ndarray) -> int:
    """Where the trimmed ``speech`` (a slice of ``clip``) ends inside ``clip`` (samples)."""
    if speech.size == clip.size or not np.shares_memory(clip, speech):
        return clip.size
    return (speech.ctypes.data - clip.ctypes.data) // clip.itemsize + speech.size


def per_actor(conversations: list[Conversation]) -> list[Conversation]:
    """Each actor's conversations back to back, as one long conversation."""
    out: dict[int, Conversation] = {}
    for c in conversations:
        if c.actor not in out:
            out[c.actor] = Conversation(
                c.actor, c.samples, list(c.spans), list(c.speech_ends), list(c.labels), list(c.clips)
            )
            continue
        whole, offset = out[c.actor], out[c.actor].samples.size / RATE
        whole.samples = np.concatenate([whole.samples, c.samples])
        whole.spans += [(a + offset, b + offset) for a, b in c.spans]
        whole.speech_ends += [e + offset for e in c.speech_ends]
        whole.labels += c.labels
        whole.clips += c.clips
    return list(out.values())


def ua(predicted: list[int], truth: list[int]) -> float:
    from ser_hf.evaluation import unweighted_average_recall

    return 100 * unweighted_average_recall(np.asarray(predicted), np.asarray(truth), len(EMOTIONS))


def score_timeline(conversation: Conversation, segments: list[Any], labels: list[str]) -> tuple[list[int], dict]:
    """Each clip's label from the overlap-weighted probabilities of the segments over it, and the counts
    of clips split over several segments, segments over several clips, and clips no segment covers."""
    predicted, split, missed = [], 0, 0
    voiced = [s for s in segments if not s.silent and s.scores]
    covering = dict.fromkeys(range(len(voiced)), 0)
    for a, b in conversation.spans:
        total = np.zeros(len(labels))
        over = 0
        for k, s in enumerate(voiced):
            overlap = min(b, s.end) - max(a, s.start)
            if overlap > 0:
                total += overlap * np.array([s.scores[label] for label in labels])
                over += 1
                covering[k] += overlap > 0.3
        split += over > 1
        missed += over == 0
        predicted.append(int(np.argmax(total)) if over else -1)
    merged = sum(count > 1 for count in covering.values())
    return predicted, {"split": split, "merged": merged, "missed": missed}


def run_timelines(recognizer: Any, conversations: list[Conversation], **options: Any) -> tuple[float, dict, float]:
    predicted, truth, counts = [], [], {"split": 0, "merged": 0, "missed": 0}
    start = time.perf_counter()
    for conversation in conversations:
        segments = recognizer.predict_timeline([conversation.samples], **options)
        got, c = score_timeline(conversation, segments, recognizer.labels)
        predicted += got
        truth += conversation.labels
        counts = {k: counts[k] + c[k] for k in counts}
    return ua(predicted, truth), counts, time.perf_counter() - start


def run_stream(recognizer: Any, conversations: list[Conversation], chunk_seconds: float) -> dict[str, Any]:
    """Feed each conversation in real-time-sized chunks; latency per clip as a user would see it."""
    chunk = int(chunk_seconds * RATE)
    latencies, busy, cpu, audio_seconds, provisional = [], 0.0, 0.0, 0.0, 0
    predicted, truth = [], []
    for conversation in conversations:
        stream = recognizer.stream()
        clock, finals = 0.0, []  # clock: wall time since the conversation began, in audio seconds
        for i in range(0, conversation.samples.size, chunk):
            arrives = (i + chunk) / RATE  # the chunk is complete when its last sample was spoken
            started, cpu_started = time.perf_counter(), time.process_time()
            segments = stream.push(conversation.samples[i : i + chunk])
            spent = time.perf_counter() - started
            busy += spent
            cpu += time.process_time() - cpu_started
            clock = max(clock, arrives) + spent
            provisional += sum(not s.final for s in segments)
            finals += [(s, clock) for s in segments if s.final]
        started = time.perf_counter()
        finals += [(s, clock + time.perf_counter() - started) for s in stream.flush()]
        audio_seconds += conversation.samples.size / RATE
        for (a, b), speech_end in zip(conversation.spans, conversation.speech_ends):
            shown = [t for s, t in finals if min(b, s.end) - max(a, s.start) > 0]
            if shown:
                latencies.append(max(shown) - speech_end)
        got, _ = score_timeline(conversation, [s for s, _ in finals], recognizer.labels)
        predicted += got
        truth += conversation.labels
    return {
        "latency": np.array(latencies),
        "rtf": busy / audio_seconds,
        "cpu_rtf": cpu / audio_seconds,
        "ua": ua(predicted, truth),
        "provisional": provisional,
        "audio": audio_seconds,
    }


def decision_delays(recognizer: Any, conversations: list[Conversation], chunk_seconds: float, **options: Any) -> dict:
    """UA without and with online adaptation, and the audio time from each clip's speech end to its final
    label (no processing time), for segmentation settings (the utterances are heard once, labelled twice)."""
    from ser_hf.conversation import UtteranceStream, label_utterance

    chunk = int(chunk_seconds * RATE)
    delays, predicted, truth = [], {"off": [], "online": []}, []
    for conversation in conversations:
        stream = UtteranceStream(recognizer, adapt="off", provisional=False, **options)
        heard, size = [], conversation.samples.size
        for i in range(0, size, chunk):
            heard += [
                (h, min(i + chunk, size) / RATE) for h in stream.push_utterances(conversation.samples[i : i + chunk])
            ]
        heard += [(h, size / RATE) for h in stream.flush_utterances()]
        for (a, b), speech_end in zip(conversation.spans, conversation.speech_ends):
            shown = [t for h, t in heard if min(b, h.end) - max(a, h.start) > 0]
            if shown:
                delays.append(max(shown) - speech_end)
        speaker = recognizer.speaker_profile() if recognizer.is_speaker_adaptive else None
        labelled = {"off": [label_utterance(recognizer, h) for h, _ in heard], "online": []}
        for h, _ in heard:
            if speaker is not None:
                speaker.add(h.statistics[None], h.voiced)
            labelled["online"].append(label_utterance(recognizer, h, speaker=speaker, adaptation="online"))
        for mode, segments in labelled.items():
            predicted[mode] += score_timeline(conversation, segments, recognizer.labels)[0]
        truth += conversation.labels
    return {"ua": ua(predicted["off"], truth), "ua_online": ua(predicted["online"], truth), "delay": np.array(delays)}


def heard_utterances(recognizer: Any, conversations: list[Conversation]) -> list[list[Any]]:
    from ser_hf.conversation import UtteranceStream

    out = []
    for conversation in conversations:
        stream = UtteranceStream(recognizer, adapt="off", provisional=False)
        out.append(stream.push_utterances(conversation.samples) + stream.flush_utterances())
    return out


def sweep_adaptation(recognizer: Any, conversations: list[Conversation], heard: list[list[Any]]) -> list[str]:
    """Online adaptation with other ``min_seconds`` and ``prior_clips``, on the utterances as heard."""
    from ser_hf.conversation import label_utterance

    rows = []
    for min_seconds in (0.0, 2.0, 4.0, 8.0, 16.0):
        cells = []
        for prior_clips in (0.5, 1.0, 2.0, 4.0, 8.0):
            predicted, truth = [], []
            for conversation, utterances in zip(conversations, heard):
                speaker = recognizer.speaker_profile(min_seconds=min_seconds, prior_clips=prior_clips)
                segments = []
                for utterance in utterances:
                    speaker.add(utterance.statistics[None], utterance.voiced)
                    segments.append(label_utterance(recognizer, utterance, speaker=speaker, adaptation="online"))
                got, _ = score_timeline(conversation, segments, recognizer.labels)
                predicted += got
                truth += conversation.labels
            cells.append(f"{ua(predicted, truth):.1f}")
        rows.append(f"| {min_seconds:g} | " + " | ".join(cells) + " |")
    return ["| min_seconds \\ prior_clips | 0.5 | 1 | 2 | 4 | 8 |", "| --- | --- | --- | --- | --- | --- |", *rows]


def train_model(args: argparse.Namespace) -> str | None:
    if not Path(args.base_model).exists():
        print(f"skipped: {args.base_model} not found (pass --model, or put Whisper tiny.en in ../shared/models)")
        return None
    from ser_hf.trainer import finetune

    print(f"training a model on actors 1-20 (19-20 validating) into {args.train_dir} ...", file=sys.stderr)
    finetune(
        args.base_model,
        args.data_dir,
        output_dir=args.train_dir,
        test_speakers=args.actors,
        eval_speakers="19,20",
        disable_tqdm=True,
    )
    return args.train_dir


def mark(met: bool) -> str:
    return "[met]" if met else "[NOT met]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/ravdess-16k")
    parser.add_argument("--model", default=None, help="A model trained without the test actors (else one is trained).")
    parser.add_argument(
        "--base_model", default="../shared/models/whisper-tiny.en", help="What --model is trained from."
    )
    parser.add_argument("--train_dir", default="runs/bench-conversation/model")
    parser.add_argument("--actors", default="21,22,23,24", help="Unseen actors the conversations are made of.")
    parser.add_argument("--clips", type=int, default=15, help="Clips per conversation.")
    parser.add_argument("--conversations", type=int, default=4, help="Conversations per actor (at most 60/clips).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=float, default=0.1, help="Live chunk size (seconds).")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: torch's).")
    parser.add_argument("--sweep", action="store_true", help="Also the measurements that chose the defaults.")
    args = parser.parse_args()
    if not Path(args.data_dir).exists():
        print(f"skipped: {args.data_dir} not found (the RAVDESS 16 kHz folders live in ../shared/data)")
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or train_model(args)
    if model is None:
        return 0
    from ser_hf import EmotionRecognizer
    from ser_hf.conversation import AUTO_ADAPT
    from ser_hf.vad import DEFAULT_MIN_PAUSE

    began = time.perf_counter()
    recognizer = EmotionRecognizer.from_pretrained(model, device="cpu")
    conversations = build_conversations(args)
    clips = [c for conversation in conversations for c in conversation.clips]
    truth = [label for conversation in conversations for label in conversation.labels]
    seconds = sum(c.samples.size for c in conversations) / RATE
    print(header("Conversations: one emotion per utterance", model))
    print(
        f"{len(conversations)} conversations of {args.clips} clips (actors {args.actors}; pauses 0.3-1.2 s; "
        f"{seconds / 60:.1f} min in all); UA % over the {len(clips)} clips\n"
    )

    started = time.perf_counter()
    per_clip = ua([recognizer.labels.index(p.label) for p in recognizer.predict(clips)], truth)
    clip_time = time.perf_counter() - started
    rows = [("predict() on each clip alone", per_clip, None, clip_time)]
    results: dict[str, float] = {}
    adaptive = recognizer.is_speaker_adaptive
    modes = [("off", "utterances, no adaptation")]
    if adaptive:
        modes += [("online", "utterances, online adaptation"), ("recording", "utterances, whole-recording adaptation")]
    for adapt, name in modes:
        value, counts, spent = run_timelines(recognizer, conversations, adapt=adapt)
        results[adapt] = value
        default = " (the default)" if adapt == (AUTO_ADAPT if adaptive else "off") else ""
        rows.append((f"timeline: {name}{default}", value, counts, spent))
    if adaptive:  # the same speaker for longer: one stream over each actor's conversations, back to back
        value, counts, spent = run_timelines(recognizer, per_actor(conversations), adapt="online")
        rows.append(
            (
                f"timeline: online adaptation, each actor's {args.conversations} conversations as one",
                value,
                counts,
                spent,
            )
        )
    value, counts, spent = run_timelines(recognizer, conversations, segmentation="windows")
    rows.append(("timeline: fixed windows (3 s, hop 1 s)", value, counts, spent))
    print("| what | UA % | clips split / segments over 2 clips / clips missed | time (s) |")
    print("| --- | --- | --- | --- |")
    for name, value, counts, spent in rows:
        shown = f"{counts['split']} / {counts['merged']} / {counts['missed']}" if counts else ""
        print(f"| {name} | {value:.1f} | {shown} | {spent:.1f} |")
    default_ua = results[AUTO_ADAPT if adaptive else "off"]
    print()

    live = run_stream(recognizer, conversations, args.chunk)
    latency = live["latency"]
    print(header("Live stream", model))
    print(
        f"{args.chunk:g} s chunks pushed in real time ({live['audio'] / 60:.1f} min of audio, default settings, "
        f"{live['provisional']} provisional labels on the way); latency = time the final label appears - end "
        f"of the clip's speech\n"
    )
    print("| measure | value |\n| --- | --- |")
    print(f"| UA % of the live finals | {live['ua']:.1f} |")
    print(f"| latency median (s) | {np.median(latency):.2f} |")
    print(f"| latency p90 (s) | {np.percentile(latency, 90):.2f} |")
    print(f"| real-time factor (wall time) | {live['rtf']:.3f} |")
    print(f"| CPU seconds per second of audio (all threads) | {live['cpu_rtf']:.3f} |")
    print()

    print(header("Targets", model))
    met = mark(default_ua >= per_clip - 1)
    print(f"- default timeline UA {default_ua:.1f} >= per-clip UA - 1 ({per_clip - 1:.1f}) {met}")
    if adaptive:
        online = results["online"]
        met = mark(online >= per_clip + 3)
        print(f"- online adaptation UA {online:.1f} >= per-clip UA + 3 ({per_clip + 3:.1f}) {met}")
    else:
        print("- online adaptation: the model does not adapt to speakers [NOT met]")
    print(f"- median latency {np.median(latency):.2f} s <= 0.5 s {mark(np.median(latency) <= 0.5)}")
    print(f"- real-time factor {live['rtf']:.3f} <= 0.1 {mark(live['rtf'] <= 0.1)}")
    print()

    if args.sweep:
        print(header("What chose the defaults", model))
        print("Segmentation, fed in chunks (no processing time): UA % and the audio time from a clip's speech end")
        print("to its final label (s)\n")
        print("| voice activity detector | min_pause (s) | UA no adaptation | UA online | delay median | delay p90 |")
        print("| --- | --- | --- | --- | --- | --- |")
        settings = [("webrtc", a, p) for a in (1, 2, 3) for p in (0.2, 0.3, 0.4)]
        settings += [("silero", 2, p) for p in (0.3, 0.4)] + [("energy", 2, 0.3)]
        for vad, aggressiveness, pause in settings:
            try:
                options = {"vad": vad, "aggressiveness": aggressiveness, "min_pause": pause}
                off = decision_delays(recognizer, conversations, args.chunk, **options)
            except Exception as err:  # silero-vad missing
                print(f"| {vad} | {pause:g} | {err} | | | |")
                continue
            name = f"webrtc, aggressiveness {aggressiveness}" if vad == "webrtc" else vad
            name += " (the default)" if (vad, aggressiveness, pause) == ("webrtc", 2, DEFAULT_MIN_PAUSE) else ""
            delay = off["delay"]
            print(
                f"| {name} | {pause:g} | {off['ua']:.1f} | {off['ua_online']:.1f} | {np.median(delay):.2f} | "
                f"{np.percentile(delay, 90):.2f} |"
            )
        if adaptive:
            print("\nOnline adaptation: UA % by speech heard before mapping (min_seconds) and weight of the")
            print("training voices in utterances (prior_clips)\n")
            print("\n".join(sweep_adaptation(recognizer, conversations, heard_utterances(recognizer, conversations))))
        print()
    print(f"wall time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
