"""Pipelines: every recipe in pipelines/ is valid, data roots resolve and fail clearly, and a run that is
interrupted and started again redoes no finished stage (on a tiny generated corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emocli.core.errors import ConfigError, DatasetError
from emocli.datasets.home import root_variable
from emocli.pipeline import STAGE_LOG, SUMMARY, check_data, load_recipe, locate, run_pipeline
from emocli.runs import layout

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "pipelines").glob("*.toml"))
REQUIRED = {"ravdess-cfnsr", "ravdess-smile", "ravdess-mmer", "ravdess-spikemo", "meld-spikemo-text",
            "mosei-smile", "mosei-mmer", "nemu-smile", "iemocap-spikemo", "demo"}


def test_the_required_recipes_exist():
    assert REQUIRED <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid(path):
    from emocli.datasets import ADAPTERS
    from emocli.features.presets import resolve_preset
    from emocli.training.config import resolve_config

    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.dataset.name in ADAPTERS
    for choice in recipe.extract.audio + recipe.extract.text + recipe.extract.visual:
        resolve_preset(choice)  # raises for an unknown preset or extractor
    section = recipe.train
    config = resolve_config(section.model, section.preset, section.set, seeds=section.seeds, folds=section.folds,
                            modalities=section.modalities, protocol=section.protocol)
    assert config.model == section.model
    if recipe.synthetic:
        assert recipe.reference is None  # no paper number to compare a generated corpus with
    else:
        assert recipe.reference is not None and recipe.reference.metrics and recipe.reference.note
        assert all(0 < value < 100 for value in recipe.reference.metrics.values())  # percent


def test_references_carry_the_papers_numbers():
    references = {p.stem: load_recipe(p).reference for p in RECIPES}
    assert references["ravdess-cfnsr"].metrics == {"accuracy": 75.76}
    assert references["meld-spikemo-text"].metrics == {"weighted_f1": 59.56}
    assert references["mosei-smile"].metrics == {"jaccard_accuracy": 48.7, "micro_f1": 57.6, "macro_f1": 40.0}
    assert references["mosei-mmer"].metrics == {"jaccard_accuracy": 48.4, "micro_f1": 56.9, "macro_f1": 41.7}
    assert references["nemu-smile"].metrics == {"jaccard_accuracy": 32.0, "micro_f1": 51.3, "macro_f1": 49.2}
    assert references["iemocap-spikemo"].metrics == {"weighted_f1": 71.50}


def test_root_from_option_then_environment_then_recipe(tmp_path, monkeypatch):
    path = REPO / "pipelines" / "ravdess-cfnsr.toml"
    recipe = load_recipe(path)
    monkeypatch.delenv(root_variable("ravdess"), raising=False)
    assert locate(recipe, path).data.resolve() == (REPO / recipe.dataset.root).resolve()
    monkeypatch.setenv("EMO_RAVDESS_ROOT", str(tmp_path / "env"))
    assert locate(recipe, path).data == tmp_path / "env"
    where = locate(recipe, path, root=tmp_path / "option", out=tmp_path / "out")
    assert where.data == tmp_path / "option" and where.data_origin == "--root"
    assert where.store == tmp_path / "out" / "stores" / "ravdess"
    assert where.report == tmp_path / "out" / "reports" / "ravdess-cfnsr"


@pytest.mark.parametrize("name", ["mosei-smile", "nemu-smile", "iemocap-spikemo"])
def test_missing_data_fails_naming_the_path(name, tmp_path, monkeypatch):
    path = REPO / "pipelines" / f"{name}.toml"
    recipe = load_recipe(path)
    monkeypatch.delenv(root_variable(recipe.dataset.name), raising=False)
    with pytest.raises(DatasetError, match=r"data not found at .*--root DIR or set EMO_"):
        run_pipeline(path, root=tmp_path / "absent", out=tmp_path)
    assert not (tmp_path / "stores").exists()  # nothing was written before the check
    (tmp_path / "partial").mkdir()  # the folder exists, the file a recipe requires does not
    if recipe.dataset.requires:
        with pytest.raises(DatasetError, match=f"data not found at .*{recipe.dataset.requires[0]}"):
            check_data(recipe, locate(recipe, path, root=tmp_path / "partial"))


def test_invalid_recipes_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[dataset]\nname = "ravdess"\nroot = "x"\n[train]\nmodel = "cfnsr"\nepochs = 3\n'
                   '[outputs]\nstore = "s"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*train\.epochs"):
        load_recipe(bad)
    bad.write_text("name = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="unknown stage"):
        run_pipeline(REPO / "pipelines" / "demo.toml", stages=["fit"])


# ------------------------------------------------------------------------------ a tiny recipe, end to end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from emocli.demo import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"), clips_per_emotion=8, speakers=4, videos=False)


def tiny_recipe(folder: Path) -> Path:
    recipe = folder / "tiny.toml"
    recipe.write_text(
        'name = "tiny"\nsynthetic = true\n'
        '[dataset]\nname = "manifest"\nroot = "corpus/manifest.csv"\n'
        '[extract]\naudio = ["egemaps"]\nworkers = 0\n'
        '[train]\nmodel = "cfnsr"\npreset = "cfnsr"\nseeds = [1]\n'
        'set = ["epochs=2", "batch_size=8", "model.video_dim=16", "model.transformer_layers=1", '
        '"model.transformer_heads=2"]\n'
        '[outputs]\nstore = "store"\nruns = "runs"\n'
        '[reference]\nsource = "none: a test"\nnote = "generated tones"\nmetrics = { accuracy = 50.0 }\n'
    )
    return recipe


def stage_log(report: Path) -> list[dict]:
    return [json.loads(line) for line in (report / STAGE_LOG).read_text().splitlines()]


def mtimes(folder: Path, pattern: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.glob(pattern)}


def test_interrupted_run_redoes_no_finished_stage(corpus, tmp_path, monkeypatch):

    recipe = tiny_recipe(tmp_path)
    out = tmp_path / "out"

    def interrupt(root):
        raise KeyboardInterrupt  # what Ctrl-C raises

    # Interrupted as evaluation starts, after extract and train finished: the evaluate stage lists the
    # run's units first, which training never does.
    with monkeypatch.context() as patch:
        patch.setattr(layout, "units", interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(recipe, root=corpus, out=out)
    report = out / "reports" / "tiny"
    first = stage_log(report)
    assert [(r["stage"], r["status"]) for r in first] == [("extract", "done"), ("train", "done"),
                                                          ("evaluate", "interrupted")]
    parts = mtimes(out / "store", "*/parts/*.parquet")
    weights = mtimes(out / "runs", "*/seed=*/fold=*/model.safetensors")
    assert parts and len(weights) == 1

    result = run_pipeline(recipe, root=corpus, out=out)
    second = stage_log(report)[len(first):]
    assert [(r["stage"], r["status"]) for r in second] == [("extract", "skipped"), ("train", "skipped"),
                                                           ("evaluate", "done")]
    assert all(v["extracted"] == 0 and v["cached"] == len(corpus_rows(corpus))
               for v in second[0]["feature_sets"].values())
    assert mtimes(out / "store", "*/parts/*.parquet") == parts
    assert mtimes(out / "runs", "*/seed=*/fold=*/model.safetensors") == weights
    evaluations = mtimes(out / "runs", "*/seed=*/fold=*/evaluation-test.json")
    assert len(evaluations) == 1

    # Measured numbers against the reference, in percent, from the evaluation just written.
    (unit,) = [p.parent for p in evaluations]
    accuracy = json.loads((unit / "evaluation-test.json").read_text())["metrics"]["accuracy"]
    (comparison,) = result.comparisons
    assert comparison.metric == "accuracy" and comparison.n == 1
    assert comparison.mean == pytest.approx(100 * accuracy)
    assert comparison.difference == pytest.approx(100 * accuracy - 50.0)
    summary = json.loads((report / SUMMARY).read_text())
    assert summary["comparison"][0]["reference_pct"] == 50.0 and summary["synthetic"] is True

    # A third run does nothing at all.
    run_pipeline(recipe, root=corpus, out=out)
    third = stage_log(report)[len(first) + len(second):]
    assert [r["status"] for r in third] == ["skipped", "skipped", "skipped"]
    assert mtimes(out / "runs", "*/seed=*/fold=*/evaluation-test.json") == evaluations


def corpus_rows(manifest: Path) -> list[str]:
    return manifest.read_text().splitlines()[1:]


def test_cli_dry_run_and_stage_selection(corpus, tmp_path):
    from emocli.commands import run_cmd

    app = typer.Typer()
    app.command("run")(run_cmd.run)
    app.command("unused")(lambda: None)  # two commands: Typer keeps the subcommand name
    recipe, out = tiny_recipe(tmp_path), tmp_path / "out"
    runner = CliRunner()

    dry = runner.invoke(app, ["run", str(recipe), "--root", str(corpus), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "0/32 held" in dry.output and not out.exists()

    extract = runner.invoke(app, ["run", str(recipe), "--root", str(corpus), "--out", str(out), "--stage", "extract"])
    assert extract.exit_code == 0, extract.output
    assert (out / "store" / "samples.parquet").is_file() and not (out / "runs").exists()
    assert "not evaluated" in extract.output  # the comparison table, before any evaluation

    dry = runner.invoke(app, ["run", str(recipe), "--root", str(corpus), "--out", str(out), "--dry-run"])
    assert "32/32 held" in dry.output and "0/1 units finished" in dry.output

    # --set overrides the recipe's training configuration, which then is a run of its own.
    from emocli.runs import layout

    args = ["run", str(recipe), "--root", str(corpus), "--out", str(out)]
    trained = runner.invoke(app, [*args, "--stage", "train", "--set", "epochs=1"])
    assert trained.exit_code == 0, trained.output
    (unit,) = (out / "runs").glob("*/seed=1/fold=*")
    assert layout.read_json(unit / layout.CONFIG)["train"]["epochs"] == 1 and len(layout.read_jsonl(unit / layout.METRICS)) == 1
    assert "0/1 units finished" in runner.invoke(app, [*args, "--dry-run"]).output  # the recipe's 2 epochs
    assert "1/1 units finished" in runner.invoke(app, [*args, "--dry-run", "--set", "epochs=1"]).output
