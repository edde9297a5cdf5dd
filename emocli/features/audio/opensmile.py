"""openSMILE acoustic features (ComParE 2016, eGeMAPS, ...) through audEERING's opensmile-python.

Audio is decoded and resampled by `load_audio` and handed to `Smile.process_signal`. That is the one
code path used, always: `process_file` gives different values for the same audio (audeering/opensmile
#46), and resampling before openSMILE makes a feature set independent of each file's native rate.
Note the licence: opensmile-python is under the audEERING Research License (non-commercial use).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.types import FeatureKind, Features
from emocli.features.audio.io import (
    AUDIO_IO_LIBRARIES,
    audio_input_fingerprint,
    read_sample_audio,
    sample_audio_path,
)
from emocli.features.base import Extractor, ExtractorParams

FeatureLevel = Literal["functionals", "lld", "lld_deltas"]

# Our short names for opensmile.FeatureLevel members.
_OPENSMILE_LEVELS = {
    "functionals": "Functionals",
    "lld": "LowLevelDescriptors",
    "lld_deltas": "LowLevelDescriptors_Deltas",
}


class OpenSmileParams(ExtractorParams):
    feature_set: str = Field(
        "ComParE_2016", description="an opensmile.FeatureSet name: ComParE_2016 (6373 functionals), "
        "eGeMAPSv02 (88), emobase, IS09..IS13, ..."
    )
    feature_level: FeatureLevel = Field(
        "functionals", description="functionals: one vector per clip; lld / lld_deltas: frame sequences"
    )
    sample_rate: int = Field(16000, gt=0, description="audio is resampled to this rate before openSMILE")
    mono: bool = Field(
        True, description="True: average all channels; False: first channel only (openSMILE's default)"
    )



class OpenSmileExtractor(Extractor):
    """openSMILE functionals (a vector per clip) or low-level descriptors (a sequence per clip).

    LLD frame times are the centres of openSMILE's analysis windows, in seconds from the start of the
    sample's segment.
    """

    name = "opensmile"
    modality = "audio"
    Params = OpenSmileParams
    libraries: ClassVar[tuple[str, ...]] = ("opensmile", *AUDIO_IO_LIBRARIES)
    params: OpenSmileParams

    def __init__(self, params: OpenSmileParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        # Checked here, not in the parameters: reading stored features needs no openSMILE.
        import opensmile

        known = list(opensmile.FeatureSet.__members__)
        if self.params.feature_set not in known:
            raise ConfigError(
                f"invalid parameters for extractor 'opensmile': unknown openSMILE feature set "
                f"{self.params.feature_set!r}; choose one of {', '.join(known)}"
            )
        self._smile = None  # built on first use: worker processes build their own

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_smile": None}

    @property
    def smile(self):  # -> opensmile.Smile
        if self._smile is None:
            import opensmile

            try:
                self._smile = opensmile.Smile(
                    feature_set=opensmile.FeatureSet[self.params.feature_set],
                    feature_level=opensmile.FeatureLevel[_OPENSMILE_LEVELS[self.params.feature_level]],
                )
            except ValueError as error:  # e.g. deltas exist only for some feature sets
                raise ConfigError(f"opensmile extractor: {error}") from error
        return self._smile

    @property
    def kind(self) -> FeatureKind:  # type: ignore[override]
        return "vector" if self.params.feature_level == "functionals" else "sequence"

    @property
    def dim(self) -> int:
        return len(self.smile.feature_names)

    def feature_names(self) -> list[str]:
        return list(self.smile.feature_names)

    def spec(self) -> dict[str, Any]:
        # The openSMILE entry point changes the values (opensmile #46), so it is part of the identity.
        return {**super().spec(), "opensmile_call": "Smile.process_signal"}

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return audio_input_fingerprint(sample)

    def extract(self, sample: Mapping[str, Any]) -> Features:
        path = sample_audio_path(sample)
        signal, rate = read_sample_audio(sample, sample_rate=self.params.sample_rate, mono=self.params.mono)
        if signal.ndim == 2:
            signal = signal[0]
        with warnings.catch_warnings():
            # openSMILE warns and fills NaN when the audio is shorter than its windows; reported below.
            warnings.filterwarnings("ignore", message="Segment too short")
            table = self.smile.process_signal(signal, rate)
        values = table.to_numpy(dtype=np.float32)
        if len(values) == 0 or not np.isfinite(values).all():
            raise ExtractionError(
                f"audio too short for openSMILE {self.params.feature_set} "
                f"({len(signal) / rate:.3f} s): no finite features",
                path=path,
            )
        if self.kind == "vector":
            return Features(values[0])
        starts = table.index.get_level_values("start").total_seconds().to_numpy()
        ends = table.index.get_level_values("end").total_seconds().to_numpy()
        return Features(values, times=(starts + ends) / 2)
