"""Feature extractors, looked up by registered name; modules are imported only when an extractor is built.

A feature spec (in a store or a run) names its extractor; that name is resolved here and nowhere else,
so nothing read from a file is ever imported. Other packages add extractors through the entry-point
group `emocli.extractors` (`my-encoder = "my_package.module:MyExtractor"`), the standard plugin
mechanism: installing the package is the user's consent to run its code.
"""

from __future__ import annotations

from importlib import metadata

from emocli.core.errors import ConfigError
from emocli.core.lazy import import_object
from emocli.core.settings import did_you_mean

ENTRY_POINT_GROUP = "emocli.extractors"
# name -> "module:Class" of the built-in extractors.
EXTRACTORS: dict[str, str] = {
    "opensmile": "emocli.features.audio.opensmile:OpenSmileExtractor",
    "mfcc": "emocli.features.audio.mfcc:MfccExtractor",
    "whisper": "emocli.features.audio.whisper:WhisperExtractor",
    "hf-audio": "emocli.features.audio.hf_audio:HfAudioExtractor",
    "hf-text": "emocli.features.text.transformer:TransformerTextExtractor",
    "glove": "emocli.features.text.glove:GloveExtractor",
    "clip-table": "emocli.features.visual.table:ClipTableExtractor",
    "frames": "emocli.features.visual.frames:FrameFeatureExtractor",
    "clips": "emocli.features.visual.clips:ClipExtractor",
    "face-expression": "emocli.features.visual.face_expression:FaceExpressionExtractor",
}


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def extractor_names() -> list[str]:
    return list(EXTRACTORS) + sorted(set(_plugins()) - set(EXTRACTORS))


def extractor_class(name: str):
    """The extractor class registered as `name` (built-in, or a plugin's entry point)."""
    from emocli.features.base import Extractor

    reference = EXTRACTORS.get(name) or _plugins().get(name)
    if reference is None:
        raise ConfigError(f"unknown extractor {name!r}{did_you_mean(name, extractor_names())}; "
                          f"choose one of {', '.join(extractor_names())}")
    try:
        kind = import_object(reference)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"extractor {name!r}: cannot import {reference} ({error})") from None
    if not (isinstance(kind, type) and issubclass(kind, Extractor)):
        raise ConfigError(f"extractor {name!r}: {reference} is not an Extractor subclass")
    return kind
