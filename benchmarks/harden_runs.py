"""What the safety of runs and predictions costs: atomic checkpoint and weight writes against the plain
library calls they replace, and predict's silence check against the extraction it follows.

  checkpoint: `layout.save_checkpoint` (torch.save into a temporary Python file, then a rename) against
              `torch.save(state, path)`, for a state of --megabytes of float32 tensors; median of --repeats;
  weights:    `layout.save_weights` (safetensors into a temporary, then a rename) against
              `safetensors.torch.save_model(model, path)`;
  silence:    `predictor.is_silent` on a 4-second segment (a wav, and the aac track of an mp4) against
              eGeMAPS functionals of the same segment (what an audio run extracts anyway); median of --repeats;
  size check: counting a model's parameters on torch's meta device (what loading a unit now does before
              it builds the model, to refuse a configuration its weights cannot fill) against building the
              model for real, for each registry model's reference configuration; median of --repeats.

Writes benchmarks/results/harden_runs.json.

    python benchmarks/harden_runs.py [--megabytes 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout
sys.path.insert(0, str(REPO / "tests"))  # the tests' media helpers

from benchmarks.common import write_results  # noqa: E402


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def writes(folder: Path, megabytes: int, repeats: int) -> dict:
    import torch
    from safetensors.torch import save_model

    from emocli.runs import layout

    width = 1024
    rows = megabytes * 2**20 // (4 * width * 3)
    model = torch.nn.Sequential(*(torch.nn.Linear(width, rows, bias=False) for _ in range(3)))
    state = {"model": model.state_dict(), "epoch": 3, "rng": [layout.rng_state()]}
    plain = median_seconds(lambda: torch.save(state, folder / "plain.pt"), repeats)
    atomic = median_seconds(lambda: layout.save_checkpoint(folder / layout.CHECKPOINT, state), repeats)
    plain_weights = median_seconds(lambda: save_model(model, str(folder / "plain.safetensors")), repeats)
    atomic_weights = median_seconds(lambda: layout.save_weights(model, folder / layout.WEIGHTS), repeats)
    size = (folder / layout.CHECKPOINT).stat().st_size / 2**20
    return {
        "checkpoint_mb": round(size, 1),
        "checkpoint_torch_save_path_s": round(plain, 4),
        "checkpoint_atomic_s": round(atomic, 4),
        "weights_save_model_path_s": round(plain_weights, 4),
        "weights_atomic_s": round(atomic_weights, 4),
    }


def silence(folder: Path, repeats: int) -> dict:
    import numpy as np
    import soundfile as sf
    from media import write_video

    from emocli.features.presets import build_extractor
    from emocli.prediction.predictor import is_silent

    rate, seconds = 16000, 8.0
    t = np.arange(int(rate * seconds)) / rate
    signal = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wav = folder / "speech.wav"
    sf.write(wav, signal, rate)
    video = write_video(folder / "speech.mp4", seconds=seconds, fps=10, audio=signal)
    extractor = build_extractor("egemaps")
    figures = {}
    for name, column, path in (("wav", "audio_path", wav), ("mp4_aac", "video_path", video)):
        sample = {"sample_id": "x", column: str(path), "start_s": 2.0, "end_s": 6.0}
        figures[f"silence_check_{name}_s"] = round(median_seconds(lambda: is_silent(sample), repeats), 5)
        figures[f"egemaps_{name}_s"] = round(median_seconds(lambda: extractor.extract(sample), repeats), 5)
    return figures


def size_check(repeats: int) -> dict:
    from emocli.models.base import count_parameters_of
    from emocli.models.registry import get_model, model_names

    figures = {}
    for name in model_names():
        entry = get_model(name)
        for reference in entry.references:
            config = entry.config(reference).for_inference()
            meta = median_seconds(lambda: count_parameters_of(entry.model_class, config), repeats)
            built = median_seconds(lambda: entry.build(config), repeats)
            figures[f"{name}/{reference}"] = {"parameters": count_parameters_of(entry.model_class, config),
                                              "meta_count_s": round(meta, 4), "build_s": round(built, 4),
                                              "meta_over_build": round(meta / built, 2)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100, help="size of the checkpoint's tensors")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as work:
        figures = {**writes(Path(work), args.megabytes, args.repeats), **silence(Path(work), args.repeats),
                   "size_check": size_check(args.repeats)}
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    for key, value in figures.items():
        print(f"{key:36s} {value}")
    print(write_results("harden_runs", figures))


if __name__ == "__main__":
    main()
