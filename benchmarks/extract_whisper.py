"""Whisper features and transcription: clips per CPU-second on one core, and peak memory.

On RAVDESS clips (3.7 s on average), each configuration in a fresh process with one thread
(`torch.set_num_threads(1)`, OMP/MKL at 1), the model loaded and one clip encoded before the clock starts:
  features: the `whisper` extractor's `extract` per clip (audio decoding, log-mel, encoder), for Whisper base
            and tiny.en, with the input cut to the clip or padded to 30 s;
  transcribe: `Transcriber.transcribe` per clip (transformers generation, greedy, 30-s window), and for
            comparison CTranslate2's own Whisper on the same packages' model.bin (greedy, float32 and int8)
            when `ctranslate2` is installed: the measurement behind choosing transformers for transcription.
Throughput is clips per CPU-second of the process (what one core delivers; on a busy machine wall time
would measure the neighbours), wall clips/s beside it; peak memory is the process's maximum RSS, model
included. Run-to-run spread on a shared machine is several percent. Writes
benchmarks/results/extract_whisper.json.

    python benchmarks/extract_whisper.py [--root ../shared/data/ravdess] [--clips 100]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

FEATURES = {
    "whisper-base cut, layer 3": {"preset": "whisper-base", "layer": 3},
    "whisper-base cut, mean of layers (preset whisper-base)": {"preset": "whisper-base"},
    "whisper-base padded, layer 3": {"preset": "whisper-base", "layer": 3, "window": "padded"},
    "whisper-tiny.en cut, mean of layers (preset whisper-tiny)": {"preset": "whisper-tiny"},
    "whisper-tiny.en padded, mean of layers": {"preset": "whisper-tiny", "window": "padded"},
}
TRANSCRIBE = {
    "transformers, whisper-base": {"engine": "transformers", "model": "whisper-base"},
    "transformers, whisper-tiny.en": {"engine": "transformers", "model": "whisper-tiny.en"},
    "ctranslate2 float32, whisper-base": {"engine": "ctranslate2", "model": "whisper-base", "compute_type": "float32"},
    "ctranslate2 int8, whisper-base": {"engine": "ctranslate2", "model": "whisper-base", "compute_type": "int8"},
    "ctranslate2 int8, whisper-tiny.en": {"engine": "ctranslate2", "model": "whisper-tiny.en", "compute_type": "int8"},
}


def feature_runner(config: dict):
    from emocli.features.presets import build_extractor

    overrides = {key: value for key, value in config.items() if key != "preset"}
    extractor = build_extractor(config["preset"], overrides)
    return lambda path: extractor.extract({"sample_id": "clip", "audio_path": path})


def transformers_runner(config: dict):
    from emocli.features.audio.transcribe import Transcriber

    transcriber = Transcriber(config["model"], device="cpu")
    return lambda path: transcriber.transcribe(path).text


def ctranslate2_runner(config: dict):
    """CTranslate2's Whisper on the package's own model.bin, prompted as transformers is (language detected
    on multilingual models, timestamps on), greedy."""
    from importlib import resources

    import ctranslate2
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    from emocli.features.audio.io import load_audio
    from emocli.features.audio.whisper_weights import OFFLINE_WHISPER, converted_whisper_dir, read_model_bin

    offline = OFFLINE_WHISPER[config["model"]]
    converted = converted_whisper_dir(offline.name)  # for the tokenizer
    folder = Path(tempfile.mkdtemp(prefix="emo-ct2-"))
    (folder / "model.bin").write_bytes(read_model_bin(offline))
    package, inside = offline.folder
    for file in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / file).write_bytes((resources.files(package) / inside / file).read_bytes())
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=config["compute_type"], intra_threads=1)
    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    mel = WhisperFeatureExtractor(feature_size=80)
    start = tokenizer.token_to_id("<|startoftranscript|>")

    def transcribe(path: str) -> str:
        signal, _ = load_audio(path, sample_rate=16000)
        features = ctranslate2.StorageView.from_array(mel(signal, sampling_rate=16000, return_tensors="np").input_features)
        encoded = model.encode(features)
        prompt = [start]
        if model.is_multilingual:
            language = model.detect_language(encoded)[0][0][0]
            prompt += [tokenizer.token_to_id(language), tokenizer.token_to_id("<|transcribe|>")]
        result = model.generate(encoded, [prompt], beam_size=1)
        return tokenizer.decode(result[0].sequences_ids[0])

    return transcribe


def measure(kind: str, name: str, paths: list[str]) -> dict:
    """In this (fresh) process: load, warm up on one clip, then time the clips."""
    import torch

    torch.set_num_threads(1)
    config = (FEATURES if kind == "features" else TRANSCRIBE)[name]
    started = time.perf_counter()
    if kind == "features":
        run = feature_runner(config)
    elif config["engine"] == "transformers":
        run = transformers_runner(config)
    else:
        run = ctranslate2_runner(config)
    example = run(paths[0])
    load_s = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        run(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "clips": len(paths),
        "clips_per_cpu_s": round(len(paths) / cpu, 2),
        "clips_per_wall_s": round(len(paths) / wall, 2),
        "load_and_first_clip_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **({"example": example} if isinstance(example, str) else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "ravdess")
    parser.add_argument("--clips", type=int, default=100, help="clips per configuration (every 1440/N-th)")
    parser.add_argument("--transcribe-clips", type=int, default=20, help="clips per transcription configuration")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # KIND NAME, in a child
    parser.add_argument("--paths", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.paths.read_text().splitlines())))
        return
    if not args.root.is_dir():
        raise SystemExit(f"RAVDESS not found at {args.root}: pass --root")

    clips = sorted(str(p) for p in (args.root / "audio").glob("Actor_*/*.flac"))
    figures: dict[str, dict] = {"features": {}, "transcribe": {}}
    with tempfile.TemporaryDirectory(prefix="emo-bench-") as directory:
        for kind, configs, count in (("features", FEATURES, args.clips), ("transcribe", TRANSCRIBE, args.transcribe_clips)):
            paths = Path(directory) / f"{kind}.txt"
            paths.write_text("\n".join(clips[:: max(1, len(clips) // count)][:count]))
            for name, config in configs.items():
                if config.get("engine") == "ctranslate2" and not _installed("ctranslate2"):
                    print(f"{name}: skipped (ctranslate2 not installed)")
                    continue
                child = subprocess.run(
                    [sys.executable, __file__, "--measure", kind, name, "--paths", str(paths)],
                    capture_output=True, text=True,
                )
                if child.returncode:
                    raise SystemExit(f"{name} failed:\n{child.stderr[-2000:]}")
                result = json.loads(child.stdout.splitlines()[-1])
                figures[kind][name] = result
                print(
                    f"{kind:10s} {name:58s} {result['clips_per_cpu_s']:6.2f} clips/CPU-s  "
                    f"{result['clips_per_wall_s']:6.2f} clips/s wall  peak {result['peak_rss_mb']} MB", flush=True,
                )
    figures["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    path = write_results("extract_whisper", figures)
    print(f"wrote {path.relative_to(REPO)}")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
