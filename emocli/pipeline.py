"""Pipelines: declarative TOML recipes that chain extract, train, evaluate (and predict) for a dataset and
a model, and compare what they measure with the paper's numbers. `emo run RECIPE` calls `run_pipeline`.
(Longer than most modules: a recipe's schema, its stages and their skip rules read top to bottom as one
story; each stage calls the stage's own home and holds no logic of it.)

A recipe (pipelines/*.toml; docs/PIPELINES.md has every key)::

    name = "ravdess-cfnsr"
    base = ".."                       # relative paths below: from the recipe's folder joined with base

    [dataset]
    name = "ravdess"                  # an adapter of `emo datasets`
    root = "../shared/data/ravdess"   # overridden by --root, else by $EMO_RAVDESS_ROOT
    requires = ["audio", "openface_au.parquet"]   # checked first: "data not found at ..."

    [extract]                         # as `emo extract`: presets, preset files or extractor names
    audio = ["mfcc-cfnsr"]
    visual = ["openface-au"]

    [train]                           # as `emo train`
    model = "cfnsr"
    preset = "ravdess-small-cfnsr"
    features = { audio = "mfcc-cfnsr", visual = "openface-au" }

    [outputs]                         # relative to --out when given, else to base
    store = "stores/ravdess"

    [reference]                       # the paper's numbers, in percent, and how our setting differs
    source = "..."
    note = "..."
    metrics = { accuracy = 75.76 }

Each stage is skipped where its outputs are complete, by the mechanism that owns them: the feature
store's cache (extraction redoes only missing or changed samples), the trainer's run directories (a
finished run is found by its configuration's fingerprint; an interrupted unit resumes from its
checkpoint), evaluation files newer than the weights they score, and prediction files newer than the
run and the inputs. So an interrupted `emo run` started again redoes no finished stage. Every stage
appends what it did to `<report>/stages.jsonl`; `<report>/summary.json` holds the comparison.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emocli.core.errors import ConfigError, DatasetError
from emocli.core.io import read_toml
from emocli.datasets.home import root_variable

STAGES = ("extract", "train", "evaluate", "predict")
STAGE_LOG = "stages.jsonl"
SUMMARY = "summary.json"
PREDICTIONS = "predictions.csv"


# ------------------------------------------------------------------------------------------- schema


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSection(_Section):
    name: str = Field(description="dataset adapter (emo datasets)")
    root: str = Field(description="folder or manifest file; relative to the recipe's base")
    options: dict[str, Any] = Field(default_factory=dict, description="adapter options (emo extract --option)")
    requires: list[str] = Field(default_factory=list, description="paths under the root that must exist")
    hint: str = Field("", description="where to get the data, shown when it is missing")


class ExtractSection(_Section):
    audio: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)
    visual: list[str] = Field(default_factory=list)
    set: list[str] = Field(default_factory=list, description='parameter overrides, "NAME.PARAM=VALUE"')
    workers: int = Field(2, ge=0)
    limit: int | None = Field(None, ge=1, description="only the first N samples: for trials")


class TrainSection(_Section):
    model: str
    preset: str | None = None
    set: list[str] = Field(default_factory=list, description='config overrides, "key.sub=VALUE"')
    seeds: list[int] | None = None
    folds: list[int] | Literal["all"] | None = None
    modalities: list[str] | None = None
    features: dict[str, str] = Field(default_factory=dict, description="modality -> feature set, extractor or preset")
    protocol: Literal["standard", "paper"] = "standard"
    name: str | None = Field(None, description="run name: `runs/<model>-<dataset>-<name>` (default: a timestamp)")


class EvaluateSection(_Section):
    splits: list[Literal["train", "valid", "test"]] = Field(default_factory=lambda: ["test"])


class PredictSection(_Section):
    inputs: list[str] = Field(min_length=1, description="media, folders or manifests; relative to the data folder")
    text: str | None = None
    window_s: float = Field(4.0, gt=0)


class OutputsSection(_Section):
    store: str = Field(description="feature store; recipes of one dataset may share it")
    runs: str = "runs"
    report: str | None = Field(None, description="stage log, summary, predictions; default `reports/<name>`")


class ReferenceSection(_Section):
    source: str = Field(description="paper, table and setting the numbers come from")
    note: str = Field("", description="how this recipe's setting differs from the paper's")
    metrics: dict[str, float] = Field(default_factory=dict, description="metric -> value in percent")


class Recipe(_Section):
    name: str
    description: str = ""
    base: str = "."
    synthetic: bool = False
    dataset: DatasetSection
    extract: ExtractSection = Field(default_factory=ExtractSection)
    train: TrainSection
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    predict: PredictSection | None = None
    outputs: OutputsSection
    reference: ReferenceSection | None = None

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"name {self.name!r}: letters, digits, '.', '_' and '-' only (it names folders)")
        return self


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe; errors name the file and the key."""
    path = Path(path)
    data = read_toml(path, error=ConfigError, missing="recipe not found")
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'recipe'}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid recipe ({problems})", path=path) from None


@dataclass(frozen=True)
class Locations:
    """A recipe's paths, resolved: where the data is read and where each stage writes."""

    data: Path
    data_origin: str  # "--root", "$EMO_X_ROOT" or "recipe": said when the data is missing
    store: Path
    runs: Path
    report: Path

    @property
    def data_folder(self) -> Path:
        """The folder predict inputs are relative to: the root, or the folder of a root file (a manifest)."""
        return self.data.parent if self.data.is_file() else self.data


def locate(recipe: Recipe, recipe_path: Path, root: str | Path | None = None, out: str | Path | None = None) -> Locations:
    """Resolve the data root (--root, then the environment variable, then the recipe) and the outputs
    (relative to --out when given, else to the recipe's base)."""
    base = (recipe_path.parent / recipe.base).resolve()
    variable = root_variable(recipe.dataset.name)
    if root is not None:
        data, origin = Path(root).expanduser(), "--root"
    elif os.environ.get(variable):
        data, origin = Path(os.environ[variable]).expanduser(), f"${variable}"
    else:
        data, origin = base / recipe.dataset.root, "recipe"
    outputs = Path(out).expanduser() if out is not None else base
    report = recipe.outputs.report or f"reports/{recipe.name}"
    return Locations(
        data=Path(os.path.abspath(data)),
        data_origin=origin,
        store=Path(os.path.abspath(outputs / recipe.outputs.store)),
        runs=Path(os.path.abspath(outputs / recipe.outputs.runs)),
        report=Path(os.path.abspath(outputs / report)),
    )


def check_data(recipe: Recipe, where: Locations) -> None:
    """Raise a DatasetError saying which path is missing, how to point elsewhere, and where to get it."""
    missing = [where.data] if not where.data.exists() else [where.data / r for r in recipe.dataset.requires
                                                             if not (where.data / r).exists()]
    if missing:
        hint = f"; {recipe.dataset.hint}" if recipe.dataset.hint else ""
        raise DatasetError(
            f"data not found at {missing[0]} (root from {where.data_origin}; give --root DIR or set "
            f"{root_variable(recipe.dataset.name)}){hint}"
        )


# ------------------------------------------------------------------------------------------- runner


@dataclass
class StageResult:
    stage: str
    status: Literal["done", "skipped", "planned", "interrupted"]
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Comparison:
    """A measured metric against the paper's value (both in percent)."""

    metric: str
    mean: float | None
    std: float | None
    n: int
    reference: float

    @property
    def difference(self) -> float | None:
        return None if self.mean is None else self.mean - self.reference


@dataclass
class PipelineResult:
    recipe: Recipe
    locations: Locations
    stages: list[StageResult]
    run_root: Path | None
    measured: dict[str, Any] | None  # metrics.summarize over the units' evaluations on the first split
    comparisons: list[Comparison]


def run_pipeline(
    recipe_path: str | Path,
    *,
    root: str | Path | None = None,
    out: str | Path | None = None,
    stages: Sequence[str] = STAGES,
    dry_run: bool = False,
    device: str = "auto",
    train_overrides: Sequence[str] = (),
    console: Any = None,
) -> PipelineResult:
    """Run the recipe's stages in order (those in `stages`; predict only when the recipe has inputs).

    `train_overrides` ("key.sub=VALUE") apply after the recipe's own [train] set; a different
    configuration trains into its own run directory (runs are found by configuration fingerprint).
    """
    from rich.console import Console

    recipe_path = Path(recipe_path)
    recipe = load_recipe(recipe_path)
    if train_overrides:
        train = recipe.train.model_copy(update={"set": [*recipe.train.set, *train_overrides]})
        recipe = recipe.model_copy(update={"train": train})
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    where = locate(recipe, recipe_path, root, out)
    console = console or Console(stderr=True)
    runner = _Runner(recipe, where, device, console, dry_run)
    if recipe.synthetic:
        console.rule("[bold yellow]SYNTHETIC DATA[/]")
        console.print("[bold yellow]This recipe runs on generated data: its numbers show that the pipeline "
                      "works, nothing about emotion recognition.[/]")
    console.print(f"[bold]{recipe.name}[/]: {recipe.description}", highlight=False)
    console.print(f"data {where.data} ({where.data_origin}); store {where.store}; runs {where.runs}; "
                  f"report {where.report}", highlight=False)

    results: list[StageResult] = []
    for stage in STAGES:
        if stage not in stages or (stage == "predict" and recipe.predict is None):
            continue
        started = time.perf_counter()
        try:
            result = getattr(runner, stage)()
        except KeyboardInterrupt:
            runner.log(StageResult(stage, "interrupted", "interrupted; run again to go on", time.perf_counter() - started))
            raise
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
        runner.log(result)
        console.print(f"[bold]{stage}[/]: {result.status}: {result.detail}", highlight=False, soft_wrap=True)

    measured, comparisons = runner.compare()
    pipeline = PipelineResult(recipe, where, results, runner.run_root, measured, comparisons)
    if not dry_run:
        _write_summary(pipeline)
    return pipeline


class _Runner:
    """The stages of one recipe; each returns what it did, or planned to do on a dry run."""

    def __init__(self, recipe: Recipe, where: Locations, device: str, console: Any, dry_run: bool):
        self.recipe, self.where, self.device, self.console, self.dry_run = recipe, where, device, console, dry_run
        self.run_root: Path | None = None

    def log(self, result: StageResult) -> None:
        if self.dry_run:
            return
        from emocli.runs import layout

        self.where.report.mkdir(parents=True, exist_ok=True)
        layout.append_jsonl(self.where.report / STAGE_LOG, {
            "time": datetime.now().isoformat(timespec="seconds"), "recipe": self.recipe.name,
            "stage": result.stage, "status": result.status, "seconds": result.seconds,
            "detail": result.detail, **result.data,
        })

    # -- extract ---------------------------------------------------------------------------------------

    def _extractors(self, sample_set: Any) -> list[Any]:
        from emocli.features.presets import build_extractors

        section = self.recipe.extract
        choices = {"audio": section.audio, "text": section.text, "visual": section.visual}
        return build_extractors(choices, section.set, sample_set.root)

    def extract(self) -> StageResult:
        from emocli.datasets import load_dataset
        from emocli.features.store import FeatureStore

        try:
            check_data(self.recipe, self.where)
        except DatasetError as error:
            if not self.dry_run:
                raise
            return StageResult("extract", "planned", str(error))
        section = self.recipe.extract
        sample_set = load_dataset(self.recipe.dataset.name, self.where.data, **self.recipe.dataset.options)
        for note in sample_set.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)
        extractors = self._extractors(sample_set)
        if not extractors and not sample_set.precomputed:
            raise ConfigError(f"recipe {self.recipe.name}: [extract] names no extractor and "
                              f"{sample_set.dataset} ships no features")
        store = FeatureStore(self.where.store)
        if self.dry_run:
            wanted = min(len(sample_set.table), section.limit or len(sample_set.table))
            held = {info.name: info.n_rows + info.n_failures for info in store.feature_sets()} \
                if (self.where.store / "samples.parquet").is_file() else {}
            names = [e.feature_set_name for e in extractors] + [
                f"{p.modality}__precomputed-{p.name}" for p in sample_set.precomputed]
            parts = [f"{name}: {held.get(name, 0)}/{wanted} held" for name in names]
            return StageResult("extract", "planned", "; ".join(parts))
        report = store.extract(sample_set, extractors, workers=section.workers, limit=section.limit,
                               progress=self.console.is_terminal)
        extracted = sum(fs.extracted for fs in report.feature_sets)
        failed = sum(fs.failed + fs.known_failures for fs in report.feature_sets)
        detail = "; ".join(f"{fs.label}: {fs.summary()}" for fs in report.feature_sets)
        if failed:
            detail += f" (`emo store failures {self.where.store} NAME` lists the failures)"
        return StageResult("extract", "done" if extracted or report.n_failed else "skipped", detail, data={
            "feature_sets": {fs.name: {"extracted": fs.extracted, "cached": fs.cached, "failed": fs.failed,
                                       "known_failures": fs.known_failures} for fs in report.feature_sets},
        })

    # -- train -----------------------------------------------------------------------------------------

    def _config(self) -> Any:
        from emocli.training.config import resolve_config

        section = self.recipe.train
        return resolve_config(
            section.model, section.preset, section.set, seeds=section.seeds, folds=section.folds,
            modalities=section.modalities, features=section.features or None, protocol=section.protocol,
        )

    def _existing_run(self) -> tuple[Path, list[tuple[int, int | None]]] | None:
        """The run directory the trainer would use for this configuration, and its units; None before
        extraction (the configuration's fingerprint depends on the feature sets)."""
        from emocli.training.prepare import choose_root, plan

        if not (self.where.store / "samples.parquet").is_file():
            return None
        run = plan(self.recipe.train.model, self.where.store, self._config())
        root = choose_root(self.where.runs, run, self.recipe.train.name)
        return root, [(seed, fold) for seed in run.config.seeds for fold in run.folds]

    def train(self) -> StageResult:
        from emocli.runs import layout
        from emocli.training.trainer import train_run

        if self.dry_run:
            try:
                found = self._existing_run()
            except ConfigError:  # the store lacks this recipe's feature sets: extract has not made them yet
                found = None
            if found is None:
                return StageResult("train", "planned", f"train {self.recipe.train.model} once its features are extracted")
            root, units = found
            done = sum((layout.unit_dir(root, s, f) / layout.TEST_METRICS).is_file() for s, f in units)
            self.run_root = root if root.is_dir() else None
            return StageResult("train", "planned", f"{done}/{len(units)} units finished in {root}")
        command = ["emo", "run", self.recipe.name, "train"]
        summary = train_run(self.recipe.train.model, self.where.store, self._config(), out=self.where.runs,
                            name=self.recipe.train.name, device=self.device, command=command, console=self.console)
        self.run_root = summary.root
        status = "skipped" if summary.skipped else "done"
        detail = f"{len(summary.results)} units in {summary.root}" + (" (finished before)" if summary.skipped else "")
        return StageResult("train", status, detail, data={"run": str(summary.root)})

    def _run_root(self) -> Path:
        if self.run_root is None:
            found = self._existing_run()
            if found is None or not found[0].is_dir():
                raise ConfigError(f"recipe {self.recipe.name}: no trained run yet; run the train stage first",
                                  path=self.where.runs)
            self.run_root = found[0]
        return self.run_root

    # -- evaluate --------------------------------------------------------------------------------------

    def evaluate(self) -> StageResult:
        from emocli.runs import layout
        from emocli.runs.evaluation import evaluate_unit

        if self.dry_run and self.run_root is None:
            return StageResult("evaluate", "planned", f"{', '.join(self.recipe.evaluate.splits)} of the trained run")
        root = self._run_root()
        done, kept, differs = 0, 0, []
        for unit in layout.units(root):
            weights = unit / layout.WEIGHTS
            if not (unit / layout.TEST_METRICS).is_file():
                if self.dry_run:
                    done += len(self.recipe.evaluate.splits)
                    continue
                raise ConfigError("this unit has not finished training; run the train stage", path=unit)
            for split in self.recipe.evaluate.splits:
                target = unit / f"evaluation-{split}.json"
                # The weights' mtime is when training last kept an epoch: an older file scored other weights.
                if target.is_file() and target.stat().st_mtime >= weights.stat().st_mtime:
                    kept += 1
                    continue
                if self.dry_run:
                    done += 1
                    continue
                result = evaluate_unit(unit, split, device=self.device)
                layout.write_json(target, result)
                done += 1
                stored = unit / layout.TEST_METRICS
                if split == "test" and layout.read_json(stored)["metrics"] != layout.read_json(target)["metrics"]:
                    differs.append(unit)
        verb = "to score" if self.dry_run else "scored"
        detail = f"{done} {verb}, {kept} up to date ({root})"
        if differs:
            detail += f"; [red]differs from test_metrics.json:[/] {', '.join(map(str, differs))}"
        status = "planned" if self.dry_run else ("done" if done else "skipped")
        return StageResult("evaluate", status, detail, data={"run": str(root), "scored": done, "kept": kept})

    # -- predict ---------------------------------------------------------------------------------------

    def predict(self) -> StageResult:
        from emocli.runs import layout

        section = self.recipe.predict
        assert section is not None  # the loop only calls predict for recipes that have the section
        inputs = [self.where.data_folder / i for i in section.inputs]
        output = self.where.report / PREDICTIONS
        if self.dry_run:
            return StageResult("predict", "planned", f"{len(inputs)} input(s) -> {output}")
        missing = [i for i in inputs if not i.exists()]
        if missing:
            raise DatasetError(f"predict input not found at {missing[0]}")
        root = self._run_root()
        newest = max([w.stat().st_mtime for w in root.glob(f"seed=*/fold=*/{layout.WEIGHTS}")]
                     + [i.stat().st_mtime for i in inputs])
        if output.is_file() and output.stat().st_mtime >= newest:
            return StageResult("predict", "skipped", f"{output} is newer than the run and the inputs",
                               data={"output": str(output)})
        from emocli.prediction.outputs import write_predictions
        from emocli.prediction.predictor import predict

        result = predict(root, inputs, text=section.text, window_s=section.window_s, device=self.device)
        for failure in result.failures:
            self.console.print(f"[bold red]failed:[/] {failure}", highlight=False, soft_wrap=True)
        write_predictions(result, output)
        self._print_predictions(result)
        detail = f"{len(result.table)} segment(s) of {len(inputs)} input(s) -> {output}"
        if result.failures:
            detail += f"; {len(result.failures)} failure(s)"
        return StageResult("predict", "done", detail, data={"output": str(output), "failures": len(result.failures)})

    def _print_predictions(self, result: Any) -> None:
        from rich.table import Table

        table = Table(title=f"predictions ({result.unit})", title_justify="left")
        for column in ("input", "start s", "end s", "predicted", "probability"):
            table.add_column(column, justify="left" if column in ("input", "predicted") else "right")
        probabilities = result.probabilities
        for (_, row), probs in zip(result.table.iterrows(), probabilities):
            best = int(probs.argmax())
            table.add_row(Path(str(row["input"])).name, f"{row['start_s']:.2f}", f"{row['end_s']:.2f}",
                          result.classes[best], f"{probs[best]:.3f}")
        self.console.print(table)

    # -- comparison ------------------------------------------------------------------------------------

    def compare(self) -> tuple[dict[str, Any] | None, list[Comparison]]:
        """Mean ± std over the run's units of the first evaluated split, against the reference."""
        from emocli.runs import layout
        from emocli.runs.metrics import summarize

        measured = None
        if self.run_root is not None and self.run_root.is_dir():
            split = self.recipe.evaluate.splits[0]
            files = [u / f"evaluation-{split}.json" for u in layout.units(self.run_root)]
            if files and all(f.is_file() for f in files):
                measured = summarize([layout.read_json(f)["metrics"] for f in files])
        references = self.recipe.reference.metrics if self.recipe.reference else {}
        comparisons = []
        for metric, value in references.items():
            if measured is not None and metric not in measured["mean"]:
                raise ConfigError(f"recipe {self.recipe.name}: the reference metric {metric!r} is not measured; "
                                  f"measured: {', '.join(sorted(k for k in measured['mean'] if '.' not in k))}")
            if measured is None:
                comparisons.append(Comparison(metric, None, None, 0, value))
            else:
                comparisons.append(Comparison(metric, 100 * measured["mean"][metric], 100 * measured["std"][metric],
                                              measured["n"], value))
        return measured, comparisons


def _write_summary(result: PipelineResult) -> None:
    from emocli.runs import layout

    recipe = result.recipe
    result.locations.report.mkdir(parents=True, exist_ok=True)
    layout.write_json(result.locations.report / SUMMARY, {
        "recipe": recipe.name,
        "synthetic": recipe.synthetic,
        "dataset": recipe.dataset.name,
        "data": str(result.locations.data),
        "store": str(result.locations.store),
        "run": str(result.run_root) if result.run_root else None,
        "stages": [{"stage": s.stage, "status": s.status, "seconds": s.seconds, "detail": s.detail}
                   for s in result.stages],
        "measured": result.measured,
        "reference": recipe.reference.model_dump() if recipe.reference else None,
        "comparison": [{"metric": c.metric, "mean_pct": c.mean, "std_pct": c.std, "n": c.n,
                        "reference_pct": c.reference, "difference_pct": c.difference} for c in result.comparisons],
        "finished": datetime.now().isoformat(timespec="seconds"),
    })


def comparison_table(result: PipelineResult) -> Any:
    """A rich table: measured mean ± std (percent) against the paper's numbers, with the protocol note."""
    from rich.table import Table

    recipe = result.recipe
    reference = recipe.reference
    title = f"{recipe.name}: measured vs. reference"
    if recipe.synthetic:
        title += " [bold yellow](SYNTHETIC data)[/]"
    table = Table(title=title, title_justify="left", caption=_caption(result), caption_justify="left")
    for column in ("metric", "measured %", "n", "reference %", "difference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    if reference is None or not reference.metrics:
        # No paper number (e.g. the synthetic demo): the headline metrics alone.
        from emocli.runs.evaluation import HEADLINE

        if result.measured is not None:
            task = "single_label" if "accuracy" in result.measured["mean"] else "multi_label"
            for metric in HEADLINE[task]:
                mean, std = result.measured["mean"][metric], result.measured["std"][metric]
                table.add_row(metric, f"{100 * mean:.2f} ± {100 * std:.2f}", str(result.measured["n"]), "—", "—")
        return table
    for c in result.comparisons:
        if c.mean is None:
            table.add_row(c.metric, "not evaluated", "0", f"{c.reference:.2f}", "—")
            continue
        style = "green" if c.difference >= 0 else "red"
        table.add_row(c.metric, f"{c.mean:.2f} ± {c.std:.2f}", str(c.n), f"{c.reference:.2f}",
                      f"[{style}]{c.difference:+.2f}[/]")
    return table


def _caption(result: PipelineResult) -> str:
    reference = result.recipe.reference
    lines = []
    if reference is not None:
        lines.append(f"reference: {reference.source}")
        if reference.note:
            lines.append(f"our setting: {reference.note}")
    if result.run_root is not None:
        lines.append(f"run: {result.run_root}")
    return "\n".join(lines)
