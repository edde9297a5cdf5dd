"""Audio extraction: the toolkit's 2-worker feature store against a plain loop over the same library calls.

On RAVDESS clips, in one run, each side in a fresh process (interpreter, imports and set-up counted alike):
  (a) baseline: one process reads each clip with soundfile and calls openSMILE ComParE_2016 functionals
      (opensmile.Smile.process_signal) and librosa MFCC (13 coefficients) directly;
  (b) toolkit: FeatureStore.extract with the `compare2016` and `mfcc` presets, 2 workers, into a fresh store
      (everything counted: worker start-up, fingerprints, Parquet commits, compaction);
  (c) control: the plain loop of (a) in 2 processes side by side, each on half of the clips: what two
      processes reach on this machine without any toolkit, and what the library calls cost when two run
      at once (two busy cores slow each other: shared caches, memory bandwidth, the host's scheduling).
Prints clips/s of each and the ratio (b)/(a) (target >= 1.7x on 2 cores), and the toolkit's CPU overhead
per clip (target < 5 % of the library time) and in total. Per clip: (a) and (b) also run on the first
quarter of the clips, and the slope between the two sizes leaves the fixed costs out (they are reported
beside it); the overhead is given against (a)'s library time and against (c)'s, the library time of two
processes running at once, which is what the workers' calls cost. Run-to-run spread on this shared 2-core
machine is several percent: compare runs, not single figures. The JSON records the load average.
Writes benchmarks/results/extract_audio.json.

    python benchmarks/extract_audio.py [--root ../shared/data/ravdess] [--limit N] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One thread per process, set before numpy loads: the baseline is a single-core loop and the toolkit's
# workers are single-threaded, so both sides' CPU time counts library work, not idle BLAS threads spinning.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402


def children_cpu_seconds() -> float:
    """CPU time of this process's finished (waited-for) children and their own children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def baseline(paths: list[str]) -> None:
    """The plain single-process loop over the library calls the toolkit makes."""
    import librosa
    import opensmile
    import soundfile

    smile = opensmile.Smile(opensmile.FeatureSet.ComParE_2016, opensmile.FeatureLevel.Functionals)
    for path in paths:
        signal, rate = soundfile.read(path, dtype="float32")
        smile.process_signal(signal, rate)
        librosa.feature.mfcc(y=signal, sr=rate, n_mfcc=13)


def toolkit(root: Path, limit: int, workers: int) -> dict[str, str]:
    """`FeatureStore.extract` of the first `limit` clips into a fresh store; per-feature-set summaries."""
    from emocli.datasets import load_dataset
    from emocli.features.presets import build_extractor
    from emocli.features.store import FeatureStore

    with tempfile.TemporaryDirectory(prefix="emo-bench-") as directory:
        extractors = [build_extractor("compare2016"), build_extractor("mfcc")]
        report = FeatureStore(directory).extract(
            load_dataset("ravdess", root), extractors, workers=workers, limit=limit, progress=False
        )
    for fs in report.feature_sets:
        if fs.extracted != limit:
            raise SystemExit(f"toolkit run incomplete: {fs.name}: {fs.summary()}")
    return {fs.name: fs.summary() for fs in report.feature_sets}


def measure_side(
    side: str, limit: int, *, root: Path, paths: Path, workers: int, processes: int = 1
) -> tuple[float, float, dict[str, str]]:
    """(wall s, CPU s, summaries) of one side in fresh processes (`processes` of them side by side, each on
    its share of the clips): interpreter, imports and set-up included on every side alike, and the
    workers' CPU too (a child waits for its workers before it exits)."""
    commands = [
        [sys.executable, __file__, "--measure", side, "--root", str(root), "--paths", str(paths),
         "--limit", str(limit), "--workers", str(workers), "--part", f"{k}/{processes}"]
        for k in range(processes)
    ]
    wall, cpu = time.perf_counter(), children_cpu_seconds()
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [child.communicate() for child in running]
    wall, cpu = time.perf_counter() - wall, children_cpu_seconds() - cpu
    for child, (_, stderr) in zip(running, outputs):
        if child.returncode:
            raise SystemExit(f"{side} run failed:\n{stderr[-2000:]}")
    return wall, cpu, json.loads(outputs[0][0].splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--limit", type=int, default=None, help="first N clips (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", choices=["baseline", "toolkit"], help=argparse.SUPPRESS)  # one side, in a child
    parser.add_argument("--paths", type=Path, help=argparse.SUPPRESS)  # the baseline child's clip list
    parser.add_argument("--part", default="0/1", help=argparse.SUPPRESS)  # its share: clips K, K+N, ...
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"RAVDESS not found at {args.root}: pass --root")

    if args.measure == "baseline":  # the clip list comes from the parent: no dataset adapter to import here
        part, parts = (int(n) for n in args.part.split("/"))
        baseline(args.paths.read_text().splitlines()[: args.limit][part::parts])
        print(json.dumps({}))
        return
    if args.measure == "toolkit":
        print(json.dumps(toolkit(args.root, args.limit, args.workers)))
        return

    from emocli.datasets import load_dataset

    paths = list(load_dataset("ravdess", args.root).table["audio_path"])
    limit = min(args.limit or len(paths), len(paths))
    for path in paths[:limit]:  # the page cache, warm for both contenders
        Path(path).read_bytes()
    clip_list = tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="emo-bench-", delete=False)
    clip_list.write("\n".join(paths[:limit]))
    clip_list.close()
    measure = functools.partial(measure_side, root=args.root, paths=Path(clip_list.name), workers=args.workers)

    quarter = max(1, limit // 4)
    print(f"{limit} RAVDESS clips, openSMILE ComParE_2016 functionals + librosa MFCC", flush=True)
    base_wall, base_cpu, _ = measure("baseline", limit)
    print(f"(a) plain loop, 1 process : {limit / base_wall:6.2f} clips/s  ({base_wall:.1f} s)", flush=True)
    kit_wall, kit_cpu, summaries = measure("toolkit", limit)
    print(f"(b) emo, {args.workers} workers       : {limit / kit_wall:6.2f} clips/s  ({kit_wall:.1f} s)", flush=True)
    pair_wall, pair_cpu, _ = measure("baseline", limit, processes=2)
    print(f"(c) plain loop, 2 processes side by side: {limit / pair_wall:6.2f} clips/s  ({pair_wall:.1f} s)", flush=True)
    _, base_cpu_quarter, _ = measure("baseline", quarter)
    _, kit_cpu_quarter, _ = measure("toolkit", quarter)

    ratio = base_wall / kit_wall
    base_per_clip = (base_cpu - base_cpu_quarter) / (limit - quarter)
    kit_per_clip = (kit_cpu - kit_cpu_quarter) / (limit - quarter)
    per_clip_overhead = kit_per_clip / base_per_clip - 1
    total_overhead = kit_cpu / base_cpu - 1
    base_fixed, kit_fixed = base_cpu - base_per_clip * limit, kit_cpu - kit_per_clip * limit
    pair_per_clip = (pair_cpu - 2 * base_fixed) / limit  # two processes, each with the plain loop's fixed costs
    per_clip_overhead_pair = kit_per_clip / pair_per_clip - 1
    print(f"ratio (b)/(a)            : {ratio:.2f}x  (target >= 1.7x; the control (c)/(a): {base_wall / pair_wall:.2f}x)")
    print(
        f"per-clip CPU overhead    : {100 * per_clip_overhead:+.1f} % ({1000 * kit_per_clip:.1f} ms vs "
        f"{1000 * base_per_clip:.1f} ms of library time per clip, slope over {quarter} -> {limit} clips; target < 5 %)"
    )
    print(
        f"  against (c)            : {100 * per_clip_overhead_pair:+.1f} % (library time per clip with two "
        f"processes running: {1000 * pair_per_clip:.1f} ms)"
    )
    print(
        f"total CPU overhead       : {100 * total_overhead:+.1f} % (fixed costs {kit_fixed:.1f} CPU-s vs "
        f"{base_fixed:.1f} CPU-s: worker start-up, main process, Parquet)"
    )
    path = write_results(
        "extract_audio",
        {
            "clips": limit,
            "workers": args.workers,
            "baseline_clips_per_s": round(limit / base_wall, 3),
            "toolkit_clips_per_s": round(limit / kit_wall, 3),
            "ratio": round(ratio, 3),
            "baseline_wall_s": round(base_wall, 2),
            "toolkit_wall_s": round(kit_wall, 2),
            "library_cpu_ms_per_clip": round(1000 * base_per_clip, 2),
            "toolkit_cpu_ms_per_clip": round(1000 * kit_per_clip, 2),
            "per_clip_overhead_pct": round(100 * per_clip_overhead, 2),
            "control_2_processes_clips_per_s": round(limit / pair_wall, 3),
            "control_ratio": round(base_wall / pair_wall, 3),
            "control_library_cpu_ms_per_clip": round(1000 * pair_per_clip, 2),
            "per_clip_overhead_vs_control_pct": round(100 * per_clip_overhead_pair, 2),
            "total_overhead_pct": round(100 * total_overhead, 2),
            "baseline_fixed_cpu_s": round(base_fixed, 2),
            "toolkit_fixed_cpu_s": round(kit_fixed, 2),
            "slope_from_clips": quarter,
            "feature_sets": summaries,
            "load_average_1min_after": round(os.getloadavg()[0], 2),
        },
    )
    os.unlink(clip_list.name)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
