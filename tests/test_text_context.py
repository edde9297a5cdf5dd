"""Dialogue context for text extractors: which utterances, in which order, tagged how, encoded how."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_extractors_text import CORPUS, tiny_roberta  # noqa: F401 - tiny_roberta is a fixture

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.presets import build_extractor
from emocli.features.runner import extract_samples
from emocli.features.text.context import WINDOW_COLUMN, Context, dialogue_contexts, padded_window
from emocli.features.text.transformer import MODEL_TEXT_COLUMN


@pytest.fixture()
def dialogues() -> pd.DataFrame:
    """Two dialogues with rows out of order (positions with a gap), an utterance without text, and one
    utterance outside any dialogue."""
    return pd.DataFrame({
        "sample_id": ["a3", "a0", "a1", "b0", "b1", "b2", "solo"],
        "dialogue_id": ["a", "a", "a", "b", "b", "b", pd.NA],
        "position": pd.array([3, 0, 1, 0, 1, 2, pd.NA], dtype="Int64"),
        "speaker": ["Ross", "Rachel", "Ross", "Joey", pd.NA, "Joey", "Monica"],
        "text": [CORPUS[2], CORPUS[0], CORPUS[1], CORPUS[4], pd.NA, CORPUS[5], CORPUS[6]],
    }, index=[10, 11, 12, 13, 14, 15, 16])


def test_context_stays_in_its_dialogue_in_position_order(dialogues):
    contexts = dialogue_contexts(dialogues, before=None, after=2, speaker_tags=False)
    by_id = dict(zip(dialogues["sample_id"], contexts))
    assert by_id["a0"] == Context((), CORPUS[0], (CORPUS[1], CORPUS[2]))  # a's last is b's neighbour nowhere
    assert by_id["a3"] == Context((CORPUS[0], CORPUS[1]), CORPUS[2], ())  # position 2 missing: next row is 3
    assert by_id["b0"] == Context((), CORPUS[4], (None, CORPUS[5]))  # the text-less utterance keeps its slot
    assert by_id["solo"] == Context((), CORPUS[6], ())  # no dialogue: no context


def test_speaker_tags_and_a_limited_window(dialogues):
    contexts = dialogue_contexts(dialogues, before=1, after=1, speaker_tags=True)
    by_id = dict(zip(dialogues["sample_id"], contexts))
    assert by_id["a3"] == Context((f"Ross: {CORPUS[1]}",), f"Ross: {CORPUS[2]}", ())
    assert by_id["b2"] == Context((None,), f"Joey: {CORPUS[5]}", ())
    assert by_id["solo"].current == f"Monica: {CORPUS[6]}"
    no_speaker = dialogues.drop(columns="speaker")
    assert dialogue_contexts(no_speaker, 1, 1, True)[1].current == CORPUS[0]  # untagged without speakers


def test_windows_are_padded_with_gaps_at_dialogue_edges():
    assert padded_window(Context(("p",), "c", ()), before=2, after=1) == [None, "p", "c", None]
    assert padded_window(Context((), "c", ("n1", "n2")), before=0, after=2) == ["c", "n1", "n2"]


def test_joined_dialogue_mode_tags_speakers(tiny_roberta, dialogues):  # noqa: F811
    extractor = build_extractor(
        "hf-text", model=str(tiny_roberta), mode="dialogue", context_before=1, context_after=1, speaker_tags=True
    )
    text = extractor.prepare(dialogues)[MODEL_TEXT_COLUMN]
    assert text[12] == f"Rachel: {CORPUS[0]}</s></s>Ross: {CORPUS[1]}</s></s>Ross: {CORPUS[2]}"
    assert pd.isna(text[14])  # no text: extraction reports it


@pytest.fixture(scope="module")
def concat(tiny_roberta):  # noqa: F811
    return build_extractor(
        "hf-text", model=str(tiny_roberta), pooling="mean", mode="concat", context_before=1, context_after=1,
        speaker_tags=True, batch_size=2, device="cpu",
    )


def test_concat_is_the_window_of_separately_encoded_utterances(concat, dialogues):
    prepared = concat.prepare(dialogues)
    assert list(prepared.index) == list(dialogues.index)
    outputs = extract_samples([concat], dialogues)[concat.feature_set_name]
    by_id = dict(zip(dialogues["sample_id"], outputs))
    assert concat.dim == 3 * 16 and by_id["a1"].values.shape == (48,)
    alone = {t: concat.encode([t])[0] for t in (f"Rachel: {CORPUS[0]}", f"Ross: {CORPUS[1]}", f"Ross: {CORPUS[2]}")}
    expected = np.concatenate([alone[f"Rachel: {CORPUS[0]}"], alone[f"Ross: {CORPUS[1]}"], alone[f"Ross: {CORPUS[2]}"]])
    np.testing.assert_allclose(by_id["a1"].values, expected, atol=1e-5)
    first, last = by_id["a0"].values.reshape(3, 16), by_id["a3"].values.reshape(3, 16)
    assert not first[0].any() and first[1:].all()  # nothing before a dialogue's first utterance: zeros
    assert not last[2].any() and last[:2].all()
    assert not by_id["b0"].values.reshape(3, 16)[2].any()  # the neighbour without text: zeros
    assert isinstance(by_id["b1"], ExtractionError) and "no text" in str(by_id["b1"])
    solo = by_id["solo"].values.reshape(3, 16)
    assert not solo[0].any() and not solo[2].any()


def test_concat_does_not_depend_on_batching_or_order(concat, tiny_roberta, dialogues):  # noqa: F811
    reference = extract_samples([concat], dialogues)[concat.feature_set_name]
    other = build_extractor(
        "hf-text", model=str(tiny_roberta), pooling="mean", mode="concat", context_before=1, context_after=1,
        speaker_tags=True, batch_size=5, device="cpu",
    )
    assert other.fingerprint() == concat.fingerprint()
    shuffled = dialogues.sample(frac=1, random_state=3)
    again = dict(zip(shuffled["sample_id"], extract_samples([other], shuffled)[other.feature_set_name]))
    for sample_id, features in zip(dialogues["sample_id"], reference):
        if not isinstance(features, ExtractionError):
            np.testing.assert_allclose(again[sample_id].values, features.values, atol=1e-5)


def test_concat_fingerprint_follows_the_neighbours(concat, dialogues):
    rows = concat.prepare(dialogues).to_dict(orient="records")
    edited = dialogues.assign(text=dialogues["text"].where(dialogues["sample_id"] != "a1", "something else"))
    edited_rows = concat.prepare(edited).to_dict(orient="records")
    fingerprints = [concat.input_fingerprint(r) for r in (rows[0], rows[3], edited_rows[0], edited_rows[3])]
    assert fingerprints[0] != fingerprints[2]  # a3 sees a1, whose text changed
    assert fingerprints[1] == fingerprints[3]  # b0 does not
    with pytest.raises(ExtractionError, match="prepare"):
        concat.input_fingerprint(dialogues.iloc[0].to_dict())


def test_concat_needs_a_fixed_window(tiny_roberta):  # noqa: F811
    with pytest.raises(ConfigError, match="concat mode needs context_before"):
        build_extractor("hf-text", model=str(tiny_roberta), mode="concat")


def test_batches_go_longest_first_and_results_keep_their_samples(tiny_roberta):  # noqa: F811
    extractor = build_extractor("hf-text", model=str(tiny_roberta), pooling="mean", batch_size=3, device="cpu")
    texts = [CORPUS[i] for i in (6, 0, 3, 7, 1, 4, 2)]
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(7)], "text": texts})
    order = extractor.batch_order(table.to_dict(orient="records"))
    assert [len(texts[i]) for i in order] == sorted(map(len, texts), reverse=True)
    outputs = extract_samples([extractor], table)[extractor.feature_set_name]
    for text, features in zip(texts, outputs):
        np.testing.assert_allclose(features.values, extractor.encode([text])[0], atol=1e-5)


def test_the_minilm_context_preset_is_a_five_utterance_window():
    from emocli.features.presets import build_extractor as build_preset

    extractor = build_preset("minilm-context-meld")
    assert (extractor.dim, extractor.params.speaker_tags) == (5 * 384, True)


def test_new_parameters_at_their_default_keep_stored_feature_sets_matching():
    plain = build_extractor("hf-text", model="minilm", pooling="mean")
    assert "speaker_tags" not in plain.identity_params()
    tagged = build_extractor("hf-text", model="minilm", pooling="mean", speaker_tags=True)
    assert tagged.identity_params()["speaker_tags"] is True and tagged.fingerprint() != plain.fingerprint()
    glove = build_extractor("glove")
    assert set(glove.identity_params()) == {"path", "output", "lowercase", "max_tokens", "oov"}


# -- GloVe -------------------------------------------------------------------------------------------


def test_glove_concat_puts_the_neighbours_means_side_by_side(dialogues):
    utterance = build_extractor("glove")
    concat = build_extractor("glove", mode="concat", context_before=1, context_after=1)
    assert concat.dim == 150
    prepared = concat.prepare(dialogues)
    assert prepared.loc[12, WINDOW_COLUMN] == [CORPUS[0], CORPUS[1], CORPUS[2]]
    middle = concat.extract(prepared.loc[12].to_dict()).values.reshape(3, 50)
    for slot, text in enumerate(CORPUS[:3]):
        np.testing.assert_allclose(middle[slot], utterance.extract({"text": text}).values, atol=1e-6)
    first = concat.extract(prepared.loc[11].to_dict()).values.reshape(3, 50)
    assert not first[0].any() and first[1].any()
    with pytest.raises(ConfigError, match="needs output='mean'"):
        build_extractor("glove", output="sequence", mode="concat")
