"""emo: a toolkit for multimodal emotion recognition (text, audio, video)."""

__version__ = "0.1.0"
