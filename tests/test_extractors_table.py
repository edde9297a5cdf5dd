"""clip-table: per-clip features joined from a Parquet/CSV table (RAVDESS OpenFace action units)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.presets import build_extractor
from emocli.features.visual.table import ClipTableExtractor


def test_ravdess_action_units(ravdess_root):
    path = ravdess_root / "openface_au.parquet"
    extractor = build_extractor("clip-table", path=str(path))
    table = pd.read_parquet(path)
    row = table.iloc[7]
    features = extractor.extract({"sample_id": "s", "clip_key": row["clip"]})
    assert extractor.kind == "vector" and extractor.modality == "visual"
    assert extractor.dim == 35 and extractor.feature_names() == [c for c in table.columns if c != "clip"]
    np.testing.assert_array_equal(features.values, row.drop("clip").to_numpy(dtype=np.float32))
    with pytest.raises(ExtractionError, match="no row with clip = '99-99'") as raised:
        extractor.extract({"sample_id": "s", "clip_key": "99-99"})
    assert raised.value.path == path


@pytest.fixture()
def csv_table(tmp_path):
    path = tmp_path / "features.csv"
    pd.DataFrame({
        "id": [1, 2, 3],
        "note": ["a", "b", "c"],  # not numeric: never a feature
        "x": [0.5, 1.5, np.nan],
        "y": [10, 20, 30],
    }).to_csv(path, index=False)
    return path


def test_csv_numeric_columns_and_string_keys(csv_table):
    extractor = ClipTableExtractor(path=str(csv_table), key_column="id", sample_key="video")
    assert extractor.feature_names() == ["x", "y"]
    np.testing.assert_array_equal(extractor.extract({"video": "2"}).values, [1.5, 20])
    np.testing.assert_array_equal(extractor.extract({"video": 1}).values, [0.5, 10])  # keys compare as text


def test_chosen_columns_in_their_order(csv_table):
    extractor = ClipTableExtractor(path=str(csv_table), key_column="id", columns=("y", "x"))
    np.testing.assert_array_equal(extractor.extract({"clip_key": "1"}).values, [10, 0.5])
    assert extractor.spec()["params"]["columns"] == ["y", "x"]


def test_missing_values_and_keys_are_extraction_errors(csv_table):
    extractor = ClipTableExtractor(path=str(csv_table), key_column="id")
    with pytest.raises(ExtractionError, match="missing values in x"):
        extractor.extract({"clip_key": "3"})
    with pytest.raises(ExtractionError, match="no 'clip_key'") as raised:
        extractor.extract({"sample_id": "s9", "clip_key": pd.NA})
    assert raised.value.row == "s9"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"key_column": "clip"}, "no key column 'clip'"),
        ({"key_column": "id", "columns": ("x", "z")}, "no column"),
        ({"key_column": "id", "columns": ("note",)}, "not numeric"),
    ],
)
def test_table_problems_are_config_errors(csv_table, params, message):
    with pytest.raises(ConfigError, match=message):
        ClipTableExtractor(path=str(csv_table), **params).dim
    with pytest.raises(ConfigError, match="not found"):
        ClipTableExtractor(path=str(csv_table.parent / "absent.csv")).dim


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.parquet"
    pd.DataFrame({"clip": ["a", "a"], "v": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(ConfigError, match="'a' appears more than once"):
        ClipTableExtractor(path=str(path)).dim


def test_path_is_required():
    with pytest.raises(ConfigError, match="path: Field required"):
        build_extractor("clip-table")


def test_input_fingerprint_follows_table_and_key(csv_table):
    extractor = ClipTableExtractor(path=str(csv_table), key_column="id")
    before = extractor.input_fingerprint({"clip_key": "1"})
    assert before != extractor.input_fingerprint({"clip_key": "2"})
    stat = csv_table.stat()
    os.utime(csv_table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert extractor.input_fingerprint({"clip_key": "1"}) != before


def test_pickles_without_the_table(csv_table):
    extractor = ClipTableExtractor(path=str(csv_table), key_column="id")
    extractor.extract({"clip_key": "1"})
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone._rows is None
    np.testing.assert_array_equal(clone.extract({"clip_key": "2"}).values, [1.5, 20])
