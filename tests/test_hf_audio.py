"""The hf-audio extractor on small randomly initialised wav2vec2 / WavLM models saved to a tmp folder
(no pretrained speech encoder is available offline)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    WhisperModel,
)

from emocli.core.errors import ConfigError
from emocli.features.presets import build_extractor

RATE = 16000
SMALL = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8,
)


def _save(folder, model, return_attention_mask: bool = False):
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=return_attention_mask,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory):
    torch.manual_seed(0)
    return _save(tmp_path_factory.mktemp("wav2vec2"), Wav2Vec2Model(Wav2Vec2Config(**SMALL)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """3 s of a chirp with noise at 16 kHz, and the same at 44.1 kHz stereo."""
    t = np.arange(3 * RATE) / RATE
    signal = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size))
    folder = tmp_path_factory.mktemp("audio")
    sf.write(folder / "clip.wav", signal.astype(np.float32), RATE, subtype="FLOAT")
    upsampled = soxr.resample(signal.astype(np.float32), RATE, 44100)
    sf.write(folder / "clip44k.wav", np.stack([upsampled, upsampled], axis=1), 44100, subtype="FLOAT")
    return folder / "clip.wav", folder / "clip44k.wav"


def _sample(path, **fields) -> dict:
    return {"sample_id": path.stem, "audio_path": str(path), **fields}


def test_vector_and_sequence_of_a_local_wav2vec2(wav2vec2, clip):
    vector = build_extractor("hf-audio", model=str(wav2vec2))
    sequence = build_extractor("hf-audio", model=str(wav2vec2), output="sequence")
    assert (vector.kind, vector.dim, sequence.kind) == ("vector", 32, "sequence")
    pooled = vector.extract(_sample(clip[0])).values
    frames = sequence.extract(_sample(clip[0]))
    # wav2vec2's front end: 400-sample receptive field, one frame per 320 samples, centred at 12.47 ms
    assert frames.values.shape == ((3 * RATE - 400) // 320 + 1, 32)
    np.testing.assert_allclose(frames.times, (np.arange(len(frames.values)) * 320 + 199.5) / RATE)
    np.testing.assert_allclose(pooled, frames.values.mean(axis=0), rtol=1e-5, atol=1e-5)
    assert set(vector.spec()["model_identity"]) == {"local_digest"}


def test_layer_choice_against_the_models_own_hidden_states(wav2vec2, clip):
    model = Wav2Vec2Model.from_pretrained(wav2vec2).eval()
    signal, _ = sf.read(clip[0], dtype="float32")
    normalised = (signal - signal.mean()) / np.sqrt(signal.var() + 1e-7)  # the feature extractor's do_normalize
    with torch.inference_mode():
        states = model(torch.from_numpy(normalised)[None], output_hidden_states=True).hidden_states
    assert len(states) == 4
    for layer in (0, 2, -1):
        got = build_extractor("hf-audio", model=str(wav2vec2), layer=layer).extract(_sample(clip[0])).values
        np.testing.assert_allclose(got, states[layer][0].mean(0).numpy(), rtol=1e-4, atol=1e-4)
    mean = build_extractor("hf-audio", model=str(wav2vec2), layer="mean").extract(_sample(clip[0])).values
    np.testing.assert_allclose(mean, torch.stack(states).mean(0)[0].mean(0).numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="layer 4 out of range"):
        build_extractor("hf-audio", model=str(wav2vec2), layer=4).dim


def test_long_segments_in_chunks_and_resampled_input(wav2vec2, clip):
    chunked = build_extractor("hf-audio", model=str(wav2vec2), output="sequence", chunk_s=1.0).extract(_sample(clip[0]))
    assert len(chunked.values) == 3 * ((RATE - 400) // 320 + 1)  # three 1-s chunks, each with its own frames
    assert np.all(np.diff(chunked.times) > 0) and chunked.times[-1] < 3.0
    at_16k = build_extractor("hf-audio", model=str(wav2vec2)).extract(_sample(clip[0])).values
    at_44k = build_extractor("hf-audio", model=str(wav2vec2)).extract(_sample(clip[1])).values
    assert float(at_16k @ at_44k / np.linalg.norm(at_16k) / np.linalg.norm(at_44k)) > 0.999


def test_wavlm_batches_of_equal_length(tmp_path, clip):
    torch.manual_seed(1)
    folder = _save(tmp_path / "wavlm", WavLMModel(WavLMConfig(**SMALL, num_buckets=16)), return_attention_mask=True)
    one = build_extractor("hf-audio", model=str(folder), layer=1)
    three = build_extractor("hf-audio", model=str(folder), layer=1, batch_size=3)
    samples = [_sample(clip[0]), _sample(clip[0], start_s=0.5, end_s=2.5), _sample(clip[1])]
    for single, batched in zip([one.extract(s) for s in samples], three.extract_batch(samples)):
        np.testing.assert_allclose(single.values, batched.values, rtol=1e-4, atol=1e-4)
    assert one.fingerprint() == three.fingerprint()


def test_models_it_cannot_read_are_refused_in_one_line(tmp_path, wav2vec2):
    WhisperModel(WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16)).save_pretrained(tmp_path / "whisper")
    with pytest.raises(ConfigError, match="use the whisper extractor"):
        build_extractor("hf-audio", model=str(tmp_path / "whisper")).dim
    pickled = tmp_path / "pickled"  # weights only as a pickle (pytorch_model.bin): never unpickled
    model = Wav2Vec2Model.from_pretrained(wav2vec2)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor().save_pretrained(pickled)
    with pytest.raises(ConfigError, match="could not load a speech model from this folder") as error:
        build_extractor("hf-audio", model=str(pickled)).model
    assert "\n" not in str(error.value)
