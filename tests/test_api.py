"""The Python API as a script uses it: errors name the functions' arguments (the command line keeps its
options), and a script that starts worker processes without `if __name__ == "__main__":` gets an error, not
a deadlock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_training_data import make_store
from typer.testing import CliRunner

import emocli
from emocli.api import in_python_terms
from emocli.cli import app
from emocli.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_command_line_options_become_argument_names():
    assert in_python_terms("several feature stores fit mmer: a, b; choose one with --features") == \
        "several feature stores fit mmer: a, b; choose one with features="
    assert in_python_terms("choose one with --feature audio=<name or extractor>") == \
        'choose one with feature={"audio": "<name or extractor>"}'
    assert in_python_terms("lower batch_size (--set batch_size=N)") == 'lower batch_size (settings=["batch_size=N"])'
    assert in_python_terms("train on the others (--modalities audio,text)") == \
        "train on the others (modalities=['audio', 'text'])"
    assert in_python_terms("--device 'tpu': not a device; use --device cpu") == "device='tpu': not a device; use device=cpu"
    assert in_python_terms("drop --folds to use its split; pip install --no-deps x") == \
        "drop folds= to use its split; pip install --no-deps x"  # only emo's own options change


def test_api_errors_name_arguments_and_the_cli_names_options(tmp_path, monkeypatch):
    for name in ("a", "b"):
        make_store(tmp_path / "stores" / name, n=24, kinds=("vector", "vector"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"several feature stores under stores/ fit mmer: .*choose one with features=$"):
        emocli.train("mmer")
    with pytest.raises(ConfigError, match=r"folds=: the dataset has no fold 7"):
        emocli.train("mmer", features="stores/a", folds=[7], settings=["epochs=1"])
    result = CliRunner().invoke(app, ["train", "mmer", "--features", "stores/a", "--folds", "7"])
    assert result.exit_code != 0 and "--folds: the dataset has no fold 7" in str(result.exception)
    with pytest.raises(ConfigError, match=r"folds=: the dataset has no fold 7"):  # the CLI's call left no trace
        emocli.train("mmer", features="stores/a", folds=[7], settings=["epochs=1"])


def test_a_store_without_a_train_split_says_how_to_give_one(tmp_path):
    store = make_store(tmp_path / "store", n=24, kinds=("vector", "vector"))  # folds, but no split column
    with pytest.raises(ConfigError, match=r"no train split \(it has folds: use folds=all, or a fold\)"):
        emocli.train("mmer", features=store.path, settings=["epochs=1"])


@pytest.mark.slow
def test_an_unguarded_script_with_worker_processes_fails_instead_of_waiting_forever(tmp_path):
    from emocli.demo import build_corpus

    build_corpus(tmp_path / "my_data", clips_per_emotion=2, speakers=2, seed=0, videos=False)
    script = tmp_path / "unguarded.py"
    script.write_text('import emocli\n\nemocli.extract("manifest", root="my_data/manifest.csv", audio=["mfcc"], '
                      'workers=1, progress=False)\nprint("extracted")\n')
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and "extracted" not in done.stdout
    assert "the worker processes died while starting; run with workers=0 to see why" in done.stderr
    assert "emocli.extract was called while a worker process re-ran the script" in done.stderr  # the worker's own
    guarded = tmp_path / "guarded.py"
    guarded.write_text('import emocli\n\nif __name__ == "__main__":\n    emocli.extract("manifest", '
                       'root="my_data/manifest.csv", audio=["mfcc"], workers=1, progress=False)\n    print("extracted")\n')
    done = subprocess.run([sys.executable, str(guarded)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "extracted" in done.stdout
