"""`emo datasets`: the adapters, their licences, how each is obtained and what `emo extract` reads by
default; `emo datasets NAME` for one dataset's files and folder, `--download` to fetch them."""

from __future__ import annotations

from pathlib import Path

import typer


def datasets(
    name: str | None = typer.Argument(None, help="One dataset: its files, checksums, folder and licence."),
    root: Path | None = typer.Option(None, "--root", help="With NAME: the dataset's folder (default: the data home)."),
    download: bool = typer.Option(False, "--download", help="With NAME: fetch its public files that are missing."),
    all_files: bool = typer.Option(
        False, "--all", help="With --download: also the optional files (e.g. MELD's videos)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """List the dataset adapters: what each reads, its licence, how to get it and its default extraction.

    Example: emo datasets meld --download    (fetches MELD's annotation CSVs into the data home)
    """
    from rich.console import Console

    console = Console()
    if name is None:
        if download or root is not None:
            raise typer.BadParameter("--download and --root need a dataset NAME", param_hint="NAME")
        _overview(console)
        return
    from emocli.datasets import adapter_class
    from emocli.datasets.home import locate_dataset

    adapter = adapter_class(name)
    location = locate_dataset(name, root)
    if download:
        _download(adapter, location, all_files, quiet)
    _details(adapter, location, console)


def _licence(adapter) -> str:
    return f"{adapter.licence.name}: {adapter.licence.meaning}" if adapter.licence else "yours"


def _defaults(adapter) -> str:
    return ", ".join(f"{d.modality} {d.preset}" for d in adapter.default_extraction) or "its shipped features"


def _obtained(adapter) -> str:
    from emocli.datasets.download import describe_files

    ways = []
    required = [f for f in adapter.remote_files if not f.optional]
    optional = [f for f in adapter.remote_files if f.optional]
    if required:
        ways.append(f"download: {describe_files(required)}")
    if optional:
        ways.append(f"optional download: {describe_files(optional)}")
    if adapter.gated is not None:
        ways.append(f"on request: {adapter.gated.request_url}")
    return "; ".join(ways) or "your own files (--root)"


def _overview(console) -> None:
    from emocli.datasets import ADAPTERS, adapter_class
    from emocli.datasets.home import DATA_VARIABLE, data_home

    # One block per dataset rather than a table: licences and URLs stay whole at any terminal width.
    for name in ADAPTERS:
        adapter = adapter_class(name)
        console.print(f"[bold]{name}[/]  {adapter.summary}", highlight=False, soft_wrap=True)
        for label, value in (
            ("reads", adapter.needs_on_disk),
            ("licence", _licence(adapter)),
            ("get it", _obtained(adapter)),
            ("default extraction", _defaults(adapter)),
        ):
            console.print(f"  {label}: {value}", highlight=False, soft_wrap=True)
    home, origin = data_home()
    console.print(
        f"data home: {home} (from {origin}). A dataset's folder is --root, else $EMO_<NAME>_ROOT, else "
        f"<data home>/<name>; set ${DATA_VARIABLE} to move the data home. `emo datasets NAME`: its files and folder.",
        highlight=False,
        soft_wrap=True,
    )


def _download(adapter, location, all_files: bool, quiet: bool) -> None:
    from rich.console import Console

    from emocli.datasets.download import describe_files, install_dataset, missing_files

    errors = Console(stderr=True)
    wanted = missing_files(adapter.remote_files, location.path, include_optional=all_files)
    if not wanted:
        what = "nothing public to download" if not adapter.remote_files else "every file is in place"
        errors.print(f"{adapter.name}: {what} ({location.path})", highlight=False)
        return
    errors.print(
        f"{adapter.name}: downloading {describe_files(wanted)} into {location.path} ({location.describe()})",
        highlight=False,
        soft_wrap=True,
    )
    install_dataset(adapter, wanted, location.path, progress=not quiet, console=errors)


def _details(adapter, location, console) -> None:
    from emocli.datasets.download import describe_size, foreign_entries, gated_message, mismatch, missing_files

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    say(f"[bold]{adapter.name}[/]: {adapter.summary}")
    if adapter.licence is not None:
        say(f"licence: {_licence(adapter)} ({adapter.licence.url})")
    folder = location.path
    if not folder.exists():
        state = "absent"
    elif missing_files(adapter.remote_files, folder) and not foreign_entries(adapter.remote_files, folder):
        state = f"incomplete: `emo datasets {adapter.name} --download` fetches the rest"
    else:
        state = "present"
    say(f"folder: {folder} ({location.describe()}): {state}")
    say(f"reads: {adapter.needs_on_disk}")
    say(f"default extraction: {_defaults(adapter)}")
    for name, option in adapter.Options.model_fields.items():  # --option NAME=VALUE of emo extract
        say(f"option {name} (default {option.default!r}): {' '.join((option.description or '').split())}")
    for f in adapter.remote_files:
        problem = mismatch(f, folder)  # a copy cut short is never "in place"
        in_place = f"not in place: it {problem}" if problem else "in place" if (folder / f.installed_name).exists() \
            else "not in place"
        say(f"file: {f.name}, {describe_size(f)}{' (optional)' if f.optional else ''}, {in_place}: {f.description}")
        say(f"  from {f.url}")
        if f.checksum is not None:
            check = f"{f.checksum.algorithm} {f.checksum.value} ({f.checksum.source})"
        else:
            check = ("no checksum published: the size is checked" if f.size is not None else
                     "no size or checksum published: the unpacked files are checked")
        say(f"  {check}")
    if adapter.gated is not None:
        say(gated_message(adapter, folder))
