"""The README as a new user follows it: every command of its shell blocks, in order, then its Python block
saved as a script and run with `python`, all in one fresh folder, each in its own process.

The folder holds what the README names: interview.mp4 and clip.mp4 (eSpeak NG's speech over a face,
emocli.example: the training flow ends in a prediction on this new video), my_data/manifest.csv (the
synthetic demo corpus, with its split column), and, as $EMO_RAVDESS_ROOT, a neutral and an angry clip of
each actor of the real RAVDESS speech (48 of its 1440 clips: the suite's time) with its OpenFace table, so
that the default extraction adds the action units as it does for a user; skipped without the shared data. Not run here: the install
commands (`make demo`, `make test` and the by-hand `pip install` lines: `make test` runs this suite, and
benchmarks/install.py runs `make demo` from nothing), and `source .venv/bin/activate` (this interpreter's
environment is the one activated).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emocli.runs.hub import pretrained_folder

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ACTIVATE = "source .venv/bin/activate"
INSTALL = ("make ", "pip ")
RAVDESS_EMOTIONS = {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}

needs_shipped_model = pytest.mark.skipif(not (pretrained_folder("emo-default") / "bundle.json").is_file(),
                                         reason="emocli/pretrained/emo-default is built by `make pretrained`")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)


def shell_commands() -> list[str]:
    """Each command line of the README's bash blocks, in order (bash reads the comments after them)."""
    lines = [line for block in code_blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_commands_are_install_lines_then_emo_commands():
    """What the README test leaves out is only what its docstring names."""
    commands = shell_commands()
    installing = [c for c in commands if c.startswith(INSTALL)]
    assert [c.split()[:2] for c in installing[:2]] == [["make", "demo"], ["make", "test"]]
    assert commands[: len(installing)] == installing  # install lines first, the rest runs
    assert all(c == ACTIVATE or c.startswith("emo ") for c in commands[len(installing):])
    assert len(code_blocks("python")) == 1


def ravdess_subset(ravdess_root: Path, folder: Path) -> Path:
    """A neutral (01) and an angry (05) clip of each actor (normal intensity, first statement and
    repetition), as links."""
    for clip in sorted((ravdess_root / "audio").glob("Actor_*/03-01-0[15]-01-01-01-??.flac")):
        target = folder / clip.parent.name / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(clip)
    (folder / "openface_au.parquet").symlink_to(ravdess_root / "openface_au.parquet")
    return folder


def run(command: list[str], folder: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@needs_shipped_model
@pytest.mark.slow
@pytest.mark.realdata
def test_every_readme_command_and_the_python_example_run_as_pasted(ravdess_root, tmp_path):
    pytest.importorskip("espeakng_loader", reason="the example videos' speech synthesiser, installed by make install")
    from emocli.demo import build_corpus
    from emocli.example import SCRIPT, write_example

    folder = tmp_path / "user"
    folder.mkdir()
    write_example(folder / "interview.mp4")
    write_example(folder / "clip.mp4", lines=SCRIPT[3:])  # a new video: one angry sentence
    build_corpus(folder / "my_data", clips_per_emotion=6, speakers=6, seed=0, videos=False)  # 16 to train on
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "EMO_RAVDESS_ROOT": str(ravdess_subset(ravdess_root, tmp_path / "ravdess")),
           "EMO_DATA": str(tmp_path / "data-home"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}

    printed = {}
    for command in shell_commands():
        if command == ACTIVATE or command.startswith(INSTALL):
            continue
        if "<stamp>" in command:
            (run_folder,) = (folder / "runs").glob("mmer-ravdess-*")
            command = command.replace("runs/mmer-ravdess-<stamp>", str(run_folder.relative_to(folder)))
        printed[command.split("#")[0].strip()] = run(["bash", "-c", command], folder, env)
    outputs = list(printed.items())

    # Predict on your own media: the shipped model, a timeline and a table; then words alone.
    predictions = pd.read_csv(folder / "predictions.csv")
    assert "get out" in " ".join(predictions["text"].str.lower()) and (folder / "timeline.png").stat().st_size > 10_000
    text_only = next(out for command, out in outputs if command.startswith("emo predict --text"))
    labels = json.loads((pretrained_folder("emo-default") / "bundle.json").read_text())["labels"]
    assert "│ --text" in text_only and any(f" {label} " in text_only for label in labels), text_only
    # Train on a dataset: the one store found, audio only, five folds, evaluated and predicting on clip.mp4.
    extracted = next(out for command, out in outputs if command.startswith("emo extract"))
    assert "whisper" in extracted and "openface" in extracted  # the action units came along
    assert "the one store under stores/" in next(out for command, out in outputs if command.startswith("emo baseline"))
    (run_folder,) = (folder / "runs").glob("mmer-ravdess-*")
    results = json.loads((run_folder / "results.json").read_text())
    assert len(results["units"]) == 5 and results["summary"]["n"] == 5
    assert len(list(run_folder.glob("seed=1/fold=*/confusion-test.png"))) == 5
    spec = json.loads((run_folder / "seed=1" / "fold=0" / "feature_spec.json").read_text())
    assert list(spec["inputs"]) == ["audio"]
    predicted = next(out for command, out in outputs if command.startswith("emo predict --model"))
    assert "clip.mp4" in predicted and any(emotion in predicted for emotion in RAVDESS_EMOTIONS), predicted

    # In Python: the block as a script, in the same folder (stores/ravdess is there too).
    script = folder / "example.py"
    script.write_text(code_blocks("python")[0], encoding="utf-8")
    out = run([sys.executable, str(script)], folder, env)
    assert "get out" in out.lower()  # the interview's last sentence, transcribed
    (manifest_run,) = (folder / "runs").glob("mmer-manifest-*")
    assert (manifest_run / "results.json").is_file()
    assert re.search(r"^\s*0\s+Get out", out, flags=re.MULTILINE | re.IGNORECASE), out


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
