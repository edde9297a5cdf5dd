"""Start-up: wall and CPU time of `emo --help`, `emo models`, and a cold `emo predict` with a non-spiking
(CFN-SR) and a spiking (SMILE) run, side by side with `python -c "import torch"`, the floor any command that
runs a model pays. Every command runs in a fresh process, once per round, the commands interleaved so
that a busy moment of a shared machine falls on all of them; each is reported as its median over the rounds
with the range, and as a ratio to the floor measured in the same round. On a machine shared with other work
the wall times grow with its load (recorded) and the CPU times much less. Aims: `emo models` under 1 s, a
non-spiking `emo predict` under 2.5 s.

One untimed run of each command first warms the disk cache. Writes benchmarks/results/startup.json.

    python benchmarks/startup.py [--work DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
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

FLOOR = "python -c 'import torch' (floor)"
AIMS = {"emo models": 1.0, "emo predict, CFN-SR run (no spiking layer)": 2.5}


def run_once(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spread(values: list[float], digits: int = 3) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the runs (kept for reuse).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed runs of each command (interleaved).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="emo-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    clip = make_clip(work / "clip.mp4", 0)
    emo = [sys.executable, "-m", "emocli"]
    cases = {
        FLOOR: [sys.executable, "-c", "import torch"],
        "emo --help": [*emo, "--help"],
        "emo models": [*emo, "models"],
        "emo predict, CFN-SR run (no spiking layer)": [*emo, "predict", "--model", str(trained_run(work, "audio")),
                                                       str(clip), "--quiet"],
        "emo predict, SMILE run (spiking)": [*emo, "predict", "--model", str(trained_run(work, "audio+text")),
                                             str(clip), "--quiet"],
    }
    for command in cases.values():
        run_once(command)  # warms the disk cache
    load_before = os.getloadavg()[0]
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, command in cases.items():
            wall, cpu = run_once(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
        for name in cases:
            ratios[name].append(walls[name][-1] / walls[FLOOR][-1])
    figures: dict = {"rounds": args.rounds, "load_average_1min_before": round(load_before, 2),
                     "load_average_1min_after": round(os.getloadavg()[0], 2)}
    commands = {}
    for name, command in cases.items():
        wall, cpu, ratio = spread(walls[name]), spread(cpus[name]), spread(ratios[name], 2)
        commands[name] = {
            "wall_s": wall["median"], "wall_min_s": wall["min"], "wall_max_s": wall["max"],
            "cpu_s": cpu["median"], "cpu_min_s": cpu["min"], "cpu_max_s": cpu["max"],
            "to_floor": ratio["median"], "to_floor_min": ratio["min"], "to_floor_max": ratio["max"],
            "aim_s": AIMS.get(name),
            "command": shlex.join([Path(command[0]).name, *(c.replace(str(work), "WORK") for c in command[1:])]),
        }
        print(f"{name:<48} {wall['median']:6.2f} s wall ({wall['min']:.2f}-{wall['max']:.2f})  "
              f"{commands[name]['cpu_s']:6.2f} s CPU  x{ratio['median']:.2f} the floor")
    figures["commands"] = commands
    print(f"wrote {write_results('startup', figures)}")


if __name__ == "__main__":
    main()
