"""Seconds per training epoch of each registry model, with the trainer's own batching and train step.

Two data sizes:
  * RAVDESS-sized: the 1200 training clips of actors 1-20, with the features and training recipes of the
    pipelines/ravdess-*.toml recipes (MFCC [212, 13] + OpenFace AU [35] vector; SMILE: eGeMAPS [88] + AU;
    SpikEmo: ComParE 2016 [6373] vector + AU vector). With --store, a real RAVDESS feature store (e.g. the
    one `emo run pipelines/ravdess-cfnsr.toml` writes, plus compare2016 for SpikEmo); otherwise generated
    features of those widths.
  * MELD-sized: 9989 training utterances in 1038 dialogues, 384-d text vectors (MiniLM's width),
    generated; the models that read text (SMILE, MMER with their paper recipes, SpikEmo with
    pipelines/meld-spikemo-text.toml's). CFN-SR reads no text.

One epoch = `train_loader` over the training rows + `TrainStep.train_step` per batch (forward, the
paper's losses, backward, clipping, optimizer step), exactly as `train_unit` runs it, without the
per-epoch evaluation. Some epochs take many minutes on a CPU, so by default batches are timed until the
epoch ends or --budget seconds pass, and the epoch is projected from the mean batch time (marked
"projected" in the results; the first batch, which pays one-off set-up, is counted). --full times whole
epochs; --quick is --budget 8. On a machine shared with other work, --threads 1 avoids the slowdown of
oversubscribed intra-op threads (the results record the thread count).

--device cuda times the same loop on a GPU (results in benchmarks/results/train_epoch-cuda.json): one
untimed epoch first pays CUDA's start-up and the LIF kernels' compilation, once per batch shape (dialogue
batches come in many), and the clock stops after the GPU has finished. --lif-backend picks spikingjelly's
LIF kernel for the spiking models there (torch, cuda, triton; the models' `backend` field).

    python benchmarks/train_epoch.py [--store stores/ravdess] [--models smile,cfnsr] [--sizes ravdess,meld]
                                     [--budget 30 | --quick | --full] [--threads N]
                                     [--device cuda] [--lif-backend triton]
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402
from emocli.models.registry import get_model

RAVDESS_CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MELD_CLASSES = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
WIDTHS = {"mfcc-cfnsr": ("sequence", 13, 212), "compare2016": ("vector", 6373, None), "egemaps": ("vector", 88, None),
          "openface-au": ("vector", 35, None), "minilm": ("vector", 384, None)}


@dataclass
class Recipe:
    """What to train: a model with a training preset and overrides, on inputs named by extraction preset."""

    model: str
    preset: str | None
    overrides: list[str]
    features: dict[str, str]  # modality -> extraction preset


def pipeline_recipe(name: str) -> Recipe:
    data = tomllib.loads((REPO / "pipelines" / f"{name}.toml").read_text())["train"]
    return Recipe(data["model"], data.get("preset"), data.get("set", []), data["features"])


def ravdess_recipes() -> dict[str, Recipe]:
    return {model: pipeline_recipe(f"ravdess-{model}") for model in ("cfnsr", "smile", "mmer", "spikemo")}


def meld_recipes() -> dict[str, Recipe]:
    return {
        "smile": Recipe("smile", "smile", [], {"text": "minilm"}),
        "mmer": Recipe("mmer", "mmer", [], {"text": "minilm"}),
        "spikemo": pipeline_recipe("meld-spikemo-text"),
    }


# ------------------------------------------------------------------------------------------------ data


def generated_data(recipe: Recipe, samples, classes: tuple[str, ...], rng: np.random.Generator):
    """EmotionData of random features of the recipe's widths for `samples` (what load_data returns)."""
    from emocli.core.types import LabelMap
    from emocli.data.inputs import InputSpec
    from emocli.data.tables import EmotionData

    features, inputs = {}, {}
    for modality, preset in recipe.features.items():
        kind, dim, length = WIDTHS[preset]
        shape = (length, dim) if kind == "sequence" else (dim,)
        features[modality] = [rng.standard_normal(shape).astype(np.float32) for _ in range(len(samples))]
        inputs[modality] = InputSpec(modality, f"{modality}__generated-{preset}", preset, kind, dim, {})
    label_map = LabelMap(list(classes), "single_label")
    targets = samples["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    return EmotionData(samples, features, targets, label_map, inputs)


def ravdess_samples(rng: np.random.Generator):
    import pandas as pd

    from emocli.core.samples import normalize_table

    rows = [{"sample_id": f"actor{a:02d}/{i:02d}", "speaker": f"actor_{a:02d}", "split": "train",
             "label": RAVDESS_CLASSES[rng.integers(len(RAVDESS_CLASSES))]} for a in range(1, 21) for i in range(60)]
    return normalize_table(pd.DataFrame(rows), source="generated")


def meld_samples(rng: np.random.Generator, utterances: int = 9989, dialogues: int = 1038):
    import pandas as pd

    from emocli.core.samples import normalize_table

    lengths = rng.multinomial(utterances - dialogues, np.full(dialogues, 1 / dialogues)) + 1
    rows = []
    for d, length in enumerate(lengths):
        speakers = rng.integers(2, 5)
        for position in range(length):
            rows.append({"sample_id": f"train/dia{d}_utt{position}", "dialogue_id": f"train/dia{d}",
                         "position": position, "speaker": f"s{d}_{rng.integers(speakers)}", "split": "train",
                         "label": MELD_CLASSES[rng.integers(len(MELD_CLASSES))]})
    return normalize_table(pd.DataFrame(rows), source="generated")


def store_data(recipe: Recipe, store: Path):
    """The real store's features, the training split (RAVDESS: actors 1-20)."""
    from emocli.data.inputs import select_inputs, store_label_map
    from emocli.data.tables import load_data
    from emocli.features.store import FeatureStore

    feature_store = FeatureStore(store)
    inputs = select_inputs(feature_store, get_model(recipe.model), list(recipe.features), recipe.features)
    data = load_data(feature_store, inputs, store_label_map(feature_store))
    train = (data.samples["split"] == "train").to_numpy()
    return data, np.flatnonzero(train)


# -------------------------------------------------------------------------------------------- timing


def time_epoch(recipe: Recipe, data, rows: np.ndarray, budget_s: float | None, device: str = "cpu") -> dict:
    """One epoch of the trainer's loop (no evaluation): seconds, batches, and whether it was projected."""
    import torch

    from emocli.data.batches import train_loader
    from emocli.training.config import resolve_config
    from emocli.training.distributed import seed_everything
    from emocli.training.prepare import build_model_config
    from emocli.training.schedule import build_optimizer
    from emocli.training.steps import STEPS

    entry = get_model(recipe.model)
    config = resolve_config(recipe.model, recipe.preset, recipe.overrides, modalities=list(data.inputs))
    model_config = build_model_config(entry, config, data.inputs, data.label_map)
    seed_everything(1, deterministic=False)
    model = entry.build(model_config).to(device)
    step = STEPS[entry.train_step](config.step, entry.objective(config.loss, model_config))
    optimizer = build_optimizer(config, model)
    loader = train_loader(data, rows, conversation=entry.conversation, batch_size=config.batch_size,
                          seed=1, drop_last=config.drop_last, parties=model_config.speaker_parties)
    model.train()
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        loader.sampler.set_epoch(0)
        for batch in loader:
            step.train_step(model, batch.to(device), optimizer, config.clip_grad_norm or None)
        torch.cuda.synchronize()
    loader.sampler.set_epoch(int(on_gpu))
    timed, started = 0, time.perf_counter()
    for batch in loader:
        step.train_step(model, batch.to(device), optimizer, config.clip_grad_norm or None)
        timed += 1
        if budget_s is not None and time.perf_counter() - started >= budget_s:
            break
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    projected = timed < len(loader)
    return {
        "seconds_per_epoch": round(seconds * len(loader) / timed, 2),
        "batches": len(loader),
        "timed_batches": timed,
        "projected": projected,
        "batch_size": config.batch_size,
        "preset": config.preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "warmup_epochs": int(on_gpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a real RAVDESS feature store (default: generated features)")
    parser.add_argument("--models", default="cfnsr,smile,mmer,spikemo", help="comma-separated registry models")
    parser.add_argument("--sizes", default="ravdess,meld", help="ravdess, meld or both")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of batches per model before projecting")
    parser.add_argument("--quick", action="store_true", help="--budget 8")
    parser.add_argument("--full", action="store_true", help="time whole epochs, however long")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--lif-backend", help="spiking models' LIF kernel on CUDA: torch, cuda, triton")
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    budget_s = None if args.full else 8.0 if args.quick else args.budget
    models = [m.strip() for m in args.models.split(",")]
    rng = np.random.default_rng(0)

    figures: dict[str, dict] = {}
    for size in [s.strip() for s in args.sizes.split(",")]:
        recipes = ravdess_recipes() if size == "ravdess" else meld_recipes()
        samples = ravdess_samples(rng) if size == "ravdess" else meld_samples(rng)
        for model in (m for m in models if m in recipes):
            recipe = recipes[model]
            if args.lif_backend and get_model(model).spiking:
                recipe = Recipe(recipe.model, recipe.preset, [*recipe.overrides, f"model.backend={args.lif_backend}"],
                                recipe.features)
            if size == "ravdess" and args.store is not None:
                data, rows = store_data(recipe, args.store)
                source = f"store {args.store}"
            else:
                classes = RAVDESS_CLASSES if size == "ravdess" else MELD_CLASSES
                data, rows = generated_data(recipe, samples, classes, rng), np.arange(len(samples))
                source = "generated"
            result = time_epoch(recipe, data, rows, budget_s, args.device)
            result.update(samples=len(rows), features=recipe.features, data=source)
            figures[f"{size}/{model}"] = result
            mark = " (projected)" if result["projected"] else ""
            print(f"{size:8s} {model:8s} {result['seconds_per_epoch']:8.2f} s/epoch{mark}  {len(rows)} samples, "
                  f"{result['batches']} batches of {result['batch_size']}, {result['parameters']:,} parameters, "
                  f"preset {result['preset']}, {source}", flush=True)
    name = "train_epoch" if args.device == "cpu" else f"train_epoch-{args.device.split(':')[0]}"
    print(f"wrote {write_results(name, figures)}")


if __name__ == "__main__":
    main()
