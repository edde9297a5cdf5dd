"""`emo push`: a run folder (or one unit) with its model card to a Hugging Face hub model repository."""

from __future__ import annotations

from pathlib import Path

import typer


def push(
    run: Path = typer.Argument(..., help="A run directory or one seed=S/fold=K unit (its README.md is the model card)."),
    repo_id: str = typer.Argument(..., help="The hub repository, owner/name (created when missing)."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to push to (default: main)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    token: str | None = typer.Option(None, "--token", envvar="HF_TOKEN", help="Hub token (default: $HF_TOKEN or the login)."),
) -> None:
    """Upload a trained run for others to predict with: `emo predict --model owner/name clip.mp4`.
    The resumable checkpoint and trackers' logs stay behind; weights are safetensors, the rest JSON."""
    from rich.console import Console

    from emocli.runs.hub import push as push_run

    url = push_run(run, repo_id, revision=revision, private=private, token=token)
    Console(stderr=True).print(f"pushed {run} to {url}", highlight=False, soft_wrap=True)
