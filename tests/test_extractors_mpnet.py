"""The offline all-mpnet-base-v2 (`mpnet` preset): sentence-transformers' vectors, deterministic.

Skips where its five packages (requirements/mpnet.txt) are not installed.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from emocli.features.packaged import model_folder
from emocli.features.presets import build_extractor
from emocli.features.text.transformer import ALL_MPNET_BASE_V2

TEXTS = [
    "I can't believe you did that!",
    "Okay.",
    "What are you talking about? " * 5,
    "Oh my God, oh my God, I got the job at Ralph Lauren!",
]

try:
    metadata.distribution(ALL_MPNET_BASE_V2.parts[0].distribution)
except metadata.PackageNotFoundError:
    pytest.skip("all-mpnet-base-v2 parts not installed (requirements/mpnet.txt)", allow_module_level=True)


def test_the_parts_unpack_to_the_pinned_weights():
    folder = model_folder(ALL_MPNET_BASE_V2)
    assert {"config.json", "model.safetensors", "tokenizer.json", "modules.json"} <= {p.name for p in folder.iterdir()}
    assert not (folder / "desktop.ini").exists()
    assert (folder / "model.safetensors").stat().st_size == 437_971_872


@pytest.fixture(scope="module")
def mpnet():
    return build_extractor("mpnet", {"device": "cpu"})


def test_mpnet_is_sentence_transformers_encode(mpnet):
    from sentence_transformers import SentenceTransformer

    vectors = np.stack([f.values for f in mpnet.extract_batch([{"text": t} for t in TEXTS])])
    assert mpnet.dim == 768 and vectors.shape == (4, 768) and mpnet.max_length == 384
    reference = SentenceTransformer(mpnet._location, device="cpu").encode(TEXTS)  # mean pool + L2 norm
    np.testing.assert_allclose(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), reference, atol=1e-5)


def test_mpnet_is_deterministic_and_names_its_weights(mpnet):
    batch = mpnet.extract_batch([{"text": t} for t in TEXTS])
    np.testing.assert_allclose(mpnet.extract({"text": TEXTS[1]}).values, batch[1].values, atol=1e-5)
    np.testing.assert_array_equal(mpnet.extract({"text": TEXTS[0]}).values, mpnet.extract({"text": TEXTS[0]}).values)
    again = build_extractor("mpnet", {"device": "cpu", "batch_size": 4})
    assert again.fingerprint() == mpnet.fingerprint() and mpnet.spec()["model_identity"]["local_digest"]
    assert build_extractor("hf-text", {"model": "sentence-transformers/all-mpnet-base-v2"})._location == mpnet._location


def test_the_context_preset_concatenates_three_mpnet_vectors():
    extractor = build_extractor("mpnet-context-meld")
    assert (extractor.kind, extractor.dim, extractor.params.mode) == ("vector", 3 * 768, "concat")
