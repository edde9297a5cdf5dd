"""Words alone with the shipped model: `emo predict --text "..."` and `emo predict line.txt` give emo-default's
text head's predictions (its speech head has nothing to hear, which is no failure), and an input that cannot
be predicted is one failure line, whichever heads failed on it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emocli.cli import app
from emocli.runs.hub import pretrained_folder

pytestmark = pytest.mark.skipif(not (pretrained_folder("emo-default") / "bundle.json").is_file(),
                                reason="emocli/pretrained/emo-default is built by `make pretrained`")


@pytest.fixture(scope="module")
def predictor():
    import emocli

    return emocli.load_predictor()


def test_text_alone_is_predicted_by_the_text_head(predictor, tmp_path):
    result = predictor.predict([], text="I can't believe you did this")
    assert not result.failures and not result.notes
    (row,) = result.table.itertuples()
    assert row.text == "I can't believe you did this" and row.heads == 1 and row.input == "--text"
    (text_head,) = [head for head in predictor.heads if head.name == "text"]
    assert row.label in predictor.label_names and text_head.mapping[row.text_label] == row.label  # it alone decides
    assert abs(result.probabilities.sum() - 1.0) < 1e-6

    lines = tmp_path / "line.txt"
    lines.write_text("I can't believe you did this\n\nThank you so much, this is wonderful\n", encoding="utf-8")
    result = predictor.predict([lines])
    assert not result.failures
    assert result.table["text"].tolist() == ["I can't believe you did this", "Thank you so much, this is wonderful"]
    assert result.table["segment"].tolist() == [0, 1] and (result.table["heads"] == 1).all()


def test_the_command_prints_a_table_and_one_failure_per_input(tmp_path):
    lines = tmp_path / "line.txt"
    lines.write_text("I can't believe you did this\n", encoding="utf-8")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = CliRunner().invoke(app, ["predict", str(lines), str(empty), str(tmp_path / "missing.wav")])
    assert result.exit_code == 1
    assert "believe" in result.output  # the text file's table (`emo predict --text` runs in test_readme.py)
    failed = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2, result.output  # one per input, not one per head
    assert any("empty.mp4" in line and "file is empty" in line for line in failed)
    assert any("missing.wav" in line and "no such file" in line for line in failed)
    assert "2 failure(s); 1 input(s) predicted" in result.output
