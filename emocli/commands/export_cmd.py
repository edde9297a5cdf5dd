"""`emo export`: a trained unit as an ONNX graph (features in, probabilities out), checked with onnxruntime."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from emocli.commands.options import between

# Ten minutes of 20-ms frames: the example tensors of the export are allocated at this length.
MAX_FRAMES = 30_000


class ExportFormat(str, Enum):
    onnx = "onnx"


def export(
    run: Path = typer.Argument(..., help="A run directory (its best unit by validation) or one seed=S/fold=K unit."),
    output: Path | None = typer.Option(None, "--output", "-o", help="The .onnx file (default: <unit>/model.onnx)."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="Export format."),
    tolerance: float = typer.Option(1e-4, "--tolerance", callback=between(0, 1, low_open=True),
                                    help="Largest allowed difference from emo's probabilities (more than 0, at most 1)."),
    frames: int = typer.Option(200, "--frames", callback=between(1, MAX_FRAMES),
                               help=f"Frame axis of sequence inputs in the graph, from 1 to {MAX_FRAMES} (pad and "
                               "mask shorter ones)."),
) -> None:
    """Export a trained model for other runtimes. The graph takes the features the run's extractors make (its
    standardisation included) and returns probabilities; a .json beside it describes inputs and classes.
    Spiking models (SMILE, SpikEmo) are refused: ONNX has no operators for their LIF neurons."""
    from rich.console import Console

    from emocli.runs.export import export_onnx
    from emocli.runs.inference import choose_unit

    errors = Console(stderr=True)
    unit, note = choose_unit(run)
    errors.print(note, highlight=False, soft_wrap=True)
    report = export_onnx(unit, output or unit / "model.onnx", tolerance=tolerance, frames=frames)
    errors.print(
        f"onnx: {report.path} (inputs {', '.join(report.inputs)}; onnxruntime agrees within "
        f"{report.max_difference:.1e}); description: {report.description}", highlight=False, soft_wrap=True,
    )
