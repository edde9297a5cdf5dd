"""An example video made on the spot, for `emo demo` and the tests: a face (Grace Hopper's portrait, a
public-domain US Navy photograph that matplotlib ships) and four spoken sentences of different emotions,
synthesised with eSpeak NG (the library the `espeakng-loader` package bundles) with a pitch, pace and
loudness to match. Nothing is downloaded and no recording is shipped.

eSpeak NG is a formant synthesiser: its voice is robotic, so a model trained on actors (RAVDESS) hears
little emotion in it; Whisper transcribes it well, so a model that reads the words has something to read.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from emocli.core.errors import ConfigError


@dataclass(frozen=True)
class Line:
    text: str
    intended: str  # the emotion the sentence was written with (not a label anyone annotated)
    pace: int  # words per minute (eSpeak's default 175)
    pitch: int  # 0-100 (default 50)
    volume: int  # 0-200 (default 100)


SCRIPT = (
    Line("Hello. It is nice to see you again. The meeting starts at ten.", "neutral", 165, 50, 100),
    Line("I can't believe it, we won! This is the best day of my life!", "happy", 200, 75, 130),
    Line("I miss her so much. Everything feels so empty now.", "sad", 130, 30, 80),
    Line("Get out! I told you never to touch my things again!", "angry", 210, 60, 170),
)
PAUSE_S = 0.8
RATE = 16_000

# eSpeak NG's C API (speak_lib.h): synchronous output handed to a callback, UTF-8 text.
AUDIO_OUTPUT_SYNCHRONOUS, POS_CHARACTER, CHARS_UTF8 = 2, 1, 1
RATE_PARAMETER, VOLUME_PARAMETER, PITCH_PARAMETER = 1, 2, 3
SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def speak(lines: tuple[Line, ...] = SCRIPT, voice: str = "en-us") -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The lines spoken one after another with pauses: float32 samples at 16 kHz, and each line's span (s)."""
    import librosa

    try:
        import espeakng_loader
    except ImportError:
        raise ConfigError("the example's speech needs eSpeak NG: pip install espeakng-loader") from None
    library = ctypes.CDLL(espeakng_loader.get_library_path())
    library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = library.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0 or library.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ConfigError(f"eSpeak NG could not start with voice {voice!r}")
    chunks: list[np.ndarray] = []

    @SynthCallback
    def collect(samples, count, events):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).astype(np.float32) / 32768.0)
        return 0

    library.espeak_SetSynthCallback(collect)
    pieces, spans, clock = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for line in lines:
        for parameter, value in ((RATE_PARAMETER, line.pace), (PITCH_PARAMETER, line.pitch), (VOLUME_PARAMETER, line.volume)):
            library.espeak_SetParameter(parameter, value, 0)
        chunks.clear()
        text = line.text.encode()
        library.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        spoken = librosa.resample(np.concatenate(chunks), orig_sr=rate, target_sr=RATE) if chunks else np.zeros(0)
        pieces += [spoken.astype(np.float32), np.zeros(int(PAUSE_S * RATE), np.float32)]
        spans.append((clock, clock + len(spoken) / RATE))
        clock += len(spoken) / RATE + PAUSE_S
    return np.clip(np.concatenate(pieces), -1.0, 1.0), spans


def face_frame(width: int = 320, height: int = 240) -> np.ndarray:
    """matplotlib's sample portrait of Grace Hopper, fitted into an RGB frame."""
    import cv2
    from matplotlib import cbook

    image = cv2.cvtColor(cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.COLOR_BGR2RGB)
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale) // 2 * 2, int(image.shape[0] * scale) // 2 * 2))
    frame = np.full((height, width, 3), 40, np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    frame[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return frame


def write_example(path: str | Path, lines: tuple[Line, ...] = SCRIPT, fps: int = 10) -> tuple[Path, list[tuple[float, float]]]:
    """An h264/aac mp4 of the portrait with the spoken lines; returns it and each line's span (s)."""
    audio, spans = speak(lines)
    return write_portrait_video(path, audio, fps=fps), spans


def write_portrait_video(path: str | Path, audio: np.ndarray, fps: int = 10, size: tuple[int, int] = (320, 240)) -> Path:
    """An h264/aac mp4 of the portrait (width, height) over mono 16-kHz float32 `audio`, of any length."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = face_frame(*size)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        sound = container.add_stream("aac", rate=RATE, layout="mono")
        for index in range(int(len(audio) / RATE * fps) + 1):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, fps)
            container.mux(video.encode(picture))
        container.mux(video.encode(None))
        for start in range(0, len(audio), 10 * RATE):  # ten seconds an audio frame: long videos too
            samples = av.AudioFrame.from_ndarray(audio[None, start : start + 10 * RATE], format="flt", layout="mono")
            samples.sample_rate = RATE
            container.mux(sound.encode(samples))
        container.mux(sound.encode(None))
    return path
