"""openSMILE and MFCC extractors on real RAVDESS speech and on synthetic files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.audio.mfcc import MfccExtractor
from emocli.features.audio.opensmile import OpenSmileExtractor
from emocli.features.presets import build_extractor


@pytest.fixture(scope="module")
def clip(ravdess_root) -> Path:
    return ravdess_root / "audio" / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="module")
def clip_44k_stereo(clip, tmp_path_factory) -> Path:
    """The same speech as a 44.1 kHz stereo WAV: features must not depend on how the file was stored."""
    signal, rate = sf.read(clip, dtype="float32")
    upsampled = soxr.resample(signal, rate, 44100)
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    sf.write(path, np.stack([upsampled, upsampled], axis=1), 44100, subtype="FLOAT")
    return path


def _sample(path: Path, **fields) -> dict:
    return {"sample_id": path.stem, "audio_path": str(path), **fields}


# -- openSMILE -----------------------------------------------------------------------------------


def test_egemaps_functionals(clip):
    extractor = build_extractor("opensmile", feature_set="eGeMAPSv02")
    features = extractor.extract(_sample(clip))
    assert extractor.kind == "vector" and extractor.dim == 88 and features.values.shape == (88,)
    assert features.times is None and np.isfinite(features.values).all()
    names = extractor.feature_names()
    assert len(names) == 88 and names[0] == "F0semitoneFrom27.5Hz_sma3nz_amean"
    np.testing.assert_array_equal(features.values, extractor.extract(_sample(clip)).values)


def test_compare_functionals_are_the_default(clip):
    extractor = OpenSmileExtractor()
    assert extractor.params.feature_set == "ComParE_2016" and extractor.params.sample_rate == 16000
    features = extractor.extract(_sample(clip))
    assert extractor.dim == 6373 and features.values.shape == (6373,)


def test_llds_are_sequences_with_frame_times(clip):
    extractor = build_extractor("opensmile", feature_set="eGeMAPSv02", feature_level="lld")
    features = extractor.extract(_sample(clip))
    duration = sf.info(clip).duration
    assert extractor.kind == "sequence" and features.values.shape[1] == extractor.dim == 25
    assert abs(len(features.values) - duration / 0.01) < 10  # a 10 ms hop
    assert np.all(np.diff(features.times) > 0) and 0 <= features.times[0] < features.times[-1] < duration


def test_deltas_double_the_compare_llds(clip):
    plain = build_extractor("opensmile", feature_level="lld")
    deltas = build_extractor("opensmile", feature_level="lld_deltas")
    assert deltas.dim == plain.dim == 65  # ComParE has 65 LLDs and 65 deltas, in separate feature sets
    assert set(deltas.feature_names()).isdisjoint(plain.feature_names())


def test_features_do_not_depend_on_storage_rate_or_channels(clip, clip_44k_stereo):
    extractor = build_extractor("opensmile", feature_set="eGeMAPSv02")
    stored_16k = extractor.extract(_sample(clip)).values
    stored_44k = extractor.extract(_sample(clip_44k_stereo)).values
    relative = np.abs(stored_16k - stored_44k) / (np.abs(stored_16k) + 1e-3)
    assert np.median(relative) < 0.01 and relative.max() < 0.25
    at_8k = build_extractor("opensmile", feature_set="eGeMAPSv02", sample_rate=8000).extract(_sample(clip))
    assert np.median(np.abs(stored_16k - at_8k.values) / (np.abs(stored_16k) + 1e-3)) > 0.02


def test_segment_of_a_clip(clip):
    extractor = build_extractor("opensmile", feature_set="eGeMAPSv02", feature_level="lld")
    part = extractor.extract(_sample(clip, start_s=1.0, end_s=2.0))
    assert abs(len(part.values) - 100) < 6 and part.times[-1] < 1.0


def test_provenance_and_fingerprint(clip):
    egemaps = build_extractor("opensmile", feature_set="eGeMAPSv02")
    spec = egemaps.spec()
    assert spec["params"]["sample_rate"] == 16000 and spec["opensmile_call"] == "Smile.process_signal"
    assert spec["versions"]["opensmile"] != "absent" and "soxr" in spec["versions"]
    at_8k = build_extractor("opensmile", feature_set="eGeMAPSv02", sample_rate=8000)
    assert egemaps.fingerprint() != at_8k.fingerprint()
    assert egemaps.fingerprint() != build_extractor("opensmile").fingerprint()


def test_bad_configuration_and_bad_audio(clip):
    with pytest.raises(ConfigError, match="unknown openSMILE feature set"):
        build_extractor("opensmile", feature_set="eGeMAPS_v99")
    with pytest.raises(ConfigError, match="not available"):
        build_extractor("opensmile", feature_set="eGeMAPSv02", feature_level="lld_deltas").dim
    with pytest.raises(ExtractionError, match="too short") as raised:
        build_extractor("opensmile").extract(_sample(clip, start_s=1.0, end_s=1.005))
    assert raised.value.path == clip


def test_pickles_without_the_smile_object(clip):
    extractor = build_extractor("opensmile", feature_set="eGeMAPSv02")
    before = extractor.extract(_sample(clip)).values
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone._smile is None
    np.testing.assert_array_equal(clone.extract(_sample(clip)).values, before)


# -- MFCC ----------------------------------------------------------------------------------------

CFN_SR = {"sample_rate": 44100, "offset_s": 0.5, "duration_s": 2.45, "pad_to_duration": True}


def test_cfn_sr_recipe_matches_librosa_load(clip):
    import librosa

    features = build_extractor("mfcc", **CFN_SR).extract(_sample(clip))
    assert features.values.shape == (212, 13)
    signal, rate = librosa.load(clip, sr=44100, offset=0.5, duration=2.45)
    reference = librosa.feature.mfcc(y=signal, sr=rate, n_mfcc=13)
    np.testing.assert_allclose(features.values, reference.T, rtol=1e-4, atol=1e-3)
    assert features.times[0] == pytest.approx(0.5)
    assert features.times[1] - features.times[0] == pytest.approx(512 / 44100)


def test_padding_gives_short_clips_the_full_length(tmp_path):
    rate = 16000
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * np.random.default_rng(0).standard_normal(int(1.2 * rate)).astype(np.float32), rate)
    padded = build_extractor("mfcc", **CFN_SR).extract(_sample(short))
    assert padded.values.shape == (212, 13)
    unpadded = build_extractor("mfcc", **{**CFN_SR, "pad_to_duration": False}).extract(_sample(short))
    assert len(unpadded.values) < 212
    np.testing.assert_allclose(padded.values[:50], unpadded.values[:50], rtol=1e-4, atol=1e-3)


def test_native_rate_and_sample_segment(clip):
    extractor = MfccExtractor(n_mfcc=20)
    whole = extractor.extract(_sample(clip))
    assert extractor.dim == 20 and whole.values.shape[1] == 20
    assert len(whole.values) == 1 + len(sf.read(clip)[0]) // 512  # 16 kHz, librosa's centred frames
    part = extractor.extract(_sample(clip, start_s=1.0, end_s=2.0))
    assert len(part.values) == 1 + 16000 // 512


def test_mfcc_parameters_are_validated():
    with pytest.raises(ConfigError, match="pad_to_duration needs duration_s"):
        MfccExtractor(pad_to_duration=True)
    with pytest.raises(ConfigError):
        MfccExtractor(n_mfcc=0)


def test_offset_past_the_end_is_an_extraction_error(clip):
    with pytest.raises(ExtractionError, match="no audio samples"):
        build_extractor("mfcc", offset_s=30.0).extract(_sample(clip))


def test_stored_opensmile_features_are_found_without_opensmile(clip, tmp_path, monkeypatch):
    """Training reads a store on machines that never extract: naming the preset needs no openSMILE."""
    import sys

    import pandas as pd

    from emocli.core.samples import SampleSet
    from emocli.core.types import LabelMap
    from emocli.data.inputs import select_inputs
    from emocli.features.presets import build_extractor as build_preset
    from emocli.features.store import FeatureStore
    from emocli.models.registry import get_model

    table = pd.DataFrame([{**_sample(clip, sample_id=name), "label": label, "labels": []}
                          for name, label in (("a", "x"), ("b", "y"))])
    store = FeatureStore(tmp_path / "store")
    store.extract(SampleSet("toy", tmp_path, table, LabelMap(("x", "y"))), [build_preset("egemaps")], progress=False)
    monkeypatch.setitem(sys.modules, "opensmile", None)  # importing it now fails
    with pytest.raises(ImportError):
        build_preset("egemaps")
    chosen = select_inputs(store, get_model("smile"), modalities=["audio"], choices={"audio": "egemaps"})
    assert chosen["audio"].dim == 88 and chosen["audio"].feature_set.startswith("audio__opensmile__")
