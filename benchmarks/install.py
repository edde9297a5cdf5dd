"""A fresh install: the size of the virtual environment `make install` creates (du of .venv) and the wall time
of `make demo` from nothing (a fresh clone: venv, packages, the example video, the shipped model's
prediction), for several commits side by side on the same machine, one after the other.

Each case clones the repository at its commit into a temporary folder, runs `make demo` (with TORCH_SPEC
when the case gives one), measures, and deletes the folder. Packages come from the package index pip is
configured with (its cache included, as a user's second install would); the 1-minute load average before
and after each case says how busy the machine was, since the wall time grows with it.

    python benchmarks/install.py --case before=539626f --case after=HEAD \
        --case "after, CPU-only torch=HEAD:torch==2.13.0+cpu torchvision==0.28.0"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPOSITORY, write_results

# The largest parts of an install, reported separately: what a CPU-only torch build leaves out.
PARTS = ("nvidia", "triton", "torch")


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def measure(name: str, commit: str, torch_spec: str | None, keep_log: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="emo-install-"))
    try:
        clone = folder / "emo"
        subprocess.run(["git", "clone", "-q", str(REPOSITORY), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        command = ["make", "demo", *([f"TORCH_SPEC={torch_spec}"] if torch_spec else [])]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with keep_log.open("w") as log:
            done = subprocess.run(command, cwd=clone, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - started
        venv = clone / ".venv"
        site = next((venv / "lib").glob("python3*/site-packages"))
        row = {
            "commit": subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True, check=True).stdout.strip(),
            "torch_spec": torch_spec or "(Makefile's choice)",
            "make_demo_ok": done.returncode == 0,
            "make_demo_wall_s": round(seconds, 1),
            "venv_gb": round(du_bytes(venv) / 1e9, 3),
            **{f"{part}_gb": round(du_bytes(site / part) / 1e9, 3) if (site / part).exists() else 0.0 for part in PARTS},
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        print(name, row, flush=True)
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", required=True,
                        help="NAME=COMMIT or NAME=COMMIT:TORCH_SPEC; the cases run one after the other")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()),
                        help="where each case's `make demo` output is kept (NAME.log)")
    args = parser.parse_args()
    cases = {}
    for case in args.case:
        name, _, target = case.partition("=")
        commit, _, spec = target.partition(":")
        log = args.logs / f"install-{''.join(c if c.isalnum() else '-' for c in name)}.log"
        cases[name] = measure(name, commit, spec or None, log)
    print(write_results("install", cases))


if __name__ == "__main__":
    main()
