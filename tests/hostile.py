"""Hostile inputs for tests: damaged, odd and crafted media, manifests, pickles and stores, each made in a
few milliseconds from generated signals (nothing is downloaded or read from real data).

    speech_like(seconds, rate)            a band-limited signal (tones under 3 kHz, slow amplitude changes)
    write_wav(path, signal, rate, ...)    any rate, channels [channels, n] and PCM/float subtype
    cut_data(source, target, keep)        a WAV/AIFF whose header promises more than its data holds
    crafted_pickle(path, marker, ...)     a torch.save or plain pickle that creates `marker` when unpickled
    marker_pickle(marker)                 bare pickle bytes that create `marker` when unpickled

and the way each case is judged:

    emo(monkeypatch, capsys, *args)       `emo ARGS` through its entry point, in this process: exit code, out, err
    assert_one_line_error(outcome, ...)   exit code 2, no traceback, one `error:` line naming the file and causes
    tree(folder)                          every entry under a folder (kind, size, content hash, link target), to
                                          compare before and after a case: nothing written, deleted or replaced
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 16000


def speech_like(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A mono float32 signal whose content lies below 3 kHz, so 8 kHz copies keep all of it."""
    t = np.arange(round(seconds * rate)) / rate
    parts = [(0.2, 220, 3), (0.15, 660, 5), (0.1, 1400, 2), (0.05, 2600, 7)]  # amplitude, Hz, modulation Hz
    signal = sum(a * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * m * t)) for a, f, m in parts)
    return signal.astype(np.float32)


def resampled(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    import soxr

    return signal if rate == target else soxr.resample(signal, rate, target).astype(np.float32)


def write_wav(path: Path, signal: np.ndarray, rate: int = RATE, subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    """signal [n] or [channels, n]."""
    data = signal.T if signal.ndim == 2 else signal
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    return path


def cut_data(source: Path, target: Path, keep: float = 0.5) -> Path:
    """Keep the header and the first `keep` of the rest: the header still promises the whole clip."""
    data = source.read_bytes()
    header = 44 if data[:4] == b"RIFF" else 54
    target.write_bytes(data[: header + int((len(data) - header) * keep)])
    return target


def with_sample_rate(source: Path, target: Path, rate: int) -> Path:
    """A copy of a PCM WAV (canonical 44-byte header) whose header claims another sample rate."""
    data = bytearray(source.read_bytes())
    data[24:28] = struct.pack("<I", rate)
    target.write_bytes(bytes(data))
    return target


def zero_frames(path: Path, rate: int = RATE) -> Path:
    """A valid WAV header with a data chunk of size 0."""
    sf.write(path, np.zeros(0, np.float32), rate, subtype="PCM_16")
    return path


def write_faststart_m4a(path: Path, signal: np.ndarray, rate: int = RATE) -> Path:
    """AAC in an mp4 whose index (moov) comes first: cut short, it still declares the whole duration."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(signal[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


class _Payload:
    """Unpickling this opens (creates) the marker file: what a crafted dataset file could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_pickle(path: Path, marker: Path, kind: str = "torch", around: dict | None = None) -> Path:
    """A file that looks like a dataset dict and creates `marker` when unpickled: torch.save or plain pickle."""
    data = {**(around or {}), "train": {"payload": _Payload(marker)}}
    if kind == "torch":
        import torch

        torch.save(data, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def marker_pickle(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled: what any loader that runs pickled code would do."""
    return pickle.dumps({"weights": _Payload(marker)})


# ------------------------------------------------------------------------------------- judging a case


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def emo(monkeypatch, capsys, *args) -> Outcome:
    """`emo ARGS` through the installed entry point, in this process."""
    from emocli.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["emo", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return Outcome(exit_info.value.code or 0, out, err)


def assert_one_line_error(outcome: Outcome, path: Path | str | None, *causes: str) -> str:
    """Exit code 2, no traceback, and exactly one error line, naming `path` and every cause."""
    assert outcome.code == 2, outcome
    assert "Traceback" not in outcome.err + outcome.out
    (line,) = outcome.errors
    for part in (*(() if path is None else (str(path),)), *causes):
        assert part in " ".join(line.split()), (part, line)  # rich may wrap a long path: compare without breaks
    return line


def tree(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (links not followed): a file's size and sha256, a link's target, a folder
    or other kind as such; compare two snapshots to show that a case wrote, deleted or replaced nothing."""
    entries = {}
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(parent) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_file():
                entries[key] = ("file", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            elif path.is_dir():
                entries[key] = ("folder",)
            else:
                entries[key] = ("other", path.stat().st_mode)
    return entries
