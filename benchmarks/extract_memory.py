"""Peak memory of extraction on 10 % and 100 % of RAVDESS: it should stay flat, because the feature store
streams (rows are committed in chunks and never held for the whole dataset).

Each size runs `emo extract` (python -m emocli) into a fresh store in its own process, while this script
samples the resident memory (RSS) of that process and all its descendants (the extraction workers) every
--interval seconds from /proc (Linux). Reported: the peak of the tree's summed RSS, the peak of the main
process alone, and the ratio of the 100 % peak to the 10 % peak (flat: close to 1).

    python benchmarks/extract_memory.py [--root ../shared/data/ravdess] [--fractions 0.1,1.0]
                                        [--audio compare2016 --audio mfcc-cfnsr] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
RAVDESS_CLIPS = 1440


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 when it has just exited)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def descendants(pid: int) -> list[int]:
    """The process and every process below it (children of all its threads, recursively)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def measure(command: list[str], interval: float) -> dict:
    """Run the command; sample the RSS of its process tree until it exits."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_tree = peak_main = samples = 0
    while process.poll() is None:
        tree = sum(rss_bytes(p) for p in descendants(process.pid))
        peak_tree, peak_main = max(peak_tree, tree), max(peak_main, rss_bytes(process.pid))
        samples += 1
        time.sleep(interval)
    output = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_tree_mib": round(peak_tree / 2**20, 1),
        "peak_main_mib": round(peak_main / 2**20, 1),
        "rss_samples": samples,
        "summary": [line for line in output.splitlines() if "extracted" in line],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--fractions", default="0.1,1.0", help="shares of the 1440 clips, comma-separated")
    parser.add_argument("--audio", action="append", help="audio extractors (default: compare2016, mfcc-cfnsr)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    parser.add_argument("--quick", action="store_true", help="--fractions 0.05,0.25 with mfcc-cfnsr only")
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"RAVDESS not found at {args.root}: pass --root")
    fractions = [0.05, 0.25] if args.quick else [float(f) for f in args.fractions.split(",")]
    audio = args.audio or (["mfcc-cfnsr"] if args.quick else ["compare2016", "mfcc-cfnsr"])

    figures: dict = {"workers": args.workers, "extractors": audio, "by_clips": {}}
    for fraction in fractions:
        limit = max(1, round(fraction * RAVDESS_CLIPS))
        with tempfile.TemporaryDirectory(prefix="emo-memory-") as store:
            command = [sys.executable, "-m", "emocli", "extract", "--dataset", "ravdess", "--root", str(args.root),
                       "--out", store, "--limit", str(limit), "--workers", str(args.workers), "--quiet"]
            for choice in audio:
                command += ["--audio", choice]
            result = measure(command, args.interval)
        figures["by_clips"][str(limit)] = result
        print(f"{limit:5d} clips: peak RSS {result['peak_tree_mib']:7.1f} MiB (process tree), "
              f"{result['peak_main_mib']:7.1f} MiB (main), {result['seconds']:.0f} s", flush=True)
    peaks = [r["peak_tree_mib"] for r in figures["by_clips"].values()]
    figures["peak_ratio_largest_to_smallest"] = round(peaks[-1] / peaks[0], 3)
    print(f"peak ratio {figures['peak_ratio_largest_to_smallest']:.3f} (flat: close to 1)")
    print(f"wrote {write_results('extract_memory', figures)}")


if __name__ == "__main__":
    main()
