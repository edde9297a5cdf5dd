"""`emo demo`: emo's shipped model on an example video made on the spot (a face and four spoken sentences,
emocli/example.py), with nothing downloaded; `emo demo --pipeline`: the whole pipeline (extract, train,
evaluate, predict) on a small SYNTHETIC corpus (emocli/demo.py, the recipe pipelines/demo.toml).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import typer

import emocli
from emocli.commands.options import between

# Written into the demo folder, so that a later `emo demo` only ever deletes a folder it made itself.
MARKER = ".emo-demo"
RECIPE = Path(emocli.__file__).resolve().parent.parent / "pipelines" / "demo.toml"


def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for the example, predictions and plot (or the "
                             "--pipeline corpus, store, runs and report)."),
    pipeline: bool = typer.Option(False, "--pipeline", help="Run extract -> train -> evaluate -> predict on a "
                                  "generated SYNTHETIC corpus instead."),
    model: str = typer.Option("emo-default", "--model", "-m", help="The model that predicts on the example."),
    keep: bool = typer.Option(
        False, "--keep", help="Reuse what an earlier demo left in --out (cached features, finished run) "
        "instead of starting afresh."
    ),
    clips: int = typer.Option(24, "--clips", callback=between(8, 1000),
                              help="Clips per emotion, from 8 to 1000 (4 emotions, 8 speakers; speaker 8 is the test set)."),
) -> None:
    """Predict the emotions of an example video with emo's shipped model (a face, and four sentences of
    different emotions spoken by a speech synthesiser), or with --pipeline run extract -> train -> evaluate
    -> predict on a generated SYNTHETIC corpus (a few minutes on a CPU; its numbers show that the pipeline
    works, nothing about emotion recognition; the real-data recipes are in pipelines/).
    """
    if not pipeline:
        _predict_example(out, model)
        return
    import torch
    from rich.console import Console

    from emocli.core.errors import ConfigError
    from emocli.demo import build_corpus
    from emocli.pipeline import comparison_table, load_recipe, run_pipeline

    if not RECIPE.is_file():
        raise ConfigError("emo demo runs the recipe of a source checkout, and this installation has none", path=RECIPE)
    # The demo's model and batches are tiny: intra-op threads buy nothing, and on a machine busy with other
    # work their spin-waiting made its training 15 times slower (161 s instead of 9 s on 2 shared cores).
    torch.set_num_threads(1)
    console = Console(stderr=True)
    if out.exists() and not keep:
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ConfigError("exists and was not made by `emo demo`; choose another --out", path=out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `emo demo`; `emo demo` without --keep deletes this folder\n")

    corpus = out / "corpus"
    manifest = corpus / "manifest.csv"
    console.rule("[bold yellow]SYNTHETIC DEMO CORPUS[/]")
    if manifest.is_file():
        console.print(f"[yellow]reusing the SYNTHETIC corpus in {corpus}[/]", highlight=False)
    else:
        console.print(f"[bold yellow]generating a SYNTHETIC corpus[/] ({4 * clips} clips: tones, drawn faces, "
                      f"template sentences; not real emotional data) in {corpus}", highlight=False)
        build_corpus(corpus, clips_per_emotion=clips, speakers=8, seed=0, videos=True)
    recipe = load_recipe(RECIPE)
    if recipe.predict is not None:
        write_transcripts(manifest, recipe.predict.inputs)

    result = run_pipeline(RECIPE, root=manifest, out=out, console=console)
    Console().print(comparison_table(result))
    where = result.locations
    console.print(f"corpus (SYNTHETIC): {corpus}\nfeature store:      {where.store}\n"
                  f"trained run:        {result.run_root}\nreport:             {where.report}", highlight=False)
    console.print("next: the real-data recipes, e.g. `emo run pipelines/ravdess-cfnsr.toml` (docs/PIPELINES.md)")


def write_transcripts(manifest: Path, inputs: list[str]) -> None:
    """Put each input video's transcript beside it (clip.mp4 -> clip.txt), where `emo predict` finds a
    user's transcripts; the manifest holds the texts."""
    wanted = {Path(i).as_posix() for i in inputs}
    with manifest.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("video") in wanted:
                (manifest.parent / row["video"]).with_suffix(".txt").write_text(row["text"] + "\n", encoding="utf-8")


def _predict_example(out: Path, model: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from emocli.api import load_predictor
    from emocli.commands.predict_cmd import _table
    from emocli.example import SCRIPT, write_example
    from emocli.prediction.outputs import plot_timeline, write_predictions

    console, errors = Console(), Console(stderr=True)
    example, spans = write_example(out / "example.mp4")
    script = Table(title=f"{example}: what is said, and the emotion each line was written with", title_justify="left")
    for column in ("seconds", "line", "written as"):
        script.add_column(column)
    for (start, end), line in zip(spans, SCRIPT):
        script.add_row(f"{start:.1f}-{end:.1f}", line.text, line.intended)
    console.print(script)
    predictor = load_predictor(model)
    errors.print(predictor.note, highlight=False, soft_wrap=True, markup=False)
    result = predictor.predict([example])
    console.print(_table(result, top_k=3))
    for failure in result.failures:
        errors.print(f"failed: {failure}", highlight=False, soft_wrap=True, markup=False)
    errors.print(f"predictions: {write_predictions(result, out / 'predictions.csv')}\n"
                 f"timeline:    {plot_timeline(result, out / 'timeline.png')}\n"
                 "next: emo predict your_video.mp4 --plot timeline.png (README.md)", highlight=False, markup=False)
