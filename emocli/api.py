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

import functools
import re
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from emocli.core.errors import ConfigError, EmoError

if TYPE_CHECKING:
    from rich.console import Console

    from emocli.core.samples import SampleSet
    from emocli.data.inputs import FeatureReader
    from emocli.features.ray_runner import RayExecutor
    from emocli.features.store import ExtractionReport
    from emocli.prediction.bundle import BundlePredictor
    from emocli.prediction.predictor import PredictionResult, Predictor
    from emocli.training.trainer import RunSummary

STORES = Path("stores")  # where extract writes by default, and train looks

# Errors name the command line's options (`--features`); called from Python, these functions name their
# own arguments instead (`features=`). The `emo` command sets this while it runs.
COMMAND_LINE: ContextVar[bool] = ContextVar("emocli_command_line", default=False)
_OPTIONS = ("features", "feature", "folds", "seeds", "modalities", "root", "out", "name", "device", "text", "tracker",
            "protocol", "workers", "shard", "limit", "revision", "window", "threshold", "preset", "grid", "trials")
_OPTION = re.compile(r"--(" + "|".join(_OPTIONS) + r")\b(?![-=])(?: ('[^']*'|(?:\d+|all|cpu|standard)\b))?")
_IN_PYTHON_TERMS = (
    (re.compile(r"--feature (\w+)=(<[^>]+>|[^\s;,:)]+)"), r'feature={"\1": "\2"}'),
    (re.compile(r"--set ([^\s;,)]+)"), r'settings=["\1"]'),
    (re.compile(r"--modalities ([a-z]+(?:,[a-z]+)*)"), lambda m: f"modalities={m.group(1).split(',')}"),
    (re.compile(r"--option ([^\s;,)]+)"), r'options=["\1"]'),
    (re.compile(r"--retry-failures\b"), "retry_failures=True"),
    (re.compile(r"--no-download\b"), "download=False"),
    (re.compile(r"--(set|option)\b"), lambda m: {"set": "settings=", "option": "options="}[m.group(1)]),
    (_OPTION, lambda m: f"{m.group(1)}={m.group(2) or ''}"),
)

_Function = TypeVar("_Function", bound=Callable[..., Any])


def in_python_terms(message: str) -> str:
    """An error message with the command line's options as this module's arguments: `--features` ->
    `features=`, `--feature audio=x` -> `feature={"audio": "x"}`, `--set k=v` -> `settings=["k=v"]`."""
    for pattern, replacement in _IN_PYTHON_TERMS:
        message = pattern.sub(replacement, message)
    return message


def _rerun_by_a_worker() -> bool:
    """Whether this call comes from the main script that a new worker process is re-running (multiprocessing's
    spawn and forkserver start methods import it again, under the name __mp_main__)."""
    if "__mp_main__" not in sys.modules:  # set while the script re-runs, and kept in a worker afterwards
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_fixup_main_from_path" and frame.f_globals.get("__name__") == "multiprocessing.spawn":
            return True
        frame = frame.f_back
    return False


def _python_api(function: _Function) -> _Function:
    """Errors in Python terms when called from Python; refused in a worker process that re-runs a script.

    Worker processes start by `spawn`, which re-runs the main script: a script whose calls are not under
    `if __name__ == "__main__":` would call emocli again in every worker (and wait there for the feature
    store the parent holds). Raised there, the error ends the worker and the parent says what to do."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        if _rerun_by_a_worker():
            raise ConfigError(f"emocli.{function.__name__} was called while a worker process re-ran the script; "
                              "put the script's calls under `if __name__ == \"__main__\":`")
        try:
            return function(*args, **kwargs)
        except EmoError as error:
            if COMMAND_LINE.get():
                raise
            message = in_python_terms(error.problem)
            if message == error.problem:
                raise
            raise type(error)(message, path=error.path, row=error.row) from None

    return call  # type: ignore[return-value]


def _console(console: Console | None) -> Console:
    from rich.console import Console

    return console or Console(stderr=True)


@_python_api
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
    workers: int = 0,
    shard: str | None = None,
    limit: int | None = None,
    retry_failures: bool = False,
    transcribe: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    executor: str | RayExecutor = "local",
) -> tuple[ExtractionReport, SampleSet]:
    """Features of a dataset into a feature store (`emo extract`). Without extractors, the dataset's default
    presets; without `root`, the data home (downloading a public dataset there first); without `out`,
    `stores/<dataset>`. `settings` are "NAME.PARAM=VALUE" overrides, `options` "KEY=VALUE" adapter options.
    `transcribe`: a Whisper model ("whisper-base") that writes the text of samples that have audio and no text
    (their `text_source` says so), cached in the store, before the extractors run.
    `executor`: "local" (`workers` processes here), "ray" (the Ray cluster ray.init finds or starts) or a
    `RayExecutor` (emocli.features.ray_runner: address, resources per task); docs/SCALE_OUT.md.

    `workers`: processes for the CPU extractors (openSMILE, MFCC; the neural encoders run in this process
    anyway). 0 by default, unlike `emo extract`: worker processes re-run the calling script, whose calls
    must then be under `if __name__ == "__main__":`."""
    from emocli.core.settings import parse_assignments
    from emocli.datasets import adapter_class, load_dataset
    from emocli.datasets.download import gated_message
    from emocli.datasets.home import locate_dataset
    from emocli.features.presets import build_extractors
    from emocli.features.ray_runner import executor_of
    from emocli.features.store import FeatureStore, Shard, select_samples

    errors = _console(console)
    shard_slice = Shard.parse(shard) if shard else None  # before any slow loading, so typos fail fast
    cluster = executor_of(executor)  # as is a missing Ray
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
        progress=progress, executor=cluster,
    )
    return report, sample_set


def find_store(
    model: str | FeatureReader,
    folder: str | Path = STORES,
    console: Console | None = None,
    *,
    modalities: Sequence[str] | None = None,
    feature: dict[str, str] | None = None,
) -> Path:
    """The feature store under `folder` that `model` (a registry name, or a reader such as the linear floor)
    can read, with `modalities` and `feature` choices: the one there is, said so; several or none are
    errors that list what was found."""
    from emocli.data.inputs import select_inputs
    from emocli.features.store import FeatureStore
    from emocli.models.registry import get_model

    reader = get_model(model) if isinstance(model, str) else model
    candidates = sorted(p.parent for p in Path(folder).glob("*/samples.parquet"))
    fitting, problems = [], []
    for path in candidates:
        try:
            select_inputs(FeatureStore(path), reader, modalities=list(modalities or []) or None, choices=feature)
        except ConfigError as error:
            problems.append(error)
            continue
        fitting.append(path)
    if not fitting and len(problems) == 1:
        raise problems[0]  # the one store there is, and why it does not fit
    if len(fitting) == 1:
        _console(console).print(f"features: {fitting[0]} (the one store under {folder}/ that {reader.name} can read)",
                                highlight=False)
        return fitting[0]
    if not fitting:
        seen = f" ({', '.join(str(p) for p in candidates)} hold none {reader.name} reads)" if candidates else ""
        raise ConfigError(f"no feature store under {folder}/ for {reader.name}{seen}: run `emo extract --dataset "
                          "NAME` first, or give --features")
    raise ConfigError(f"several feature stores under {folder}/ fit {reader.name}: "
                      f"{', '.join(str(p) for p in fitting)}; choose one with --features")


@_python_api
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
    store = features if features is not None else find_store(model, console=console, modalities=config.modalities,
                                                             feature=config.features)
    return train_run(model, store, config, out=out, name=name, device=device, command=["emo", *sys.argv[1:]],
                     console=console, tracker=tracker)


@_python_api
def cross_corpus(
    learners: Sequence[str],
    features: str | Path | None = None,
    *,
    seeds: Sequence[int] = (1,),
    protocols: Sequence[str] = ("loco", "within"),
    corpora: Sequence[str] | None = None,
    evaluate_only: Sequence[str] = (),
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
    `features`, stores/corpora. `evaluate_only`: corpora tested on and never trained on."""
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
               evaluate_only=list(evaluate_only), normalize_by=normalize_by, modalities=list(modalities) if modalities else None,
               features=dict(feature) if feature else None, console=console)


@_python_api
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


@_python_api
def load_predictor(
    model: str | Path | None = None, *, device: str = "auto", workers: int = 0, revision: str | None = None,
    executor: str | RayExecutor = "local",
) -> Predictor | BundlePredictor:
    """A model ready to predict: a shipped pretrained model's name (default: emo-default), a run folder or
    unit, or a hub id (at `revision`). `executor` as `extract`'s: where the features of the inputs are
    extracted."""
    from emocli.features.ray_runner import executor_of
    from emocli.prediction.predictor import Predictor

    return Predictor.from_pretrained(model, revision=revision, device=device, workers=workers,
                                     executor=executor_of(executor))


@_python_api
def predict(
    inputs: Sequence[str | Path],
    model: str | Path | None = None,
    *,
    text: str | None = None,
    window: float = 4.0,
    device: str = "auto",
    workers: int = 0,
    executor: str | RayExecutor = "local",
) -> PredictionResult:
    """Emotions of raw media (`emo predict`): videos, audio, texts, folders or manifests; by default with the
    shipped emo-default model."""
    predictor = load_predictor(model, device=device, workers=workers, executor=executor)
    return predictor.predict(list(inputs), text=text, window_s=window)


def list_models() -> list[dict[str, Any]]:
    """The model registry as data (`emo models`). Named as timm's and huggingface_hub's: `emocli.models` is
    the models' subpackage."""
    from emocli.models.registry import catalog

    return catalog()


def list_datasets() -> list[str]:
    """The dataset adapters' names (`emo datasets`); `emocli.datasets` is the adapters' subpackage."""
    from emocli.datasets import ADAPTERS

    return list(ADAPTERS)
