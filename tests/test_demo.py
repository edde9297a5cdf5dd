"""`emo demo`: the SYNTHETIC corpus through extract, train, evaluate and predict, with nothing downloaded."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from emocli.commands import demo_cmd
from emocli.pipeline import STAGE_LOG, SUMMARY


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("demo")(demo_cmd.demo)
    app.command("unused")(lambda: None)  # two commands: Typer keeps the subcommand name
    return app


def statuses(report) -> list[tuple[str, str]]:
    return [(r["stage"], r["status"]) for r in map(json.loads, (report / STAGE_LOG).read_text().splitlines())]


def test_demo_runs_every_stage_and_keep_reuses_it(app, tmp_path):
    out = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--pipeline", "--out", str(out), "--clips", "8"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    report = out / "report"
    assert statuses(report) == [("extract", "done"), ("train", "done"), ("evaluate", "done"), ("predict", "done")]

    manifest = pd.read_csv(out / "corpus" / "manifest.csv")
    predictions = pd.read_csv(report / "predictions.csv")
    assert list(predictions["input"].map(lambda p: p.rsplit("/", 1)[-1])) == ["happy_007.mp4"]
    assert predictions["label"].iloc[0] in set(manifest["label"])
    probabilities = predictions[[f"prob_{c}" for c in sorted(set(manifest["label"]))]].to_numpy()
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    # The predicted clip's transcript was put beside it, where predict looks for a user's transcript.
    text = manifest.set_index("sample_id").loc["happy_007", "text"]
    assert (out / "corpus" / "video" / "happy_007.txt").read_text().strip() == text
    assert predictions["text"].iloc[0] == text

    summary = json.loads((report / SUMMARY).read_text())
    assert summary["synthetic"] is True and summary["reference"] is None
    test_ids = set(manifest.loc[manifest["split"] == "test", "sample_id"])
    assert summary["measured"]["n"] == 1 and 0 <= summary["measured"]["mean"]["accuracy"] <= 1
    (unit,) = list((out / "runs").glob("*/seed=*/fold=*"))
    assert set(json.loads((unit / "splits.json").read_text())["test"]) == test_ids

    weights = (unit / "model.safetensors").stat().st_mtime_ns
    again = runner.invoke(app, ["demo", "--pipeline", "--out", str(out), "--clips", "8", "--keep"])
    assert again.exit_code == 0, again.output
    assert statuses(report)[4:] == [("extract", "skipped"), ("train", "skipped"), ("evaluate", "skipped"),
                                    ("predict", "skipped")]
    assert (unit / "model.safetensors").stat().st_mtime_ns == weights


def test_demo_never_deletes_a_folder_it_did_not_make(app, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    result = CliRunner().invoke(app, ["demo", "--pipeline", "--out", str(precious)])
    assert result.exit_code != 0
    assert "was not made by `emo demo`" in str(result.exception)
    assert (precious / "thesis.tex").is_file()
