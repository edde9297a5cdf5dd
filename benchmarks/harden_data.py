"""What the data-hardening checks cost: the sample index's agreement check when a dataset is extracted
again, the NaN/inf check of feature tables (every commit, every merge, every training load), reading a
pickled research file as plain data against unpickling it fully, the store's writer lock, and the WAV
header read that catches truncated files.

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
        }
    for name, values in figures.items():
        print(f"{name}: {values}")
    print(f"written to {write_results('harden_data', figures)}")


if __name__ == "__main__":
    main()
