import subprocess
import sys

from typer.testing import CliRunner

from emocli.cli import app
from emocli.models.registry import model_names

runner = CliRunner()


def test_help_lists_every_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for stage in ("extract", "train", "evaluate", "predict", "models", "datasets"):
        assert stage in result.output


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from emocli.cli import app; "
        "heavy = [m for m in ('torch', 'transformers', 'opensmile', 'librosa', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_registry_names_are_the_cli_model_names():
    assert model_names()[:4] == ["smile", "spikemo", "mmer", "cfnsr"]
