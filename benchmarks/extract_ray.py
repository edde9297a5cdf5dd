"""Extraction on a Ray cluster against the local worker pool: Whisper base (the `whisper-base` preset) on the same RAVDESS clips with `--workers 2` (the local spawn pool) and on a local Ray cluster of 1 and of 2 CPUs (`--executor ray`, one CPU per task), and the fixed cost of a Ray task.

Each configuration runs in a fresh process, into a fresh store, with cold workers (each loads Whisper),
rounds interleaving the configurations. `clips_per_s` is the clips over the wall time of
`FeatureStore.extract`, from its call to its return (starting the workers and loading the model included,
committing and compacting too); `steady_clips_per_s` counts from the 10th percent of results to the last,
leaving out that start-up. The Ray cluster is started before the clock, and its start-up is reported apart
(`cluster_start_s`): on a real cluster it is up before a job comes. `clips_per_cpu_s` divides by the CPU
time of the whole process tree over the same span (this process and the pool's workers, or this process
and the Ray cluster's own processes and workers): what the work cost, which the neighbours of a shared
machine disturb far less than the wall time. `driver_cpu_ms_per_clip` is the CPU time of the process that
receives and commits the results, per clip. The stores of every configuration are compared value by value
with the first one's (`identical`).

The fixed cost of a task is measured on `openface-au` (a table lookup: no work per clip) over all 1440
clips, as tasks of 16 clips on the 2-CPU cluster against the local pool's chunks of 16: the wall time, the
CPU time of the process tree and the driver's CPU time per task. The load average of the machine before
and after each run is recorded: on a shared machine the neighbours' work shows in every figure.

    python benchmarks/extract_ray.py [--root ../shared/data/ravdess] [--clips 240] [--rounds 3]
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


def descendants_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every living descendant of this process, by pid (Linux /proc): the
    local pool's workers, or the Ray cluster's processes and its workers."""
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    found, frontier = {}, [os.getpid()]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.update({pid: times[pid] for pid in frontier})
    return found


def tree_cpu_s(before: dict[int, float]) -> float:
    """CPU seconds of this process, its reaped children and its living descendants since `before`."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.process_time() + children.ru_utime + children.ru_stime
            + sum(cpu - before.get(pid, 0.0) for pid, cpu in descendants_cpu_s().items()))


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
    living = descendants_cpu_s()
    tree = tree_cpu_s(living)
    started, cpu = time.perf_counter(), time.process_time()
    report = FeatureStore(store_path).extract(samples, [build_extractor(preset, root=root)], workers=2, progress=clock,
                                              executor=executor)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tree = tree_cpu_s(living) - tree
    (feature_set,) = report.feature_sets
    assert (feature_set.extracted, feature_set.failed) == (len(samples.table), 0), feature_set.summary()
    n = len(clock.times)
    first = clock.times[n // 10]
    result.update(
        clips=n,
        wall_s=round(wall, 2),
        clips_per_s=round(n / wall, 2),
        clips_per_cpu_s=round(n / tree, 2),
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


def runs_text(values) -> str:
    """Each round's figure, in order, as one table cell."""
    return " / ".join(str(value) for value in values)


def summary(results: list[dict]) -> dict:
    """A configuration's rounds: medians, and each round's figures and load."""
    median = {key: statistics.median(r[key] for r in results)
              for key in ("clips_per_s", "steady_clips_per_s", "clips_per_cpu_s", "driver_cpu_ms_per_clip")}
    return {
        "clips_per_s": median["clips_per_s"],
        "clips_per_s_runs": runs_text(r["clips_per_s"] for r in results),
        "steady_clips_per_s": median["steady_clips_per_s"],
        "clips_per_cpu_s": median["clips_per_cpu_s"],
        "clips_per_cpu_s_runs": runs_text(r["clips_per_cpu_s"] for r in results),
        "first_result_s_runs": runs_text(r["first_result_s"] for r in results),
        "cluster_start_s_runs": runs_text(r["cluster_start_s"] for r in results) if "cluster_start_s" in results[0] else None,
        "driver_cpu_ms_per_clip": median["driver_cpu_ms_per_clip"],
        "identical": all(r["identical"] for r in results),
        "load_runs": runs_text(f"{r['load_before']}->{r['load_after']}" for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--clips", type=int, default=240, help="Whisper clips per configuration (every 1440/N-th)")
    parser.add_argument("--rounds", type=int, default=3)
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
                      f"(steady {result['steady_clips_per_s']:6.2f}), {result['clips_per_cpu_s']:6.2f} clips/CPU-s, "
                      f"driver {result['driver_cpu_ms_per_clip']} ms CPU "
                      f"per clip, load {result['load_before']} -> {result['load_after']}", flush=True)
        figures["whisper_base"] = {config: summary(results) for config, results in runs.items()}
        local = figures["whisper_base"]["local --workers 2"]
        for row in figures["whisper_base"].values():
            for measure_ in ("clips_per_s", "steady_clips_per_s", "clips_per_cpu_s"):
                row[f"{measure_}_vs_local"] = round(row[measure_] / local[measure_], 3)

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
                "cpu_ms_per_task": round(1000 * chunk / result["clips_per_cpu_s"], 2),  # the whole process tree
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
