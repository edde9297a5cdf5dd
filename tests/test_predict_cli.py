"""`emo predict` on the command line: outputs, plot, failures and exit codes; and, on real RAVDESS audio,
the same probabilities as the evaluation path gives for the same clip."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import typer
from media import write_garbage, write_video
from test_predict import RATE, SMALL_CFNSR, make_tone_store, tone, tones, train_tiny
from typer.testing import CliRunner

from emocli.commands import predict_cmd

# The command as cli.py mounts it (a local app: these tests are about the command, one test about the wiring).
app = typer.Typer()
app.command("predict")(predict_cmd.predict)
runner = CliRunner()


@pytest.fixture(scope="module")
def unit(tmp_path_factory) -> Path:
    store = make_tone_store(tmp_path_factory.mktemp("tones"), n=24)
    return train_tiny(store, tmp_path_factory.mktemp("runs"), overrides=[*SMALL_CFNSR, "epochs=3"], modalities=["audio"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    sf.write(folder / "long.wav", tones("low", "mid", "high", seconds=2.0), RATE)
    write_video(folder / "clip.mp4", seconds=1.5, audio=tone("high", 1.5))
    return folder


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_outputs_in_three_formats_hold_the_same_rows(unit, folder, tmp_path):
    results = {}
    for suffix in (".csv", ".json", ".parquet"):
        out = tmp_path / f"out{suffix}"
        result = invoke(unit, folder, "--window", "2", "--output", out)
        assert result.exit_code == 0, result.output
        results[suffix] = out
    assert "single-label (softmax)" in result.stdout and "top 3" in result.stdout  # the table
    csv = pd.read_csv(results[".csv"])
    parquet = pd.read_parquet(results[".parquet"])
    document = json.loads(results[".json"].read_text())
    rows = pd.DataFrame(document["predictions"])
    assert list(csv.columns) == ["input", "segment", "start_s", "end_s", "text", "text_source", "label", "flags", "prob_low", "prob_mid",
                                 "prob_high"]
    assert csv["flags"].isna().all() and rows["flags"].tolist() == [[]] * 4  # tones: nothing to flag
    assert list(parquet.columns) == list(csv.columns) == list(rows.columns)
    assert [Path(p).name for p in csv["input"]] == ["clip.mp4", "long.wav", "long.wav", "long.wav"]
    assert csv[["start_s", "end_s"]].values.tolist() == [[0, 1.5], [0, 2], [2, 4], [4, 6]]
    probs = csv.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(probs, parquet.filter(like="prob_").to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs, rows.filter(like="prob_").to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert csv["label"].tolist() == [["low", "mid", "high"][k] for k in probs.argmax(axis=1)]
    assert document["classes"] == ["low", "mid", "high"] and document["task"] == "single_label"
    assert document["failures"] == [] and document["run"] == str(unit)


def test_plot_draws_the_timeline(unit, folder, tmp_path):
    plot = tmp_path / "timeline.png"
    result = invoke(unit, folder / "long.wav", "--window", "2", "--plot", plot, "--quiet")
    assert result.exit_code == 0, result.output
    image = plot.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000
    import matplotlib.image

    pixels = matplotlib.image.imread(plot)
    assert pixels.shape[0] > 200 and pixels.std() > 0.05  # a drawing, not a blank canvas


def test_bad_inputs_are_reported_and_the_rest_is_written(unit, folder, tmp_path):
    bad = write_garbage(tmp_path / "bad.mp4")
    out = tmp_path / "out.csv"
    result = invoke(unit, folder / "clip.mp4", bad, tmp_path / "absent.wav", "--output", out, "--quiet")
    assert result.exit_code == 1
    assert f"failed: {bad}: cannot open as media" in result.stderr
    assert f"failed: {tmp_path / 'absent.wav'}: no such file or folder" in result.stderr
    assert "2 failure(s); 1 input(s) predicted" in result.stderr
    assert [Path(p).name for p in pd.read_csv(out)["input"]] == ["clip.mp4"]


def test_text_alone_for_an_audio_run_and_an_unknown_output_format(unit, tmp_path):
    result = invoke(unit, "--text", "hello", "--quiet")
    assert result.exit_code == 1 and "the run needs audio (opensmile); a text input has none" in result.stderr
    result = invoke(unit, "--text", "hello", "--output", tmp_path / "out.xlsx")
    assert result.exit_code != 0 and "unknown output format '.xlsx'" in str(result.exception)


def test_emo_predict_is_mounted_and_errors_exit_with_code_2(tmp_path):
    command = [sys.executable, "-m", "emocli", "predict", "--model", str(tmp_path / "no-run"), str(tmp_path / "x.wav")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{tmp_path / 'no-run'}: no such run folder" in done.stderr  # a path, not looked up on the hub


# --------------------------------------------------------------------------- RAVDESS: predict == evaluate


def write_mp4(path: Path, samples: np.ndarray, rate: int, codec: str) -> Path:
    """An h264 mp4 whose audio track is `samples` (int16 mono) encoded with `codec`: pcm_s16le (lossless:
    the decoder returns the very samples) or aac (lossy)."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(10))
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(codec, rate=rate, layout="mono")
        for index in range(int(len(samples) / rate * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * (index % 32), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if codec == "aac":  # the aac encoder takes float planar samples
            frame = av.AudioFrame.from_ndarray((samples / 32768.0).astype(np.float32)[None], format="fltp", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def ravdess_run(ravdess_root, tmp_path_factory):
    """CFN-SR on eGeMAPS functionals of 64 RAVDESS clips (actors 1-8, every 8th clip), 3 epochs, fold 0."""
    from emocli.core.samples import SampleSet
    from emocli.datasets import load_dataset
    from emocli.features.presets import build_extractor
    from emocli.features.store import FeatureStore

    full = load_dataset("ravdess", ravdess_root)
    table = full.table[full.table["actor"] <= 8]
    table = table[table.groupby("speaker").cumcount() % 8 == 0]
    subset = SampleSet(full.dataset, full.root, table, full.labels, full.protocols, full.options)
    store = FeatureStore(tmp_path_factory.mktemp("ravdess") / "store")
    store.extract(subset, [build_extractor("egemaps")], workers=0, progress=False)
    unit = train_tiny(store, tmp_path_factory.mktemp("runs"), overrides=[*SMALL_CFNSR, "epochs=3"], modalities=["audio"])
    return store, unit


def evaluation_probabilities(unit: Path) -> tuple[list[str], np.ndarray]:
    """The evaluation path (what `emo evaluate` scores): the test split's features read from the store,
    standardised and scored by the unit loaded through runs.inference."""
    from emocli.data.tables import load_data
    from emocli.features.store import FeatureStore
    from emocli.runs import layout
    from emocli.runs.inference import TrainedUnit

    trained = TrainedUnit.read(unit)
    loaded = trained.load("cpu")
    data = loaded.standardize(load_data(FeatureStore(trained.config["store"]), trained.inputs, trained.label_map))
    position = {sid: i for i, sid in enumerate(data.samples["sample_id"])}
    rows = np.sort([position[sid] for sid in layout.read_json(unit / layout.SPLITS)["test"]])
    pred = loaded.score(data, rows)
    return data.samples["audio_path"].iloc[pred.rows].tolist(), pred.probs


def test_predicting_an_mp4_of_a_ravdess_clip_gives_the_evaluation_probabilities(ravdess_run, tmp_path):
    store, unit = ravdess_run
    paths, expected = evaluation_probabilities(unit)
    clips = [0, len(paths) - 1]  # two test clips (different actors)
    samples = {k: sf.read(paths[k], dtype="int16") for k in clips}
    assert all(rate == 16000 for _, rate in samples.values())  # the run's eGeMAPS rate: no resampling either way

    # Lossless track: the decoder hands back the FLAC's very samples, so the features are identical and
    # only the batch (one clip here, the whole test split in evaluation) can move the last float bits.
    lossless = [write_mp4(tmp_path / f"clip{k}.mp4", samples[k][0], 16000, "pcm_s16le") for k in clips]
    out = tmp_path / "lossless.json"
    result = runner.invoke(app, [str(unit), *map(str, lossless), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    got = pd.DataFrame(json.loads(out.read_text())["predictions"]).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected[clips], rtol=0, atol=1e-6)

    # aac is lossy (and pads the track with encoder priming that the container's edit list removes):
    # eGeMAPS functionals move a little, and with them the probabilities; bounded, not equal. Over all 32
    # test clips of this run the largest difference measured was 0.055, hence 0.1.
    lossy = [write_mp4(tmp_path / f"clip{k}-aac.mp4", samples[k][0], 16000, "aac") for k in clips]
    out = tmp_path / "lossy.json"
    result = runner.invoke(app, [str(unit), *map(str, lossy), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    got = pd.DataFrame(json.loads(out.read_text())["predictions"]).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, expected[clips], rtol=0, atol=0.1)
    assert not np.array_equal(got, expected[clips])  # it is a different signal


def test_silent_segments_are_flagged_in_the_table_and_the_outputs(unit, tmp_path):
    """3 s of digital silence, a hiss at -70 dBFS and a quiet tone at -40 dBFS: the model still answers for
    each (it always does), but the first two say they rest on no sound (SILENCE_DBFS, -60)."""
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(3 * RATE, np.float32), RATE)
    hiss = tmp_path / "hiss.wav"
    noise = np.random.default_rng(0).normal(size=3 * RATE)
    sf.write(hiss, (noise / np.sqrt(np.mean(noise**2)) * 10 ** (-70 / 20)).astype(np.float32), RATE)
    quiet = tmp_path / "quiet.wav"
    signal = tone("mid", 3.0)
    sf.write(quiet, signal / np.sqrt(np.mean(signal**2)) * 10 ** (-40 / 20), RATE)
    out = tmp_path / "out.json"
    result = invoke(unit, silence, hiss, quiet, "--output", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["predictions"]
    assert [(Path(r["input"]).name, r["flags"]) for r in rows] == [
        ("silence.wav", ["audio:silent"]), ("hiss.wav", ["audio:silent"]), ("quiet.wav", [])]
    assert all(r["label"] in ("low", "mid", "high") for r in rows)  # predicted all the same, but flagged
    assert "flags" in result.stdout and "audio:silent" in result.stdout  # a column of the printed table
    assert "warning: 2 segment(s) flagged (audio:silent 2)" in result.stderr
    csv = tmp_path / "out.csv"
    assert invoke(unit, silence, quiet, "--output", csv, "--quiet").exit_code == 0
    assert pd.read_csv(csv)["flags"].fillna("").tolist() == ["audio:silent", ""]


def test_the_silence_threshold_is_the_documented_one():
    from emocli.prediction.predictor import SILENCE_DBFS, is_silent

    assert SILENCE_DBFS == -60.0
    docs = (Path(__file__).parents[1] / "docs" / "PREDICT.md").read_text()
    assert "-60 dBFS" in docs and "audio:silent" in docs and "visual:no_face" in docs
    assert not is_silent({"sample_id": "x", "audio_path": "/nonexistent.wav"})  # unreadable: no claim
