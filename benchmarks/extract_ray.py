"""Extraction on a Ray cluster against the local worker pool: Whisper base (the `whisper-base` preset) on the same RAVDESS clips with `--workers 2` (the local spawn pool) and on a local Ray cluster of 1 and of 2 CPUs (`--executor ray`, one CPU per task), and the fixed cost of a Ray task.

Each configuration runs in a fresh process, into a fresh store, with cold workers (each loads Whisper),
rounds interleaving the configurations. `clips_per_s` is the clips over the wall time of
`FeatureStore.extract`, from its call to its return (starting the workers and loading the model included,
committing and compacting too); `steady_clips_per_s` counts from the 10th percent of results to the last,
leaving out that start-up. The Ray cluster is started before the clock, and its start-up is reported apart
(`cluster_start_s`): on a real cluster it is up before a job comes. `driver_cpu_ms_per_clip` is the CPU time
of the process that receives and commits the results, per clip. The stores of every configuration are
compared value by value with the first one's (`identical`).

The fixed cost of a task is measured on `openface-au` (a table lookup: no work per clip) over all 1440
clips, as tasks of 16 clips on the 2-CPU cluster against the local pool's chunks of 16: the wall time and
the driver's CPU time per task. The load average of the machine before and after each run is recorded: on
a shared machine the neighbours' work shows in every figure.

    python benchmarks/extract_ray.py [--root ../shared/data/ravdess] [--clips 240] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # what the local pool's workers and one-CPU Ray tasks use
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

CONFIGS = {  # name -> Ray CPUs (None: the local pool of 2 workers)
    "local --workers 2": None,
    "ray, 1 CPU": 1,
    "ray, 2 CPUs": 2,
}


def subset(root: Path, clips: int):
    from emocli.core.samples import SampleSet
    from emocli.datasets import load_dataset

    full = load_dataset("ravdess", root)
    table = full.table.iloc[:: max(1, len(full.table) // clips)].head(clips)
    return SampleSet(full.dataset, full.root, table, full.labels, full.protocols, full.options)


def measure(config: str, preset: str, root: Path, clips: int, store_path: Path) -> dict:
    """In this (fresh) process: start the cluster if any, then time one extraction into a new store."""
    from rich.progress import Progress

    from emocli.features.presets import build_extractor
    from emocli.features.ray_runner import RayExecutor
    from emocli.features.store import FeatureStore

    class Clock(Progress):  # the time of every result, as the store receives it
        def __init__(self):
            super().__init__(disable=True)
            self.times: list[float] = []

        def advance(self, task_id, advance: float = 1) -> None:
            super().advance(task_id, advance)
            self.times.append(time.perf_counter())

    samples = subset(root, clips)
    cpus = CONFIGS[config]
    result: dict = {"load_before": round(os.getloadavg()[0], 2)}
    executor = None
    if cpus is not None:
        import ray

        started = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
        result["cluster_start_s"] = round(time.perf_counter() - started, 2)
        executor = RayExecutor()
    clock = Clock()
    started, cpu = time.perf_counter(), time.process_time()
    report = FeatureStore(store_path).extract(samples, [build_extractor(preset, root=root)], workers=2, progress=clock,
                                              executor=executor)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    (feature_set,) = report.feature_sets
    assert (feature_set.extracted, feature_set.failed) == (len(samples.table), 0), feature_set.summary()
    n = len(clock.times)
    first = clock.times[n // 10]
    result.update(
        clips=n,
        wall_s=round(wall, 2),
        clips_per_s=round(n / wall, 2),
        steady_clips_per_s=round((n - 1 - n // 10) / (clock.times[-1] - first), 2),
        first_result_s=round(clock.times[0] - started, 2),
        driver_cpu_ms_per_clip=round(1000 * cpu / n, 3),
        load_after=round(os.getloadavg()[0], 2),
    )
    if cpus is not None:
        ray.shutdown()
    return result


def run_child(config: str, preset: str, root: Path, clips: int, store: Path) -> dict:
    child = subprocess.run(
        [sys.executable, __file__, "--measure", config, "--preset", preset, "--root", str(root), "--clips", str(clips),
         "--store", str(store)],
        capture_output=True, text=True,
    )
    if child.returncode:
        raise SystemExit(f"{config} ({preset}) failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.splitlines()[-1])


def identical(store: Path, reference: Path) -> bool:
    import numpy as np

    from emocli.features.store import FeatureStore

    ours, theirs = FeatureStore(store), FeatureStore(reference)
    (info,) = theirs.feature_sets()
    a, b = ours.read_features(info.name), theirs.read_features(info.name)
    return a.keys() == b.keys() and all(np.array_equal(a[k].values, b[k].values) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--clips", type=int, default=240, help="Whisper clips per configuration (every 1440/N-th)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # CONFIG, in a child
    parser.add_argument("--preset", default="whisper-base", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.preset, args.root, args.clips, args.store)))
        return
    if not args.root.is_dir():
        raise SystemExit(f"RAVDESS not found at {args.root}: pass --root")

    from emocli.features.runner import CHUNKS_PER_WORKER, MAX_CHUNK

    figures: dict = {"clips": args.clips, "rounds": args.rounds}
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="emo-bench-ray-") as directory:
        reference = Path(directory) / "reference"  # the first store made; every other one is compared with it
        for round_ in range(args.rounds):
            for config in CONFIGS:
                store = Path(directory) / f"{round_}-{config.replace(' ', '_')}"
                result = run_child(config, "whisper-base", args.root, args.clips, store)
                if reference.exists():
                    result["identical"] = identical(store, reference)
                else:
                    store.rename(reference)
                    result["identical"] = True
                runs[config].append(result)
                print(f"round {round_ + 1} {config:18s} {result['clips_per_s']:6.2f} clips/s "
                      f"(steady {result['steady_clips_per_s']:6.2f}), driver {result['driver_cpu_ms_per_clip']} ms CPU "
                      f"per clip, load {result['load_before']} -> {result['load_after']}", flush=True)
        figures["whisper_base"] = {
            config: {
                "clips_per_s_median": statistics.median(r["clips_per_s"] for r in results),
                "clips_per_s_runs": [r["clips_per_s"] for r in results],
                "steady_clips_per_s_median": statistics.median(r["steady_clips_per_s"] for r in results),
                "steady_clips_per_s_runs": [r["steady_clips_per_s"] for r in results],
                "first_result_s_runs": [r["first_result_s"] for r in results],
                "driver_cpu_ms_per_clip_median": statistics.median(r["driver_cpu_ms_per_clip"] for r in results),
                "cluster_start_s_runs": [r.get("cluster_start_s") for r in results] if CONFIGS[config] else None,
                "identical": all(r["identical"] for r in results),
                "load_runs": [f"{r['load_before']}->{r['load_after']}" for r in results],
            }
            for config, results in runs.items()
        }
        local = figures["whisper_base"]["local --workers 2"]
        for config, row in figures["whisper_base"].items():
            row["vs_local_workers_2"] = round(row["clips_per_s_median"] / local["clips_per_s_median"], 3)
            row["steady_vs_local_workers_2"] = round(row["steady_clips_per_s_median"] / local["steady_clips_per_s_median"], 3)

        # The fixed cost of a task: openface-au looks a clip up in a table, so its time is the runner's.
        n_all = 1440
        chunk = max(1, min(MAX_CHUNK, math.ceil(n_all / (2 * CHUNKS_PER_WORKER))))
        tasks = math.ceil(n_all / chunk)
        overhead = {}
        for config in ("local --workers 2", "ray, 2 CPUs"):
            result = run_child(config, "openface-au", args.root, n_all, Path(directory) / f"au-{config.replace(' ', '_')}")
            overhead[config] = {
                "clips": result["clips"],
                "tasks": tasks,
                "clips_per_task": chunk,
                "wall_s": result["wall_s"],
                "steady_tasks_per_s": round(result["steady_clips_per_s"] / chunk, 1),
                # two workers side by side: the wall time each spends per task that holds no work
                "worker_ms_per_task": round(2 * 1000 * chunk / result["steady_clips_per_s"], 2),
                "driver_cpu_ms_per_clip": result["driver_cpu_ms_per_clip"],
                "driver_cpu_ms_per_task": round(result["driver_cpu_ms_per_clip"] * chunk, 2),
                "load": f"{result['load_before']}->{result['load_after']}",
            }
            print(f"openface-au {config:18s} {overhead[config]}", flush=True)
        figures["task_overhead_openface_au"] = overhead
    figures["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    path = write_results("extract_ray", figures)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
