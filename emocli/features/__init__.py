"""Feature extractors, looked up by name; modules are imported only when an extractor is built."""

from __future__ import annotations

from emocli.core.errors import ConfigError
from emocli.core.lazy import import_object

# name -> "module:Class"; the one list the CLI, presets and tests use.
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
}


def extractor_class(name: str):
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    return import_object(EXTRACTORS[name])


def build_extractor(name: str, **params):
    return extractor_class(name)(**params)
