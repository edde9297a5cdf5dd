"""The Python API: the `emo` commands as functions with the same names and defaults.

    import emocli

    emocli.extract("ravdess", audio=["whisper-base"])                 # -> stores/ravdess
    run = emocli.train("smile", features="stores/ravdess", folds="all", settings=["epochs=20"])
    emocli.evaluate(run.root)
    result = emocli.predict(["clip.mp4"], model=run.root)            # default: the shipped pretrained model
    result.table                                                    # one row per segment

The command line (commands/) parses options and prints; everything it does is one of these calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocli.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from emocli.core.samples import SampleSet
    from emocli.features.store import ExtractionReport
    from emocli.prediction.bundle import BundlePredictor
    from emocli.prediction.predictor import PredictionResult, Predictor
    from emocli.training.trainer import RunSummary

STORES = Path("stores")  # where extract writes by default, and train looks


def _console(console: Console | None) -> Console:
    from rich.console import Console

    return console or Console(stderr=True)


def extract(
    dataset: str,
    root: str | Path | None = None,
    out: str | Path | None = None,
    *,
    audio: Sequence[str] = (),
    text: Sequence[str] = (),
    visual: Sequence[str] = (),
    settings: Sequence[str] = (),
    options: Sequence[str] = (),
    download: bool = True,
    workers: int = 2,
    shard: str | None = None,
    limit: int | None = None,
    retry_failures: bool = False,
    transcribe: str | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> tuple[ExtractionReport, SampleSet]:
    """Features of a dataset into a feature store (`emo extract`). Without extractors, the dataset's default
    presets; without `root`, the data home (downloading a public dataset there first); without `out`,
    `stores/<dataset>`. `settings` are "NAME.PARAM=VALUE" overrides, `options` "KEY=VALUE" adapter options.
    `transcribe`: a Whisper model ("whisper-base") that writes the text of samples that have audio and no text
    (their `text_source` says so), cached in the store, before the extractors run."""
    from emocli.core.settings import parse_assignments
    from emocli.datasets import adapter_class, load_dataset
    from emocli.datasets.download import gated_message
    from emocli.datasets.home import locate_dataset
    from emocli.features.presets import build_extractors
    from emocli.features.store import FeatureStore, Shard, select_samples

    errors = _console(console)
    shard_slice = Shard.parse(shard) if shard else None  # before any slow loading, so typos fail fast
    adapter = adapter_class(dataset)
    adapter_options = parse_assignments(options, what="--option")
    adapter.Options.parse(dataset, adapter_options)  # a wrong option fails before any download or loading
    location = locate_dataset(dataset, root)
    folder = adapter.prepare(location, download=download, progress=progress, console=errors, options=adapter_options)
    if location.origin != "--root":
        errors.print(f"{dataset}: {folder} ({location.describe()})", highlight=False, soft_wrap=True)
    sample_set = load_dataset(dataset, folder, **adapter_options)
    for note in sample_set.notes:
        errors.print(f"[yellow]note:[/] {note}", highlight=False)
    store = FeatureStore(out if out is not None else STORES / dataset)
    if transcribe is not None:
        from emocli.core.io import make_folder
        from emocli.features.audio.transcribe import Transcriber, transcribe_samples

        rows = select_samples(sample_set.table, shard_slice, limit).index
        sample_set.table, failed = transcribe_samples(sample_set.table, Transcriber(transcribe), rows=rows,
                                                      cache_folder=make_folder(store.path), progress=progress)
        heard = int(sample_set.table["text_source"].str.startswith(transcribe).fillna(False).sum())
        errors.print(f"{dataset}: {heard} samples' text transcribed with {transcribe}"
                     + (f"; {len(failed)} could not be read (first: {failed[0][0]}: {failed[0][1]})" if failed else ""),
                     highlight=False, soft_wrap=True)
    chosen = {"audio": list(audio), "text": list(text), "visual": list(visual)}
    if not any(chosen.values()):
        chosen, skipped = adapter.default_extractors(sample_set)
        described = ", ".join(f"{m} {p}" for m, presets in chosen.items() for p in presets) or "none it can feed"
        errors.print(f"{dataset}: default extraction: {described}", highlight=False)
        for reason in skipped:
            errors.print(f"[yellow]note:[/] default skipped: {reason}", highlight=False, soft_wrap=True)
    extractors = build_extractors(chosen, list(settings), sample_set.root)
    if not extractors and not sample_set.precomputed:
        hint = f"; {gated_message(adapter, folder)}" if adapter.gated is not None else ""
        raise ConfigError(f"nothing to extract from {folder}: give audio, text or visual extractors{hint}")
    report = store.extract(
        sample_set, extractors, workers=workers, shard=shard_slice, limit=limit, retry_failures=retry_failures,
        progress=progress,
    )
    return report, sample_set


def find_store(model: str, folder: str | Path = STORES, console: Console | None = None) -> Path:
    """The feature store under `folder` that `model` can train on: the one there is, said so; several or
    none are errors that list what was found."""
    from emocli.data.inputs import select_inputs
    from emocli.features.store import FeatureStore
    from emocli.models.registry import get_model

    entry = get_model(model)
    candidates = sorted(p.parent for p in Path(folder).glob("*/samples.parquet"))
    fitting = []
    for path in candidates:
        try:
            select_inputs(FeatureStore(path), entry)
        except ConfigError:
            continue
        fitting.append(path)
    if len(fitting) == 1:
        _console(console).print(f"features: {fitting[0]} (the one store under {folder}/ that {model} can read)",
                                highlight=False)
        return fitting[0]
    if not fitting:
        seen = f" ({', '.join(str(p) for p in candidates)} hold none {model} reads)" if candidates else ""
        raise ConfigError(f"no feature store under {folder}/ for {model}{seen}: run `emo extract --dataset NAME` "
                          "first, or give --features")
    raise ConfigError(f"several feature stores under {folder}/ fit {model}: {', '.join(str(p) for p in fitting)}; "
                      "choose one with --features")


def train(
    model: str,
    features: str | Path | None = None,
    *,
    preset: str | None = None,
    settings: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | str | None = None,
    modalities: Sequence[str] | None = None,
    feature: dict[str, str] | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    protocol: str = "standard",
    device: str = "auto",
    tracker: str = "none",
    console: Console | None = None,
) -> RunSummary | None:
    """Train a registry model (`emo train`): a unit per seed and fold, validation-only selection, results as
    mean ± std. Without `features`, the one store under stores/ the model can read."""
    import sys

    from emocli.training.config import resolve_config
    from emocli.training.trainer import train_run

    fields = {
        "seeds": list(seeds) if seeds is not None else None,
        "folds": folds if folds is None or folds == "all" else list(folds),
        "modalities": list(modalities) if modalities else None,
        "features": dict(feature) if feature else None,
        "protocol": protocol,
    }
    config = resolve_config(model, preset, list(settings), **fields)
    store = features if features is not None else find_store(model, console=console)
    return train_run(model, store, config, out=out, name=name, device=device, command=["emo", *sys.argv[1:]],
                     console=console, tracker=tracker)


def cross_corpus(
    learners: Sequence[str],
    features: str | Path | None = None,
    *,
    seeds: Sequence[int] = (1,),
    protocols: Sequence[str] = ("loco", "within"),
    corpora: Sequence[str] | None = None,
    preset: str | None = None,
    settings: Sequence[str] = (),
    modalities: Sequence[str] | None = None,
    feature: dict[str, str] | None = None,
    normalize_by: str = "none",
    out: str | Path = "runs/cross-corpus",
    console: Console | None = None,
) -> dict[str, Any]:
    """Learners ("floor" and/or registered models) trained and tested across corpora (`emo cross-corpus`): UAR on
    each corpus left out and within its own speaker folds; writes `out`/results.json and results.md. Without
    `features`, stores/corpora."""
    from emocli.models.registry import model_names
    from emocli.training.config import resolve_config
    from emocli.training.crosscorpus import FLOOR, PROTOCOLS
    from emocli.training.crosscorpus import cross_corpus as run

    unknown = [name for name in learners if name != FLOOR and name not in model_names()]
    if unknown or not learners:
        raise ConfigError(f"learners: {', '.join(unknown) or 'none given'}; choose {FLOOR} and/or "
                          f"{', '.join(model_names())}")
    wrong = [p for p in protocols if p not in PROTOCOLS]
    if wrong:
        raise ConfigError(f"protocols: {', '.join(wrong)}; choose from {', '.join(PROTOCOLS)}")
    configs = {name: resolve_config(name, preset, list(settings), seeds=list(seeds),
                                    modalities=list(modalities) if modalities else None,
                                    features=dict(feature) if feature else None)
               for name in learners if name != FLOOR}
    store = Path(features) if features is not None else STORES / "corpora"
    return run(store, list(learners), configs, out, seeds=list(seeds), protocols=list(protocols), corpora=corpora,
               normalize_by=normalize_by, modalities=list(modalities) if modalities else None,
               features=dict(feature) if feature else None, console=console)


def evaluate(
    run: str | Path,
    split: str = "test",
    *,
    features: str | Path | None = None,
    threshold: float | None = None,
    empty_rule: str | None = None,
    device: str = "auto",
    plot: bool = False,
) -> dict[str, Any]:
    """Score a trained run's units on a split (`emo evaluate`): per-unit results and their mean ± std; `plot`
    draws each unit's confusion matrix (`<unit>/confusion-<split>.png`)."""
    from emocli.runs.evaluation import evaluate_run

    return evaluate_run(run, split, store=features, threshold=threshold, empty_rule=empty_rule, device=device,
                        plot=plot)


def load_predictor(
    model: str | Path | None = None, *, device: str = "auto", workers: int = 0, revision: str | None = None
) -> Predictor | BundlePredictor:
    """A model ready to predict: a shipped pretrained model's name (default: emo-default), a run folder or
    unit, or a hub id (at `revision`)."""
    from emocli.prediction.predictor import Predictor

    return Predictor.from_pretrained(model, revision=revision, device=device, workers=workers)


def predict(
    inputs: Sequence[str | Path],
    model: str | Path | None = None,
    *,
    text: str | None = None,
    window: float = 4.0,
    device: str = "auto",
    workers: int = 0,
) -> PredictionResult:
    """Emotions of raw media (`emo predict`): videos, audio, texts, folders or manifests; by default with the
    shipped emo-default model."""
    return load_predictor(model, device=device, workers=workers).predict(list(inputs), text=text, window_s=window)


def list_models() -> list[dict[str, Any]]:
    """The model registry as data (`emo models`). Named as timm's and huggingface_hub's: `emocli.models` is
    the models' subpackage."""
    from emocli.models.registry import catalog

    return catalog()


def list_datasets() -> list[str]:
    """The dataset adapters' names (`emo datasets`); `emocli.datasets` is the adapters' subpackage."""
    from emocli.datasets import ADAPTERS

    return list(ADAPTERS)
