"""`emo train` / `emo evaluate` and the training configuration (presets, --set overrides)."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from test_training_data import make_store
from typer.testing import CliRunner

from emocli.commands import evaluate_cmd, train_cmd
from emocli.core.errors import ConfigError
from emocli.core.settings import load_preset, preset_names
from emocli.models.registry import get_model, model_names
from emocli.runs import layout
from emocli.training.config import apply_overrides, resolve_config

# The commands as cli.py mounts them (a local app: this file tests the commands, not the wiring).
app = typer.Typer()
app.command("train")(train_cmd.train)
app.command("evaluate")(evaluate_cmd.evaluate)
runner = CliRunner()


def test_every_preset_resolves_and_builds_its_reference_configuration():
    """Each model's recipe exists, and every preset resolves and builds the reference configuration it asks
    for (the SpikEmo IEMOCAP recipe once named a reference the registry did not list)."""
    names = preset_names("train")
    for model in model_names():
        assert get_model(model).preset in names  # each model has its recipe
    for name in names:
        model = load_preset("train", name)[0].get("model")
        if model is None:  # the generic recipe of models without their own
            continue
        config = resolve_config(model, name)
        assert config.model == model and config.preset == name
        if config.reference is not None:
            entry = get_model(model)
            assert entry.config(config.reference).num_classes > 0


def test_presets_extend_and_overrides_parse_toml_literals():
    config = resolve_config("smile", "smile-nemu", ["optimizer.betas=[0.9, 0.98]", "model.d_model=60", "loss.smoothing=0.1"])
    assert config.optimizer.lr == 2e-3 and config.batch_size == 128  # smile-nemu
    assert config.clip_grad_norm == 0.8 and config.scheduler.name == "plateau"  # inherited from smile
    assert config.optimizer.betas == (0.9, 0.98)
    assert config.model_params == {"d_model": 60}
    assert config.loss == {"smoothing": 0.1}
    assert apply_overrides({}, ["a.b=hello world", "c=true", "d=1e-3"]) == {"a": {"b": "hello world"}, "c": True, "d": 1e-3}


def test_bad_overrides_name_the_problem():
    with pytest.raises(ConfigError, match="optimizer.lrr"):
        resolve_config("cfnsr", overrides=["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve_config("cfnsr", overrides=["epochs"])
    with pytest.raises(ConfigError, match="unknown train preset"):
        resolve_config("cfnsr", "nope")
    with pytest.raises(ConfigError, match="recipe for 'smile'"):
        resolve_config("cfnsr", "smile-mosei")


def test_a_misspelt_setting_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"epoch: unknown setting \(did you mean 'epochs'\?\)"):
        resolve_config("cfnsr", overrides=["epoch=3"])
    with pytest.raises(ConfigError, match=r"optimizer.lrr: unknown setting \(did you mean 'lr'\?\)"):
        resolve_config("cfnsr", overrides=["optimizer.lrr=1"])


def test_a_bad_setting_is_blamed_on_the_assignment_and_a_bad_preset_on_its_file(tmp_path):
    shown = runner.invoke(app, ["train", "cfnsr", "--set", "epochs=3", "--set", "epoch=3", "--show-config"])
    assert shown.exit_code != 0
    assert str(shown.exception) == ("invalid training configuration (epoch: unknown setting (did you mean "
                                    "'epochs'?)), set by epoch=3")
    with pytest.raises(ConfigError, match="set by optimizer.lr=fast$") as raised:
        resolve_config("cfnsr", overrides=["optimizer.lr=fast"])
    assert raised.value.path is None
    preset = tmp_path / "mine.toml"
    preset.write_text('model = "cfnsr"\nepoch = 3\n')
    with pytest.raises(ConfigError, match="did you mean 'epochs'") as raised:
        resolve_config("cfnsr", str(preset), overrides=["epochs=3"])
    assert raised.value.path == preset and "set by" not in str(raised.value)


def test_none_unsets_and_names_the_none_choices():
    config = resolve_config("smile", overrides=["scheduler.name=none", "normalize=none", "early_stopping=none"])
    assert (config.scheduler.name, config.normalize, config.early_stopping) == ("none", "none", None)


def test_mmer_recipe_holds_its_training_defaults():
    config = resolve_config("mmer")
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.weight_decay) == ("adamw", 5e-5, 1e-2)
    assert (config.epochs, config.batch_size, config.clip_grad_norm) == (30, 128, 1.0)
    assert config.scheduler.name == "warmup_cosine" and config.drop_last
    faithful = resolve_config("mmer", "mmer-faithful")
    assert (faithful.epochs, faithful.scheduler.lag_epochs, faithful.scheduler.warmup_prefix) == (10, 1, False)
    override = resolve_config("mmer", overrides=["optimizer.lr=1e-4", "epochs=3"])
    assert (override.optimizer.lr, override.epochs) == (1e-4, 3)


FAITHFUL_PRESETS = sorted(name for name in preset_names("train") if name.endswith("-faithful"))
# The seed each release fixes: SMILE's main.py, MMER's train_mmer.py (--seed defaults), CFN-SR's main_msaf.py,
# SpikEmo's Train/TrainMultiEMO.py.
RELEASE_SEEDS = {"smile": 0, "mmer": 42, "cfnsr": 1234, "spikemo": 2023}


def test_every_released_model_has_a_faithful_recipe():
    """A model with released code has a recipe reproducing it; one without (the linear probe) needs none."""
    faithful = {load_preset("train", name)[0]["model"] for name in FAITHFUL_PRESETS}
    assert faithful == set(RELEASE_SEEDS) and faithful <= set(model_names())


@pytest.mark.parametrize("preset", FAITHFUL_PRESETS)
def test_a_faithful_recipe_builds_the_released_model_on_raw_features(preset):
    """A `*-faithful` recipe reproduces the release: its model is built with faithful=True and its inputs are
    fed as the store holds them (the released codes standardise nothing)."""
    model = load_preset("train", preset)[0]["model"]
    entry = get_model(model)
    config = resolve_config(model, preset)
    assert config.normalize == "none"
    assert config.model_params.get("faithful") is True
    if config.reference is None:  # what the trainer adds from a store: the inputs, the classes, the task
        fields = {"modalities": {m: {"dim": 8} for m in entry.modalities}, "num_classes": 6, "task": entry.task}
    else:
        fields = {}
    model_config = entry.config(config.reference, **fields, **config.model_params)
    with torch.device("meta"):  # the full-size model, without allocating its weights
        built = entry.build(model_config)
    assert built.config.faithful
    assert config.seeds == [RELEASE_SEEDS[model]]


def test_show_config_prints_the_resolved_configuration():
    result = runner.invoke(
        app, ["train", "spikemo", "--features", "nowhere", "--seeds", "1,2,3", "--folds", "all",
              "--feature", "audio=opensmile", "--set", "epochs=2", "--show-config"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["seeds"] == [1, 2, 3] and shown["folds"] == "all" and shown["epochs"] == 2
    assert shown["features"] == {"audio": "opensmile"} and shown["optimizer"]["lr"] == 1e-4


def test_model_choices_come_from_the_registry():
    result = runner.invoke(app, ["train", "nomodel", "--features", "x"])
    assert result.exit_code != 0
    for name in model_names():
        assert name in result.output


def test_train_then_evaluate_from_the_command_line(tmp_path):
    store = make_store(tmp_path / "store", n=48)
    out = tmp_path / "runs"
    args = [
        "train", "cfnsr", "--features", str(store.path), "--out", str(out), "--name", "cli", "--seeds", "3",
        "--folds", "1", "--modalities", "audio", "--set", "epochs=2", "--set", "model.transformer_layers=1",
        "--set", "model.transformer_heads=2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    unit = layout.unit_dir(out / "cfnsr-toy-cli", 3, 1)
    assert set(layout.read_json(unit / "feature_spec.json")["inputs"]) == {"audio"}
    assert "accuracy" in result.output

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already finished" in again.output

    evaluated = runner.invoke(app, ["evaluate", str(out / "cfnsr-toy-cli")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "reproduces test_metrics.json" in evaluated.output
    written = layout.read_json(unit / "evaluation-test.json")
    assert written["metrics"] == layout.read_json(unit / layout.TEST_METRICS)["metrics"]

    valid = runner.invoke(app, ["evaluate", str(unit), "--split", "valid"])
    assert valid.exit_code == 0, valid.output
    assert layout.read_json(unit / "evaluation-valid.json")["n_samples"] == len(layout.read_json(unit / "splits.json")["valid"])


def test_train_without_features_takes_the_one_store_under_stores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "stores" / "toy", n=48)
    args = ["train", "cfnsr", "--folds", "0", "--set", "epochs=1", "--set", "model.transformer_layers=1",
            "--set", "model.transformer_heads=2", "--set", "model.video_dim=16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stores/toy (the one store under stores/ that cfnsr can read)" in " ".join(result.output.split())
    make_store(tmp_path / "stores" / "other", n=48)
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and "several feature stores under stores/ fit cfnsr" in " ".join(str(result.exception).split())
