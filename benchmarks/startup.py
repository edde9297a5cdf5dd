"""Start-up: wall and CPU time of `emo --help`, `emo models`, and a cold `emo predict` with a non-spiking
(CFN-SR) and a spiking (SMILE) run, side by side with `python -c "import torch"` as the floor any command
that runs a model pays. Each command in a fresh process, the median of `--repeats` (after one untimed run
that warms the disk cache). Writes benchmarks/results/startup.json.

    python benchmarks/startup.py [--work DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from benchmarks.common import write_results  # noqa: E402
from benchmarks.predict import make_clip, trained_run  # noqa: E402


def timed(command: list[str], repeats: int) -> dict:
    """Median wall seconds and CPU seconds (user + system of the child) over `repeats` fresh processes."""
    subprocess.run(command, capture_output=True, check=True)  # warm the disk cache
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
            "runs": repeats, "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the runs (kept for reuse).")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="emo-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    clip = make_clip(work / "clip.mp4", 0)
    emo = [sys.executable, "-m", "emocli"]
    cases = {
        "python -c 'import torch' (floor)": [sys.executable, "-c", "import torch"],
        "emo --help": [*emo, "--help"],
        "emo models": [*emo, "models"],
        "emo predict, CFN-SR run (no spiking layer)": [*emo, "predict", "--model", str(trained_run(work, "audio")), str(clip), "--quiet"],
        "emo predict, SMILE run (spiking)": [*emo, "predict", "--model", str(trained_run(work, "audio+text")), str(clip), "--quiet"],
    }
    figures = {}
    for name, command in cases.items():
        figures[name] = timed(command, args.repeats)
        print(f"{name:<48} {figures[name]['wall_s']:6.2f} s wall  {figures[name]['cpu_s']:6.2f} s CPU")
    print(f"wrote {write_results('startup', figures)}")


if __name__ == "__main__":
    main()
