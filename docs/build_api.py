"""The API reference: HTML pages from emocli's docstrings, rendered by pdoc (https://pdoc.dev), into site/.

    python docs/build_api.py [--out site]

`make docs` runs it, and `make test` too, because a reference that builds broken is only seen when someone
opens it: any warning pdoc raises (a module that does not import, an `__all__` entry that does not resolve)
fails the build with the warning's text, and so does a docstring whose `<name>` the Markdown renderer took
for an HTML tag (its text vanishes from the page; write it in backticks).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

# The library, stage by stage; `emocli` itself brings its subpackages datasets, models and prediction. The CLI (emocli.cli, emocli.commands) is documented by `emo --help`.
MODULES = ("emocli", "emocli.api", "emocli.core", "emocli.features", "emocli.data", "emocli.runs",
           "emocli.training", "emocli.pipeline")


# The elements pdoc's templates and its Markdown renderer write; any other start tag in a page is docstring
# text taken for HTML.
RENDERED_TAGS = frozenset(
    "a b blockquote body br code dd del div dl dt em footer h1 h2 h3 h4 h5 h6 head hr html i img input kbd label "
    "li link main meta nav ol p path pre script section span strong style sub sup svg table tbody td th thead "
    "title tr ul wbr".split()
)


class BrokenReference(Exception):
    """The reference did not build cleanly."""


class _StartTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)


def swallowed_tags(page: Path) -> set[str]:
    """Start tags in `page` that no renderer wrote: docstring text such as `<unit>` taken for HTML."""
    parser = _StartTags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tags - RENDERED_TAGS


def bind_lazy_api() -> None:
    """pdoc reads a module's members from its __dict__, where emocli's API (imported on first use by its
    __getattr__) is not: put it there, so that the `emocli` page documents the functions."""
    import emocli

    for subpackage in ("datasets", "models", "prediction"):
        importlib.import_module(f"emocli.{subpackage}")
    vars(emocli).update({name: emocli.__getattr__(name) for name in emocli.__all__})


def build(out: Path, modules: Sequence[str] = MODULES) -> list[Path]:
    """Render `modules` and their submodules into `out`; the pages written. BrokenReference when a module
    does not import, pdoc warns, or a page shows docstring text taken for HTML."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="markdown", footer_text=f"emo {_version()}", show_source=False)
    if "emocli" in modules:
        bind_lazy_api()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pdoc.pdoc(*modules, output_directory=out)
        except RuntimeError as error:  # pdoc's "Error importing M", from the import's own exception
            raise BrokenReference(f"{error}: {error.__cause__!r}") from error
    pdoc_folder = Path(pdoc.__file__).parent
    problems = [str(w.message) for w in caught if Path(w.filename).is_relative_to(pdoc_folder)]
    pages = sorted(out.rglob("*.html"))
    for page in pages:
        if tags := swallowed_tags(page):
            listed = ", ".join(f"<{tag}>" for tag in sorted(tags))
            problems.append(f"{page.relative_to(out)}: docstring text taken for HTML ({listed}); write it in backticks")
    if problems:
        raise BrokenReference("the API reference does not build cleanly:\n" + "\n".join(problems))
    return pages


def _version() -> str:
    import emocli

    return emocli.__version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("site"), help="Folder for the HTML (default: site).")
    args = parser.parse_args(argv)
    try:
        pages = build(args.out)
    except BrokenReference as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"API reference: {len(pages)} pages in {args.out}/ (open {args.out / 'index.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
