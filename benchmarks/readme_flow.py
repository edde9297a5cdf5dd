"""The README's "Train on a dataset" block as a user runs it, on the whole RAVDESS speech set: each command's
wall time and CPU time (the process and its children), in a fresh folder, with the machine's load.

The commands are read from README.md (its third bash block), `<stamp>` replaced by the run the block
trained, and run in order with $EMO_RAVDESS_ROOT set to the data, on one thread (OMP_NUM_THREADS=1, as the
project measures; several threads on a busy machine wait on each other); `clip.mp4` is the example video's
angry sentence (emocli.example). The results are written after each command, so an interrupted run keeps
what it measured (`complete` says whether every command ran). These are the figures behind the README's
time estimate.

    python benchmarks/readme_flow.py --root ../shared/data/ravdess
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPOSITORY, write_results


def training_block() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", (REPOSITORY / "README.md").read_text(encoding="utf-8"),
                        flags=re.DOTALL | re.MULTILINE)
    (block,) = [b for b in blocks if "emo train" in b]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the RAVDESS folder")
    args = parser.parse_args()
    from emocli.example import SCRIPT, write_example

    folder = Path(tempfile.mkdtemp(prefix="emo-readme-"))
    write_example(folder / "clip.mp4", lines=SCRIPT[3:])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EMO_RAVDESS_ROOT": str(args.root.resolve()), "EMO_DATA": str(folder / "data-home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    figures: dict = {}
    commands = training_block()
    for command in commands:
        if "<stamp>" in command:
            (run,) = (folder / "runs").glob("mmer-ravdess-*")
            command = command.replace("runs/mmer-ravdess-<stamp>", f"runs/{run.name}")
        shown = command.split("#")[0].strip()
        load = os.getloadavg()[0]
        before, started = os.times(), time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True)
        wall, after = time.perf_counter() - started, os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        figures[shown] = {"exit": done.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                          "load_before": load, "load_after": os.getloadavg()[0]}
        print(shown, figures[shown], flush=True)
        write_results("readme_flow", {"data": "RAVDESS speech, 1440 clips", "threads": 1,
                                      "complete": len(figures) == len(commands), "commands": figures})
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            break


if __name__ == "__main__":
    main()
