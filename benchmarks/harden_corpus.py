"""The hostile corpora as totals: how many crafted or damaged inputs each tests/test_hostile_*.py file (and
the fault-injection files test_faults.py and test_store_faults.py) holds, how many end as they must (a
correct result, or one line naming the file and the cause with a non-zero exit; pytest's passes), how
many do not, and how long each file takes. Each file runs in its own pytest process, one worker.

A case is one collected test (a parametrised test counts once per parameter set); skipped cases need
what this machine lacks (real data, root's or a non-root user's permissions) and are counted apart.

    python benchmarks/harden_corpus.py    (writes benchmarks/results/harden_corpus.json)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

CORPORA = ("test_hostile_data.py", "test_hostile_runs.py", "test_hostile_models.py", "test_hostile_edges.py",
           "test_faults.py", "test_store_faults.py")


def run_corpus(name: str, report: Path) -> dict:
    started = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                    f"--junitxml={report}", str(REPO / "tests" / name)], cwd=REPO, env=environment,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - started
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases, failed, errors, skipped = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped"))
    return {"cases": cases, "as_they_must": cases - failed - errors - skipped, "not": failed + errors,
            "skipped": skipped, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as work:
        for name in CORPORA:
            figures[name] = run_corpus(name, Path(work) / f"{name}.xml")
            print(name, figures[name], flush=True)
    total = {key: sum(f[key] for f in figures.values()) for key in ("cases", "as_they_must", "not", "skipped")}
    total["seconds"] = round(sum(f["seconds"] for f in figures.values()), 1)
    result = {"total": total, "corpora": figures, "load_average_1min": round(os.getloadavg()[0], 2)}
    print("total", total)
    print(write_results("harden_corpus", result))


if __name__ == "__main__":
    main()
