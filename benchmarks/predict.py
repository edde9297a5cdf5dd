"""`emo predict`: cold-start wall time of one command, warm throughput within one process, and where the
cold start goes.

A small run is trained (or reused from --work) on generated tones: eGeMAPS functionals (audio), plus
GloVe of a class phrase (text) for the audio+text run. Then, for each run:
  cold: `python -m emocli predict RUN clip.mp4 --quiet` in a fresh process on a 4-second h264/aac clip
        (with a clip.txt transcript for the text run), median of 3 (the first call also warms the disk cache);
  warm: one `Predictor`, a folder of 16 such clips predicted again and again: clips/s (median of 3);
  imports: `python -X importtime` of the same command: the slowest top-level packages (cumulative).
Target: cold start under 5 s on a 2-core CPU.

Then the shipped model, emo-default (`emo predict VIDEO` with no --model: Whisper base transcription, the
Whisper-features speech head and the MiniLM text head), on speech made by eSpeak NG (emocli/example.py)
muxed with a portrait:
  cold: `python -m emocli predict clip.mp4 --quiet` on a 4-s clip, median of 3 (aim: 6 s on this CPU);
  real-time factor: one such command on a 10-minute video (the example's four sentences over and over, one
  frame a second): wall seconds / 600 (aim: below 1, faster than real time, on 2 cores).
Writes benchmarks/results/predict.json.

    python benchmarks/predict.py [--work DIR] [--clips 16] [--long-minutes 10] [--skip-tone-runs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout
sys.path.insert(0, str(REPO / "tests"))  # the tests' media and tone-run helpers

from benchmarks.common import write_results  # noqa: E402

RUNS = {"audio": ("cfnsr", ["audio"]), "audio+text": ("smile", ["audio", "text"])}


def trained_run(work: Path, name: str) -> Path:
    from test_predict import SMALL_CFNSR, make_tone_store, train_tiny

    from emocli.runs import layout

    model, modalities = RUNS[name]
    existing = sorted(work.glob(f"runs-{name}/*/seed=1/fold=0/{layout.TEST_METRICS}"))
    if existing:
        return existing[-1].parent
    store_dir = work / f"data-{name}"
    store = make_tone_store(store_dir, n=36, text="text" in modalities) if not store_dir.exists() else None
    if store is None:
        from emocli.features.store import FeatureStore

        store = FeatureStore(store_dir / "store")
    overrides = [*SMALL_CFNSR, "epochs=5"] if model == "cfnsr" else ["batch_size=8", "epochs=3"]
    return train_tiny(store, work / f"runs-{name}", model=model, overrides=overrides, modalities=modalities)


def make_clip(path: Path, seed: int) -> Path:
    from media import write_video
    from test_predict import tones

    labels = ("low", "mid", "high")
    write_video(path, seconds=4.0, fps=10, size=(160, 120), audio=tones(labels[seed % 3], labels[(seed + 1) % 3], seconds=2.0))
    path.with_suffix(".txt").write_text("an ordinary voice\n")
    return path


def command(run: Path | str, *inputs: Path) -> list[str]:
    return [sys.executable, "-m", "emocli", "predict", "--model", str(run), *map(str, inputs), "--quiet"]


def cold_start(run: Path | str, clip: Path, repeats: int = 3) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command(run, clip), capture_output=True, text=True, cwd=clip.parent)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"emo predict failed ({done.returncode}):\n{done.stderr}")
    return times


def slowest_imports(run: Path, clip: Path, top: int = 8) -> list[dict]:
    """Cumulative import time of top-level packages (python -X importtime), slowest first."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command(run, clip)[1:]],
                          capture_output=True, text=True, cwd=clip.parent)
    packages: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not name.startswith(" ") and "." not in name.strip():  # top-level packages, not their submodules
            packages[name.strip()] = packages.get(name.strip(), 0) + int(cumulative)
    ranked = sorted(packages.items(), key=lambda item: -item[1])[:top]
    return [{"package": name, "seconds": round(us / 1e6, 3)} for name, us in ranked]


def warm_throughput(run: Path, folder: Path, repeats: int = 3) -> tuple[float, int]:
    from emocli.prediction.predictor import Predictor

    predictor = Predictor(run)
    n = len(predictor.predict([folder]).table)  # warm-up: libraries loaded, caches filled
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict([folder])
        rates.append(len(list(folder.glob("*.mp4"))) / (time.perf_counter() - started))
    return statistics.median(rates), n


def speech_videos(work: Path, long_minutes: float) -> tuple[Path, Path]:
    """A 4-s clip of one spoken sentence, and a long video of the example's sentences repeated, both over the
    example's portrait."""
    import numpy as np

    from emocli.example import RATE, SCRIPT, speak, write_portrait_video

    short, long = work / "speech-4s.mp4", work / f"speech-{long_minutes:g}min.mp4"
    if not short.is_file():
        sentence, _ = speak(SCRIPT[1:2])
        write_portrait_video(short, sentence[: 4 * RATE], fps=10, size=(160, 120))
    if not long.is_file():
        script, _ = speak()
        audio = np.resize(script, int(long_minutes * 60 * RATE))  # repeats the script to the length
        partial = long.with_name(f".{long.name}")
        write_portrait_video(partial, audio, fps=1, size=(160, 120))
        partial.rename(long)  # an interrupted write is not taken for the video next time
    return short, long


def default_model(work: Path, long_minutes: float) -> dict:
    import pandas as pd

    short, long = speech_videos(work, long_minutes)
    cold = cold_start("emo-default", short)
    table = work / "long-predictions.csv"
    started = time.perf_counter()
    done = subprocess.run([*command("emo-default", long), "--output", str(table)], capture_output=True, text=True,
                          cwd=work)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"emo predict failed ({done.returncode}):\n{done.stderr}")
    figures = {
        "model": "emo-default",
        "cold_start_4s_clip_s": {"median": round(statistics.median(cold), 3), "runs": [round(t, 3) for t in cold]},
        "long_video_s": long_minutes * 60,
        "long_video_wall_s": round(wall, 1),
        "real_time_factor": round(wall / (long_minutes * 60), 3),
        "long_video_segments": len(pd.read_csv(table)),
    }
    print(f"emo-default: cold start {figures['cold_start_4s_clip_s']['median']:.2f} s on a 4-s clip "
          f"(runs {', '.join(f'{t:.2f}' for t in cold)}); {long_minutes:g}-minute video in {wall:.0f} s, "
          f"real-time factor {figures['real_time_factor']:.3f} ({figures['long_video_segments']} segments)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".emo-cache" / "bench-predict")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the emo-default video")
    parser.add_argument("--skip-tone-runs", action="store_true", help="measure the shipped model only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work.resolve()
    folder = work / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    clips = [make_clip(folder / f"clip{k:02d}.mp4", k) for k in range(args.clips)]

    # Cold starts are wall times: other work on the machine lengthens them, so the load is recorded.
    figures = {"clip_seconds": 4.0, "clips": args.clips, "load_average_1min": os.getloadavg()[0],
               "emo-default": default_model(work, args.long_minutes)}
    for name in [] if args.skip_tone_runs else RUNS:
        run = trained_run(work, name)
        cold = cold_start(run, clips[0])
        rate, segments = warm_throughput(run, folder)
        figures[name] = {
            "model": RUNS[name][0],
            "cold_start_s": {"median": round(statistics.median(cold), 3), "runs": [round(t, 3) for t in cold]},
            "warm_clips_per_s": round(rate, 2),
            "segments_per_folder": segments,
            "slowest_imports": slowest_imports(run, clips[0]),
        }
        print(f"{name:10s} ({RUNS[name][0]}): cold start {statistics.median(cold):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in cold)}); warm {rate:.1f} clips/s; imports: "
              + ", ".join(f"{i['package']} {i['seconds']:.2f}s" for i in figures[name]["slowest_imports"][:5]))
    print(f"written to {write_results('predict', figures)}")


if __name__ == "__main__":
    main()
