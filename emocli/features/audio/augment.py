"""Audio augmentation for training across corpora: transforms of a clip that keep its emotion and change what
a corpus's recording conditions add (noise, room, level, voice pitch and pace, a telephone line).

A sample-table row whose `augmentation` column names one of AUGMENTATIONS is read through it by every audio
extractor (io.read_sample_audio), with its random parameters drawn from a generator seeded by the row's
sample_id: the same row gives the same audio on every machine and run. Rows are made by a dataset (the
`corpora` dataset's `augment` option) and are training material only: they are never in a validation or test
split (data/splits.py, training/crosscorpus.py).

- noise: white noise at a signal-to-noise ratio of 5-20 dB;
- reverb: a synthetic room (exponentially decaying noise, reverberation time 0.2-0.8 s), half wet;
- gain: -12 to +6 dB, clipped at full scale;
- speed: played 0.9-1.1 times as fast (pitch and pace together, as a tape would);
- telephone: band-limited to 300-3400 Hz, resampled to 8 kHz, G.711 mu-law coded, and back.
"""

from __future__ import annotations

import hashlib

import numpy as np

from emocli.core.errors import ConfigError
from emocli.core.types import AUGMENTATIONS

MU = 255.0  # G.711 mu-law


def generator(sample_id: str, kind: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{sample_id}|{kind}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment(signal: np.ndarray, rate: int, kind: str, sample_id: str) -> np.ndarray:
    """`signal` (mono float, [-1, 1]) transformed by `kind`, its parameters drawn for this sample."""
    import soxr

    rng = generator(sample_id, kind)
    signal = np.asarray(signal, dtype=np.float32)
    if kind == "noise":
        power = float(np.mean(signal.astype(np.float64) ** 2)) or 1e-8
        snr_db = rng.uniform(5, 20)
        noise = rng.standard_normal(signal.shape) * np.sqrt(power / 10 ** (snr_db / 10))
        return np.clip(signal + noise, -1, 1).astype(np.float32)
    if kind == "reverb":
        from scipy.signal import fftconvolve

        rt60 = rng.uniform(0.2, 0.8)
        t = np.arange(int(rt60 * rate)) / rate
        response = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
        response[0] = 1.0
        wet = fftconvolve(signal, response / np.abs(response).sum() * 4)[: signal.size]
        mixed = 0.5 * signal + 0.5 * wet
        peak = np.abs(mixed).max() or 1.0
        return (mixed * (np.abs(signal).max() / peak)).astype(np.float32)
    if kind == "gain":
        return np.clip(signal * 10 ** (rng.uniform(-12, 6) / 20), -1, 1).astype(np.float32)
    if kind == "speed":
        factor = rng.uniform(0.9, 1.1)
        return soxr.resample(signal, rate * factor, rate).astype(np.float32)
    if kind == "telephone":
        from scipy.signal import butter, sosfilt

        narrow = soxr.resample(sosfilt(butter(4, [300, 3400], btype="band", fs=rate, output="sos"), signal), rate, 8000)
        coded = np.sign(narrow) * np.log1p(MU * np.abs(np.clip(narrow, -1, 1))) / np.log1p(MU)
        coded = np.round(coded * 127) / 127  # 8 bits
        decoded = np.sign(coded) * ((1 + MU) ** np.abs(coded) - 1) / MU
        return soxr.resample(decoded, 8000, rate)[: signal.size].astype(np.float32)
    raise ConfigError(f"unknown augmentation {kind!r}; emo knows {', '.join(AUGMENTATIONS)}")
