"""A small SYNTHETIC corpus for `emo demo`: generated speech-like tones, drawn faces and short texts.

It demonstrates the pipeline on a fresh machine with nothing downloaded. It is not emotional speech and
says nothing about how a model does on real data: the real-data recipes are in pipelines/.

Each emotion gets its own prosody (pitch level and contour, loudness, tempo of the syllable envelope,
harshness), facial expression (mouth curve, brow angle, eye opening) and vocabulary, with per-speaker
pitch and random jitter so that the classes overlap a little.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
EMOTIONS = ("neutral", "happy", "sad", "angry")


@dataclass(frozen=True)
class Prosody:
    pitch_scale: float  # relative to the speaker's base pitch
    contour: float  # semitones of rise (+) or fall (-) over the utterance
    loudness: float
    syllables_per_s: float
    harshness: float  # weight of odd harmonics and noise


PROSODY = {
    "neutral": Prosody(1.0, 0.0, 0.35, 3.5, 0.05),
    "happy": Prosody(1.35, 4.0, 0.55, 5.0, 0.1),
    "sad": Prosody(0.8, -3.0, 0.2, 2.2, 0.02),
    "angry": Prosody(1.2, -1.0, 0.8, 5.5, 0.45),
}

# mouth curvature (+ smile), brow slope (+ inner brows raised), eye opening
FACE = {
    "neutral": (0.0, 0.0, 1.0),
    "happy": (1.0, 0.2, 0.8),
    "sad": (-0.7, 0.8, 0.6),
    "angry": (-0.4, -1.0, 1.2),
}

WORDS = {
    "neutral": ["the meeting is at noon", "I put the keys on the table", "the train leaves at five",
                "we need more paper", "it is a regular day", "the report is on the desk"],
    "happy": ["this is wonderful news", "I am so glad you came", "what a lovely surprise",
              "we won the game", "I love this place", "that made my day"],
    "sad": ["I miss her so much", "nothing went right today", "he is not coming back",
            "I feel so alone", "we lost everything", "it is all my fault"],
    "angry": ["stop lying to me", "this is completely unacceptable", "get out of my room",
              "I told you a hundred times", "you ruined everything", "how dare you say that"],
}


def synth_voice(emotion: str, speaker_pitch: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced, syllable-modulated harmonic tone with the emotion's prosody."""
    prosody = PROSODY[emotion]
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    semitones = prosody.contour * (t / seconds) + rng.normal(0, 0.3)
    f0 = speaker_pitch * prosody.pitch_scale * 2 ** (semitones / 12)
    f0 = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))  # vibrato
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    voice += prosody.harshness * sum(np.sin(k * phase) for k in (3, 5, 7))
    voice += prosody.harshness * 0.3 * rng.standard_normal(n)
    rate = prosody.syllables_per_s * rng.uniform(0.85, 1.15)
    envelope = np.clip(np.sin(np.pi * rate * t) ** 2, 0, 1) ** 0.5
    fade = np.minimum(1, np.minimum(t, seconds - t) / 0.05)
    loudness = prosody.loudness * rng.uniform(0.8, 1.2)
    signal = loudness * envelope * fade * voice / np.max(np.abs(voice))
    return (signal + 0.003 * rng.standard_normal(n)).astype(np.float32)


def draw_face(emotion: str, size: int, rng: np.random.Generator, phase: float = 0.0) -> np.ndarray:
    """An RGB frame with a cartoon face whose mouth, brows and eyes show the emotion."""
    import cv2

    mouth_curve, brow_slope, eye_open = FACE[emotion]
    frame = np.full((size, size, 3), (70, 90, 120), dtype=np.uint8)
    s = size / 128  # drawing coordinates are for a 128-pixel frame
    cx, cy = int((64 + 1.5 * np.sin(phase)) * s), int(64 * s)
    dark = (40, 30, 30)
    cv2.ellipse(frame, (cx, cy), (int(41 * s), int(51 * s)), 0, 0, 360, (224, 188, 160), -1)
    for side in (-1, 1):
        ex, ey = cx + int(side * 17 * s), cy - int(10 * s)
        cv2.ellipse(frame, (ex, ey), (int(6 * s), max(1, int(3.2 * eye_open * s))), 0, 0, 360, dark, -1)
        # brows: inner end raised for sadness, lowered for anger
        inner = (ex - int(side * 9 * s), ey - int((10 + 4 * brow_slope) * s))
        outer = (ex + int(side * 9 * s), ey - int(10 * s))
        cv2.line(frame, inner, outer, dark, max(1, int(3 * s)))
    mouth_x = np.linspace(-18, 18, 24)
    mouth_y = 26 + mouth_curve * 10 * (1 - (mouth_x / 18) ** 2)  # centre lower than the corners: a smile
    points = np.stack([cx + mouth_x * s, cy + mouth_y * s], axis=1).astype(np.int32)
    cv2.polylines(frame, [points], False, (150, 40, 50), max(1, int(3 * s)))
    noise = rng.integers(-6, 7, frame.shape)
    return np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8)


def write_video(path: Path, emotion: str, audio: np.ndarray, rng: np.random.Generator,
                fps: int = 15, size: int = 128) -> None:
    """An h264 + aac mp4 of the drawn face with the voice as its audio track."""
    import av

    seconds = len(audio) / SAMPLE_RATE
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(draw_face(emotion, size, rng, phase=i / 3), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        chunk = 1024
        for start in range(0, len(audio), chunk):
            piece = audio[start : start + chunk][None, :]
            frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def build_corpus(out_dir: str | Path, clips_per_emotion: int = 24, speakers: int = 8, seed: int = 0,
                 videos: bool = True) -> Path:
    """Write the corpus and its manifest (manifest.csv) into out_dir; returns the manifest path.

    Speakers are disjoint across splits (speaker-independent): the last speaker is the test set and
    the one before it the validation set.
    """
    import soundfile

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    if videos:
        (out_dir / "video").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    speaker_pitch = rng.uniform(95, 230, size=speakers)
    rows = []
    for emotion in EMOTIONS:
        for i in range(clips_per_emotion):
            speaker = i % speakers
            sample_id = f"{emotion}_{i:03d}"
            audio = synth_voice(emotion, speaker_pitch[speaker], rng.uniform(1.5, 2.5), rng)
            audio_path = out_dir / "audio" / f"{sample_id}.wav"
            soundfile.write(audio_path, audio, SAMPLE_RATE)
            # one time in five a neutral sentence, so that text alone does not give the answer away
            source = "neutral" if rng.random() < 0.2 else emotion
            text = str(rng.choice(WORDS[source]))
            row = {
                "sample_id": sample_id,
                "audio": f"audio/{sample_id}.wav",
                "text": text,
                "label": emotion,
                "speaker": f"spk{speaker}",
                "split": "test" if speaker == speakers - 1 else "valid" if speaker == speakers - 2 else "train",
            }
            if videos:
                video_path = out_dir / "video" / f"{sample_id}.mp4"
                write_video(video_path, emotion, audio, rng)
                row["video"] = f"video/{sample_id}.mp4"
            rows.append(row)
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "README.txt").write_text(
        "SYNTHETIC demonstration corpus generated by `emo demo` (emocli.demo): tones with emotion-like\n"
        "prosody, drawn cartoon faces and template sentences. Not real emotional data.\n"
    )
    return manifest
