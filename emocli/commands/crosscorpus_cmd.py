"""`emo cross-corpus`: learners trained and tested across corpora (leave one corpus out) and within each."""

from __future__ import annotations

from pathlib import Path

import typer

from emocli.commands.train_cmd import _choices, _int_list


def cross_corpus(
    learners: list[str] = typer.Argument(..., help="'floor' (logistic regression) and/or registered models "
                                                   "(`emo models`), each through the same protocols."),
    features: Path | None = typer.Option(None, "--features", "-f",
                                         help="A store of several corpora (`emo extract --dataset corpora`); "
                                              "default: stores/corpora."),
    seeds: str = typer.Option("1", "--seeds", help="Comma-separated seeds (each carves its own validation speakers)."),
    protocol: list[str] = typer.Option(["loco", "within"], "--protocol",
                                       help="loco (leave one corpus out), within (each corpus's speaker folds, trained "
                                            "on it alone), speakers (its speaker folds, trained on everything else)."),
    corpus: list[str] = typer.Option([], "--corpus", help="Test only these corpora (repeatable); default: every one."),
    evaluate_only: list[str] = typer.Option([], "--evaluate-only", help="A corpus tested on and never trained on "
                                            "(one whose licence allows no training; repeatable)."),
    preset: str | None = typer.Option(None, "--preset", help="Training preset of the models (as `emo train`)."),
    overrides: list[str] = typer.Option([], "--set", help="Training setting of the models KEY=VALUE (as `emo train`)."),
    modalities: str | None = typer.Option(None, "--modalities", help="Comma-separated subset, e.g. audio."),
    feature: list[str] = typer.Option([], "--feature", help="modality=<feature set | extractor | preset>."),
    normalize_by: str = typer.Option("none", "--normalize-by",
                                     help="Standardise each corpus's or speaker's features by their own statistics "
                                          "(none, corpus, speaker) before learning; labels are not read."),
    out: Path = typer.Option(Path("runs/cross-corpus"), "--out", "-o", help="Folder for results.json, results.md "
                                                                             "and the models' units."),
) -> None:
    """Train and test across corpora: UAR on each corpus left out and within it.

    Example: emo cross-corpus floor mmer --preset ravdess-small-mmer --seeds 1,2,3
    """
    from rich.console import Console

    from emocli.api import cross_corpus as run

    report = run(
        learners, features, seeds=_int_list(seeds, "--seeds"), protocols=protocol, corpora=corpus or None,
        evaluate_only=evaluate_only,
        preset=preset, settings=overrides, modalities=modalities.split(",") if modalities else None,
        feature=_choices(feature), normalize_by=normalize_by, out=out,
    )
    console = Console()
    console.print((Path(out) / "results.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"results: {Path(out) / 'results.json'}", markup=False, highlight=False)
    del report
