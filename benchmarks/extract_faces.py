"""Face features from video: what each stage costs per frame on one CPU thread, and what the store keeps.

On generated h264 clips in RAVDESS's video format (1280x720, 30 fps; a public-domain portrait filling 80 %
of the frame height on a moving colour ramp, from tests/media.py), 3 to 4 s long (3.5 s on average), so
that no two clips give the same pooled vector (identical rows would flatter Parquet's compression):
  stages: per sampled frame (4 per second, as the face-mobilenet presets sample), the CPU time and wall
      time of decoding (PyAV, seeking and converting only what is sampled), MTCNN detection (the default),
      Haar detection (the fallback, for comparison), eye alignment and the 224-px crop, and the MobileNetV2
      embedding (ImageNet weights from their offline package, batches of up to 64 crops);
  store: `FeatureStore.extract` of every clip with the face-mobilenet and face-mobilenet-seq presets into a
      fresh store, in-process (these extractors batch in the main process): wall and CPU seconds per
      sampled frame end to end (store writes and compaction included; loading the weights, about a
      second once per process, not), each preset alone, and the Parquet bytes its feature set takes per
      clip and per sampled frame.
One torch/OpenMP thread unless --threads says otherwise. The machine is shared: compare CPU time, which
other processes disturb less than wall time; the JSON records the load average.
Writes benchmarks/results/extract_faces.json.

    python benchmarks/extract_faces.py [--clips 12] [--seconds 3.5] [--size 1280x720] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout
sys.path.insert(0, str(REPO / "tests"))  # the tests' media helpers

from benchmarks.common import write_results  # noqa: E402

PRESETS = ("face-mobilenet", "face-mobilenet-seq")
FPS = 4.0  # the presets' sampling rate


class Clock:
    """Wall and CPU seconds of this process, accumulated over `with clock:` blocks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    def per(self, count: int) -> dict[str, float]:
        return {"cpu_ms": round(1000 * self.cpu / count, 1), "wall_ms": round(1000 * self.wall / count, 1)}


def make_clips(folder: Path, count: int, seconds: float, size: tuple[int, int]) -> Path:
    """`count` face clips of `seconds` +- 0.5 s and their manifest (labels alternate; they are not used)."""
    from media import write_video

    rows = []
    for index in range(count):
        length = seconds - 0.5 + index / max(1, count - 1)
        path = write_video(folder / f"clip{index:03d}.mp4", seconds=length, fps=30, size=size, face=True)
        rows.append({"video": path.name, "label": ["happy", "sad"][index % 2]})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def stages(paths: list[Path]) -> dict:
    """Per-frame cost of each stage, run one after the other on every clip."""
    import numpy as np

    from emocli.features.presets import build_extractor
    from emocli.features.visual.faces import aligned_crop, face_detector
    from emocli.features.visual.video import read_frames

    extractor = build_extractor("face-mobilenet")
    mtcnn, haar = face_detector("mtcnn"), face_detector("haar")
    extractor.backbone  # noqa: B018  loads the weights before the clocks start
    warm = read_frames(paths[0], fps=FPS, n_frames=32).frames[:2]
    mtcnn.detect_batch(warm), extractor._embed(np.zeros((2, 224, 224, 3), np.uint8))  # first-call set-up

    clocks = {name: Clock() for name in ("decode", "detect_mtcnn", "detect_haar", "align_crop", "embed")}
    frames_seen = faces_found = 0
    for path in paths:
        with clocks["decode"]:
            sampled = read_frames(path, fps=FPS, n_frames=32)
        with clocks["detect_mtcnn"]:
            faces = mtcnn.detect_batch(sampled.frames)
        with clocks["detect_haar"]:
            haar.detect_batch(sampled.frames)
        found = [(frame, face) for frame, face in zip(sampled.frames, faces, strict=True) if face is not None]
        with clocks["align_crop"]:
            crops = np.stack([aligned_crop(frame, face, 224, 0.2) for frame, face in found])
        with clocks["embed"]:
            extractor._embed(crops)
        frames_seen += len(sampled.frames)
        faces_found += len(found)
    total = Clock()
    total.cpu = sum(c.cpu for n, c in clocks.items() if n != "detect_haar")
    total.wall = sum(c.wall for n, c in clocks.items() if n != "detect_haar")
    return {
        "frames": frames_seen,
        "frames_with_a_face": faces_found,
        "per_frame": {name: clock.per(frames_seen) for name, clock in clocks.items()}
        | {"total (mtcnn path)": total.per(frames_seen)},
    }


def store(manifest: Path, frames: int) -> dict:
    """Each preset extracted into a fresh store: end-to-end cost per frame and bytes on disk."""
    from emocli.datasets import load_dataset
    from emocli.features.presets import build_extractor
    from emocli.features.store import FeatureStore

    samples = load_dataset("manifest", manifest)
    clips = len(samples.table)
    figures = {}
    for preset in PRESETS:
        with tempfile.TemporaryDirectory(prefix="emo-bench-faces-") as directory:
            extractor = build_extractor(preset)
            extractor.backbone  # noqa: B018  loads the weights before the clock starts
            clock = Clock()
            with clock:
                report = FeatureStore(directory).extract(samples, [extractor], workers=0, progress=False)
            (feature_set,) = report.feature_sets
            if feature_set.extracted != clips:
                raise SystemExit(f"{preset}: {feature_set.summary()}")
            parts = Path(directory) / extractor.feature_set_name / "parts"
            size = sum(f.stat().st_size for f in parts.glob("*.parquet"))
        figures[preset] = {
            "kind": extractor.kind,
            "dim": extractor.dim,
            "clips": clips,
            **clock.per(frames),
            "bytes_per_clip": round(size / clips),
            "bytes_per_frame": round(size / frames),
            "float32_bytes_per_row": extractor.dim * 4,  # a row: a clip's vector, or one frame of a sequence
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.5, help="mean clip length (clips spread +- 0.5 s)")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT (even numbers)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="emo-bench-faces-") as directory:
        manifest = make_clips(Path(directory), args.clips, args.seconds, size)
        paths = sorted(Path(directory).glob("clip*.mp4"))
        per_stage = stages(paths)
        per_store = store(manifest, per_stage["frames"])
    figures = {
        "clips": args.clips,
        "mean_seconds_per_clip": args.seconds,
        "video": f"{size[0]}x{size[1]} h264, 30 fps",
        "sampled_fps": FPS,
        "threads": args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        **per_stage,
        "store": per_store,
    }
    for name, row in figures["per_frame"].items():
        print(f"{name:>20}: {row['cpu_ms']:7.1f} ms CPU, {row['wall_ms']:7.1f} ms wall per frame")
    for name, row in per_store.items():
        print(
            f"{name:>20}: {row['cpu_ms']:7.1f} ms CPU, {row['wall_ms']:7.1f} ms wall per frame end to end; "
            f"{row['bytes_per_clip']:,} bytes per clip, {row['bytes_per_frame']:,} per frame"
        )
    print(f"wrote {write_results('extract_faces', figures)}")


if __name__ == "__main__":
    main()
