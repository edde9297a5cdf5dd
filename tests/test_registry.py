"""The registry is the single source of truth: its reference counts hold, and the README's table is its output."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from emocli.cli import app
from emocli.commands.models_cmd import markdown_table, registry_rows
from emocli.core.errors import ConfigError
from emocli.models.registry import get_model, model_names

README = Path(__file__).resolve().parents[1] / "README.md"


def test_overrides_apply_on_top_of_a_reference():
    entry = get_model("smile")
    config = entry.config("mosei", num_classes=8, task="single_label")
    assert (config.num_classes, config.task) == (8, "single_label")


def test_unknown_names_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown model 'bert'"):
        get_model("bert")
    with pytest.raises(ConfigError, match="no reference configuration 'iemocap'"):
        get_model("cfnsr").config("iemocap")


def test_readme_model_table_is_generated_from_the_registry():
    table = markdown_table(registry_rows(count=False))
    assert table in README.read_text(encoding="utf-8"), "regenerate it with `emo models --markdown --no-count`"


def test_emo_models_lists_every_model():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in model_names():
        assert name in result.output


def test_the_catalog_is_the_registrations_as_data():
    """catalog.json lets `emo models` answer without importing torch; it must say what the registrations say
    (regenerate it with `python -m emocli.models.registry`)."""
    from emocli.models.registry import BUILTIN, catalog

    assert catalog()[: len(BUILTIN)] == [get_model(name).describe() for name in BUILTIN]


def test_emo_models_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from emocli.cli import app; "
        "result = CliRunner().invoke(app, ['models']); assert result.exit_code == 0, result.output; "
        "print('torch' in sys.modules, 'smile' in result.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
