"""The README's Python example runs as written: in a fresh folder holding the files it names (interview.mp4,
my_data/manifest.csv), made here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emocli.runs.hub import pretrained_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    (block,) = re.findall(r"## In Python\n\n```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return block


@pytest.mark.skipif(not (pretrained_folder("emo-default") / "bundle.json").is_file(),
                    reason="emocli/pretrained/emo-default is built by `make pretrained`")
def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("espeakng_loader", reason="the example's speech synthesiser, installed by make install")
    from emocli.demo import build_corpus
    from emocli.example import write_example

    write_example(tmp_path / "interview.mp4")
    build_corpus(tmp_path / "my_data", clips_per_emotion=8, speakers=8, seed=0, videos=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(python_example(), str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert "get out" in "\n".join(printed).lower()  # the transcript of the interview's last sentence
    assert 0.0 <= float(printed[-1]) <= 1.0  # the trained run's test accuracy
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("mmer-manifest") and (tmp_path / "stores" / "manifest" / "samples.parquet").is_file()


def test_the_api_names_stay_functions_once_every_subpackage_is_imported():
    """A subpackage named as an API function would replace it on import (emocli.predict was one)."""
    import importlib
    import pkgutil

    import emocli

    for module in pkgutil.iter_modules(emocli.__path__, "emocli."):
        if module.ispkg:
            importlib.import_module(module.name)
    assert all(callable(getattr(emocli, name)) for name in emocli.__all__)
    assert "mmer" in {entry["name"] for entry in emocli.list_models()} and "meld" in emocli.list_datasets()
