"""The `emo` command line: a thin layer over the Python API, one module per stage under commands/.

Heavy libraries (torch, transformers, opensmile, ...) are imported inside the commands, so that
`emo --help` answers at once.
"""

from __future__ import annotations

import sys

import typer

from emocli.commands import (
    baseline_cmd,
    bundle_cmd,
    crosscorpus_cmd,
    datasets_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    extract_cmd,
    models_cmd,
    predict_cmd,
    push_cmd,
    run_cmd,
    store_cmd,
    train_cmd,
    tune_cmd,
)

app = typer.Typer(
    name="emo",
    help="Multimodal emotion recognition: extract features, train and evaluate the registry models, "
    "predict on raw media.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        from emocli import __version__

        typer.echo(f"emo {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    context: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Multimodal emotion recognition: extract features, train and evaluate the registry models, predict on
    raw media."""
    from emocli.api import COMMAND_LINE

    token = COMMAND_LINE.set(True)  # errors name this command's options, not the Python API's arguments
    context.call_on_close(lambda: COMMAND_LINE.reset(token))


app.command("extract")(extract_cmd.extract)
app.command("train")(train_cmd.train)
app.command("tune")(tune_cmd.tune)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("baseline")(baseline_cmd.baseline)
app.command("cross-corpus")(crosscorpus_cmd.cross_corpus)
app.command("predict")(predict_cmd.predict)
app.command("export")(export_cmd.export)
app.command("push")(push_cmd.push)
app.command("bundle")(bundle_cmd.bundle)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("models")(models_cmd.models)
app.command("datasets")(datasets_cmd.datasets)
app.add_typer(store_cmd.app, name="store")


def main() -> None:
    """`emo`: errors of input, configuration or the file system are one line on stderr and exit code 2."""
    from emocli.core.errors import EmoError
    from emocli.core.terminal import tolerate_encoding

    tolerate_encoding()  # LANG=C or a pipe: a transcript's accents become '?' rather than a traceback
    try:
        app()
    except EmoError as error:
        _fail(str(error))
    except OSError as error:  # one no writer turned into an OutputError: still the file and the reason
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}")


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    from emocli.core.terminal import shown

    # escaped: a path or a library's message may hold brackets ("[Errno 28]", "seed=[1]") rich would parse;
    # shown: a file's name or content may hold escape sequences the terminal would obey
    Console(stderr=True).print(f"[bold red]error:[/] {escape(shown(message))}", highlight=False, soft_wrap=True)
    sys.exit(2)
