"""emo: a toolkit for multimodal emotion recognition (text, audio, video).

The commands of `emo` as functions (emocli/api.py), imported on first use so that `import emocli` is cheap:

    import emocli
    report, samples = emocli.extract("meld")
    run = emocli.train("smile")
    emocli.evaluate(run.root)
    emocli.predict(["clip.mp4"]).table
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = [
    "Predictor", "evaluate", "extract", "list_datasets", "list_models", "load_predictor", "predict", "train",
]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from emocli.prediction.predictor import Predictor

        return Predictor
    if name in __all__:
        from emocli import api

        return getattr(api, name)
    raise AttributeError(f"module 'emocli' has no attribute {name!r}")
