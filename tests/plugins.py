"""Installing a plugin the way pip would, for tests: a module plus a `.dist-info` folder whose
entry_points.txt registers it, in a folder put on the import path. emo finds plugins through
importlib.metadata's entry points, so this is exactly what a user's `pip install my-plugin` gives it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def write_plugin(folder: Path, distribution: str, group: str, entries: dict[str, str], modules: dict[str, str]) -> Path:
    """`modules`: module name -> source; `entries`: entry-point name -> "module:object" or "module"."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    info = folder / f"{distribution}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    lines = [f"[{group}]"] + [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


def activate(folder: Path, monkeypatch) -> None:
    """Put a plugin folder on this process's import path for one test."""
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("emocli_test_plugin")]:
        del sys.modules[name]
