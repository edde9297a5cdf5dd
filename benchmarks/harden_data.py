"""What the data-hardening checks cost: the sample index's agreement check when a dataset is extracted
again, the NaN/inf check of feature tables (every commit, every merge, every training load), reading a
pickled research file as plain data against unpickling it fully, the store's writer lock, the WAV
header read that catches truncated files, the bounded reader of untrusted JSON (regular file, size and
depth checks) against plain json.loads, and confining a manifest's media to its folder.

Each figure is the median of --repeats timings (wall clock, one process, one thread).

    python benchmarks/harden_data.py [--meld ../shared/data/meld] [--repeats 5]   (writes results/harden_data.json)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

import numpy as np  # noqa: E402

from benchmarks.common import write_results  # noqa: E402


def median_seconds(run, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def sample_index(meld: Path | None, folder: Path, repeats: int) -> dict:
    """Writing MELD's index (13,708 rows) into a store, then the same sample set again (the agreement check
    of every row, nothing written)."""
    import pandas as pd

    from emocli.core.samples import SampleSet
    from emocli.core.types import LabelMap
    from emocli.features.store import FeatureStore

    if meld is not None and (meld / "train_sent_emo.csv").is_file():
        from emocli.datasets.meld import MeldAdapter

        sample_set, source = MeldAdapter(find_videos=False).load(meld), str(meld)
    else:
        n = 13708
        table = pd.DataFrame({"sample_id": [f"s{i:05d}" for i in range(n)], "label": ["joy"] * n,
                              "text": ["a line of dialogue"] * n, "speaker": ["Ross"] * n})  # fmt: skip
        sample_set, source = SampleSet("generated", folder, table, LabelMap(("joy",))), "generated, 13,708 rows"
    store = FeatureStore(folder / "index")

    def first() -> None:
        (store.path / "samples.parquet").unlink(missing_ok=True)
        with store._writer():
            store._write_samples(sample_set)

    def again() -> None:
        with store._writer():
            store._write_samples(sample_set)

    first_s = median_seconds(first, repeats)
    again_s = median_seconds(again, repeats)
    return {"source": source, "rows": len(sample_set.table), "first_write_s": round(first_s, 4),
            "same_set_again_s": round(again_s, 4)}  # fmt: skip


def nonfinite_check(repeats: int) -> dict:
    """nonfinite_samples on a ComParE-sized vector table and on an MFCC-sized sequence table."""
    import pyarrow as pa

    from emocli.features.store import nonfinite_samples

    rng = np.random.default_rng(0)
    figures = {}
    vectors = rng.normal(size=(1440, 6373)).astype(np.float32)
    table = pa.table({"sample_id": [f"s{i}" for i in range(len(vectors))],
                      "values": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 6373)})  # fmt: skip
    seconds = median_seconds(lambda: nonfinite_samples(table), repeats)
    figures["vectors_1440x6373"] = {"s": round(seconds, 4), "MB_per_s": round(vectors.nbytes / 1e6 / seconds)}
    frames = rng.normal(size=(1440 * 212, 13)).astype(np.float32)
    offsets = pa.array(np.arange(0, len(frames) + 1, 212, dtype=np.int32))
    sequences = pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(pa.array(frames.ravel()), 13))
    table = pa.table({"sample_id": [f"s{i}" for i in range(1440)], "values": sequences})
    seconds = median_seconds(lambda: nonfinite_samples(table), repeats)
    figures["sequences_1440x212x13"] = {"s": round(seconds, 4), "MB_per_s": round(frames.nbytes / 1e6 / seconds)}
    return figures


def pickled_file(folder: Path, repeats: int) -> dict:
    """A MOSEI-like aligned file (2,000 samples of numpy arrays [60, 300 / 74 / 35] per split) read as plain
    data against torch.load(weights_only=False)."""
    import torch

    from emocli.datasets.pickled import load_pickled

    rng = np.random.default_rng(0)
    n = 2000
    part = {key: [rng.normal(size=(60, dim)).astype(np.float32) for _ in range(n)]
            for key, dim in (("src-text", 300), ("src-audio", 74), ("src-visual", 35))}  # fmt: skip
    part["tgt"] = [[2, 4, 3]] * n
    path = folder / "aligned.pt"
    torch.save({"train": part, "valid": part, "test": part}, path)
    plain = median_seconds(lambda: load_pickled(path, "file"), repeats)
    full = median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=False), repeats)
    return {"file_MB": round(path.stat().st_size / 1e6, 1), "plain_data_s": round(plain, 3),
            "full_unpickling_s": round(full, 3), "plain_over_full": round(plain / full, 2)}  # fmt: skip


def writer_lock(folder: Path, repeats: int) -> dict:
    from emocli.features.store import FeatureStore

    store = FeatureStore(folder / "locked")

    def hold() -> None:
        with store._writer():
            pass

    hold()
    return {"acquire_release_ms": round(1000 * median_seconds(hold, repeats * 20), 3)}


def header_read(folder: Path, repeats: int) -> dict:
    import soundfile as sf

    from emocli.features.audio.io import declared_frames

    path = folder / "clip.wav"
    sf.write(path, np.zeros(16000 * 4, np.float32), 16000, subtype="PCM_16")
    seconds = median_seconds(lambda: [declared_frames(path) for _ in range(1000)], repeats) / 1000
    return {"per_file_us": round(1e6 * seconds, 1)}


def bounded_reads(folder: Path, repeats: int) -> dict:
    """core.io.read_json (stat, non-blocking open, size and depth checks) against json.loads(read_text())
    on a run's config.json and on a 2,000-epoch metrics log (layout.read_jsonl against a plain loop)."""
    import json

    from emocli.core.io import read_json
    from emocli.runs import layout

    config = REPO / "emocli" / "pretrained" / "emo-default" / "audio" / "config.json"
    loops = 1000
    plain = median_seconds(lambda: [json.loads(config.read_text(encoding="utf-8")) for _ in range(loops)], repeats)
    bounded = median_seconds(lambda: [read_json(config, dict) for _ in range(loops)], repeats)
    log = folder / "metrics.jsonl"
    record = {"epoch": 1, "lr": 1e-3, "seconds": 1.5, "train": {"loss": 0.5, "accuracy": 0.7},
              "valid": {"loss": 0.6, "accuracy": 0.6, "weighted_f1": 0.58}, "selected": True}
    log.write_text("".join(json.dumps({**record, "epoch": k}) + "\n" for k in range(2000)))
    plain_log = median_seconds(lambda: [json.loads(line) for line in log.read_text().splitlines()], repeats)
    bounded_log = median_seconds(lambda: layout.read_jsonl(log), repeats)
    return {
        "config_json_bytes": config.stat().st_size,
        "config_json_plain_us": round(1e6 * plain / loops, 1),
        "config_json_bounded_us": round(1e6 * bounded / loops, 1),
        "metrics_log_2000_lines_plain_ms": round(1000 * plain_log, 2),
        "metrics_log_2000_lines_bounded_ms": round(1000 * bounded_log, 2),
    }


def manifest_confinement(folder: Path, repeats: int) -> dict:
    """A 10,000-row CSV manifest loaded with its media confined to its folder (each path resolved) and
    with allow_outside=true (no check); check_media off, so only the confinement differs."""
    from emocli.datasets.manifest import ManifestAdapter

    media = folder / "media"
    media.mkdir()
    rows = 10_000
    manifest = folder / "manifest.csv"
    manifest.write_text("audio,label\n" + "".join(f"media/clip{k:05d}.wav,{'ab'[k % 2]}\n" for k in range(rows)))
    free = median_seconds(lambda: ManifestAdapter(check_media=False, allow_outside=True).load(manifest), repeats)
    confined = median_seconds(lambda: ManifestAdapter(check_media=False).load(manifest), repeats)
    return {"rows": rows, "allow_outside_s": round(free, 3), "confined_s": round(confined, 3),
            "per_row_us": round(1e6 * (confined - free) / rows, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld", type=Path, default=REPO.parent / "shared" / "data" / "meld")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        figures = {
            "sample_index": sample_index(args.meld, folder, args.repeats),
            "nonfinite_check": nonfinite_check(args.repeats),
            "pickled_file": pickled_file(folder, args.repeats),
            "writer_lock": writer_lock(folder, args.repeats),
            "wav_header_read": header_read(folder, args.repeats),
            "bounded_reads": bounded_reads(folder, args.repeats),
            "manifest_confinement": manifest_confinement(folder, args.repeats),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
    for name, values in figures.items():
        print(f"{name}: {values}")
    print(f"written to {write_results('harden_data', figures)}")


if __name__ == "__main__":
    main()
