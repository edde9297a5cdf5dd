"""docs/build_api.py, the API reference `make docs` and `make test` build: it fails on what would make a page
broken (a module that does not import, docstring text taken for HTML) and renders what a module documents.
The whole reference is built by `make test` itself (about 20 s), not here: these build small packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

REPO = Path(__file__).resolve().parents[1]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_api", REPO / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_api = _load_builder()


def _package(root: Path, name: str, files: dict[str, str]) -> str:
    for filename, source in files.items():
        path = root / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return name


@pytest.fixture
def site_packages(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield tmp_path / "src"
    for name in [m for m in sys.modules if m.startswith("docs_probe")]:
        del sys.modules[name]


def test_a_clean_package_renders_its_functions_and_docstrings(site_packages, tmp_path):
    _package(site_packages, "docs_probe_clean", {
        "__init__.py": '"""A probe package."""\n',
        "api.py": 'def predict(inputs: list[str], window: float = 4.0) -> int:\n'
                  '    """Emotions of raw media, writes `<unit>/confusion-<split>.png`."""\n    return 0\n',
    })
    pages = build_api.build(tmp_path / "site", ["docs_probe_clean"])
    api = (tmp_path / "site" / "docs_probe_clean" / "api.html").read_text()
    assert {p.name for p in pages} >= {"docs_probe_clean.html", "api.html"}
    assert "Emotions of raw media" in api and "window" in api
    assert "&lt;unit&gt;/confusion-&lt;split&gt;.png" in api  # in backticks, the placeholder is shown


def test_a_submodule_that_does_not_import_fails_the_build(site_packages, tmp_path):
    _package(site_packages, "docs_probe_broken", {
        "__init__.py": '"""A probe package."""\n',
        "sub.py": "import docs_probe_no_such_module\n",
    })
    with pytest.raises(build_api.BrokenReference, match="docs_probe_broken.sub"):
        build_api.build(tmp_path / "site", ["docs_probe_broken"])


def test_an_all_entry_that_does_not_resolve_fails_the_build(site_packages, tmp_path):
    _package(site_packages, "docs_probe_all", {"__init__.py": '"""A probe package."""\n__all__ = ["predict"]\n'})
    with pytest.raises(build_api.BrokenReference, match="'predict' in docs_probe_all.__all__"):
        build_api.build(tmp_path / "site", ["docs_probe_all"])


def test_docstring_text_taken_for_html_fails_the_build_naming_the_page(site_packages, tmp_path):
    _package(site_packages, "docs_probe_tags", {
        "__init__.py": '"""A probe package."""\n',
        "runs.py": 'def evaluate() -> None:\n    """Writes <unit>/confusion-<split>.png."""\n',
    })
    with pytest.raises(build_api.BrokenReference, match=r"docs_probe_tags/runs\.html.*<split>, <unit>"):
        build_api.build(tmp_path / "site", ["docs_probe_tags"])


def test_the_elements_pdoc_writes_are_not_reported(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<html><body><nav><a href="#">x</a></nav><pre><code>&lt;unit&gt;</code></pre>'
                    '<svg><path d=""/></svg><video src="a.mp4"></video></body></html>')
    assert build_api.swallowed_tags(page) == {"video"}
