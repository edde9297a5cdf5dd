"""Text extraction: emo's hf-text feature store against sentence-transformers' encode, same model, same texts.

For each model (the offline all-MiniLM-L6-v2 and all-mpnet-base-v2 presets, `minilm` and `mpnet`), on the
first N utterances of MELD (its train split, in the dataset's order), each side runs in a fresh process
with one thread:
  (a) sentence-transformers: SentenceTransformer(folder).encode(texts, batch_size=32), which sorts the
      texts by length and mean-pools (then L2-normalises);
  (b) emo: FeatureStore.extract with the preset into a fresh store (what `emo extract` does; everything
      counted: prepare, input fingerprints, length-ordered batches of 32, Parquet commits, compaction);
  (c) emo's runner alone: extract_samples on the same samples, in memory (what `emo predict` does).
All load their model before the clock starts (the load is reported beside; emo's includes transformers'
lazy import of the model's modules, which importing sentence-transformers did before its clock). Prints utterances/s of each
and the ratios (b)/(a) and (c)/(a) (target >= 1.0x), and checks that all gave the same vectors (emo's,
L2-normalised, against sentence-transformers' within 1e-4). Each side runs --repeats times, alternating; the fastest run
of each counts, since on this shared machine the others' jobs only ever slow a run down. The JSON records
the load average. Writes benchmarks/results/extract_text.json.

    python benchmarks/extract_text.py [--root ../shared/data/meld] [--limit 2000] [--repeats 2] [--models minilm,mpnet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402


def meld(root: Path):
    from emocli.datasets import load_dataset

    return load_dataset("meld", root, find_videos=False)


def run_sentence_transformers(model: str, root: Path, limit: int, vectors_out: Path) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from emocli.features.presets import build_extractor

    torch.set_num_threads(1)
    texts = [str(t) for t in meld(root).table["text"].head(limit)]
    started = time.perf_counter()
    encoder = SentenceTransformer(build_extractor(model)._location, device="cpu")
    loaded = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=32)
    finished = time.perf_counter()
    np.save(vectors_out, vectors)
    return {"load_s": loaded - started, "extract_s": finished - loaded, "n": len(texts)}


def run_emo(model: str, root: Path, limit: int, vectors_out: Path, in_memory: bool) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer  # noqa: F401 - imported before the clock, as on (a)

    from emocli.features.presets import build_extractor
    from emocli.features.runner import extract_samples
    from emocli.features.store import FeatureStore

    torch.set_num_threads(1)
    sample_set = meld(root)
    started = time.perf_counter()
    extractor = build_extractor(model, {"device": "cpu", "batch_size": 32})
    extractor.model, extractor.tokenizer  # noqa: B018 - load before the clock, as on the other side
    loaded = time.perf_counter()
    if in_memory:
        (results,) = extract_samples([extractor], sample_set.table.head(limit)).values()
        finished = time.perf_counter()
        vectors = [result.values for result in results]
    else:
        with tempfile.TemporaryDirectory(prefix="emo-bench-") as directory:
            store = FeatureStore(directory)
            store.extract(sample_set, [extractor], workers=0, limit=limit, progress=False)
            finished = time.perf_counter()
            features = store.read_features(extractor.feature_set_name)
        vectors = [features[sample_id].values for sample_id in sample_set.table["sample_id"].head(limit)]
    np.save(vectors_out, np.stack(vectors))
    return {"load_s": loaded - started, "extract_s": finished - loaded, "n": len(vectors)}


def side(name: str, model: str, root: Path, limit: int) -> tuple[dict, Path]:
    """One side in a fresh process: its timings, and the file of its vectors."""
    vectors = Path(tempfile.mkstemp(suffix=".npy", prefix=f"emo-bench-{name}-")[1])
    command = [sys.executable, __file__, "--side", name, "--model", model, "--root", str(root),
               "--limit", str(limit), "--vectors", str(vectors)]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1]), vectors


def compare(model: str, root: Path, limit: int, repeats: int) -> dict:
    import numpy as np

    runs: dict[str, list[dict]] = {"sentence_transformers": [], "emo": [], "emo_runner": []}
    vectors: dict[str, Path] = {}
    for _ in range(repeats):
        for name in runs:
            timing, vectors[name] = side(name, model, root, limit)
            runs[name].append(timing)
            print(f"{model} {name}: {timing['n'] / timing['extract_s']:.1f} utt/s "
                  f"({timing['extract_s']:.1f} s, model load {timing['load_s']:.1f} s)", flush=True)  # fmt: skip
    reference = np.load(vectors.pop("sentence_transformers"))
    difference = 0.0
    for name, path in vectors.items():
        ours = np.load(path)
        normalised = ours / np.linalg.norm(ours, axis=1, keepdims=True)
        difference = max(difference, float(np.abs(normalised - reference).max()))
        path.unlink()
    if difference > 1e-4:
        raise SystemExit(f"{model}: emo's vectors differ from sentence-transformers' by {difference:.2g}")
    best = {name: min(timings, key=lambda t: t["extract_s"]) for name, timings in runs.items()}
    rates = {name: t["n"] / t["extract_s"] for name, t in best.items()}
    return {
        "utterances": limit,
        "sentence_transformers_utt_per_s": rates["sentence_transformers"],
        "emo_store_utt_per_s": rates["emo"],
        "emo_runner_utt_per_s": rates["emo_runner"],
        "ratio_store": rates["emo"] / rates["sentence_transformers"],
        "ratio_runner": rates["emo_runner"] / rates["sentence_transformers"],
        "sentence_transformers_load_s": best["sentence_transformers"]["load_s"],
        "emo_load_s": best["emo"]["load_s"],
        "max_abs_difference_normalised": difference,
        "runs_s": {name: [round(t["extract_s"], 2) for t in timings] for name, timings in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "meld")
    parser.add_argument("--limit", type=int, default=2000, help="the first N MELD utterances")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default="minilm,mpnet", help="comma-separated presets")
    parser.add_argument("--side", choices=["sentence_transformers", "emo", "emo_runner"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # a child process: one side, its timings as the last line
        if args.side == "sentence_transformers":
            timing = run_sentence_transformers(args.model, args.root, args.limit, args.vectors)
        else:
            timing = run_emo(args.model, args.root, args.limit, args.vectors, in_memory=args.side == "emo_runner")
        print(json.dumps(timing))
        return
    if not args.root.is_dir():
        raise SystemExit(f"MELD not found at {args.root} (pass --root)")
    load_before = os.getloadavg()
    figures = {model: compare(model, args.root, args.limit, args.repeats) for model in args.models.split(",")}
    for model, result in figures.items():
        print(f"{model}: sentence-transformers {result['sentence_transformers_utt_per_s']:.1f} utt/s; emo's store "
              f"{result['emo_store_utt_per_s']:.1f} utt/s ({result['ratio_store']:.2f}x), its runner "
              f"{result['emo_runner_utt_per_s']:.1f} utt/s ({result['ratio_runner']:.2f}x)")  # fmt: skip
    figures["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    print(f"wrote {write_results('extract_text', figures)}")


if __name__ == "__main__":
    main()
