"""Extraction presets: each validates against its extractor, prints as editable TOML, takes overrides."""

from __future__ import annotations

import tomllib

import pytest
from plugins import activate, write_plugin

from emocli.core.errors import ConfigError
from emocli.core.settings import parse_value
from emocli.core.types import Features
from emocli.features import EXTRACTORS, extractor_class
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.presets import build_extractor, feature_set_label, preset_of, preset_text, split_overrides
from emocli.features.presets import extraction_presets as preset_names
from emocli.features.presets import read_preset as load_preset

REQUIRED = {
    "compare2016", "egemaps", "egemaps-lld", "mfcc", "mfcc-cfnsr", "roberta", "roberta-context",
    "minilm", "glove", "glove-seq", "openface-au", "face-mobilenet", "face-mobilenet-seq",
}


class TablePath(Extractor):
    """A stand-in with a path parameter, for the {root} placeholder."""

    name = "table-path"
    modality = "visual"
    kind = "vector"

    class Params(ExtractorParams):
        path: str = "features.parquet"
        width: int = 2

    @property
    def dim(self) -> int:
        return self.params.width

    def input_fingerprint(self, sample) -> str:
        return sample["sample_id"]

    def extract(self, sample) -> Features:
        return Features([0.0] * self.params.width)


def test_the_required_presets_exist_and_validate_against_their_extractor(tmp_path):
    assert REQUIRED <= set(preset_names())
    for name in preset_names():
        preset = load_preset(name)
        assert preset.extractor in EXTRACTORS, name
        assert preset.description, name
        params = {k: v.replace("{root}", str(tmp_path)) if isinstance(v, str) else v for k, v in preset.params.items()}
        extractor_class(preset.extractor).Params.model_validate(params)  # raises on a misspelt key


@pytest.mark.parametrize(
    ("preset", "kind", "dim"),
    [("compare2016", "vector", 6373), ("egemaps", "vector", 88), ("egemaps-lld", "sequence", 25),
     ("mfcc", "sequence", 13), ("mfcc-cfnsr", "sequence", 13), ("glove", "vector", 50), ("glove-seq", "sequence", 50)],
)
def test_presets_give_the_documented_shapes(preset, kind, dim):
    extractor = build_extractor(preset)
    assert (extractor.kind, extractor.dim) == (kind, dim)


def test_mfcc_cfnsr_is_the_papers_fixed_length_input(ravdess_root):
    clip = next((ravdess_root / "audio" / "Actor_01").glob("*.flac"))
    features = build_extractor("mfcc-cfnsr").extract({"sample_id": "x", "audio_path": str(clip)})
    assert features.values.shape == (212, 13)
    assert features.times[0] == pytest.approx(0.5)


def test_shown_text_saved_and_edited_is_a_preset_file(tmp_path):
    text = preset_text("mfcc-cfnsr")
    assert tomllib.loads(text)["extractor"] == "mfcc"
    edited = tmp_path / "my-mfcc.toml"
    edited.write_text(text.replace("n_mfcc = 13", "n_mfcc = 20"))
    preset = load_preset(str(edited))
    assert preset.name == "my-mfcc" and preset.params["n_mfcc"] == 20
    assert build_extractor(str(edited)).dim == 20
    assert build_extractor(str(edited)).feature_set_name != build_extractor("mfcc-cfnsr").feature_set_name


def test_overrides_are_typed_and_grouped_by_choice():
    assert parse_value("20") == 20 and parse_value("2.45") == 2.45 and parse_value("true") is True
    assert parse_value("none") is None and parse_value("roberta-large") == "roberta-large"
    assert parse_value('"01"') == "01" and parse_value("[1, 2]") == [1, 2]
    grouped = split_overrides(["mfcc.n_mfcc=20", "mfcc.hop_length=256", "my.preset.model=x/y"])
    assert grouped == {"mfcc": {"n_mfcc": 20, "hop_length": 256}, "my.preset": {"model": "x/y"}}
    assert build_extractor("mfcc-cfnsr", grouped["mfcc"]).params.hop_length == 256
    with pytest.raises(ConfigError, match="NAME.PARAM=VALUE"):
        split_overrides(["n_mfcc=20"])


def test_bad_presets_and_parameters_name_the_file_and_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"mfcc-cfnsr.toml: invalid parameters for mfcc: n_mfc: Extra inputs"):
        build_extractor("mfcc-cfnsr", {"n_mfc": 20})
    with pytest.raises(ConfigError, match="n_mfcc: Input should be greater than 0"):
        build_extractor("mfcc", {"n_mfcc": 0})
    with pytest.raises(ConfigError, match="neither a preset .* nor an extractor"):
        build_extractor("compare2017")
    broken = tmp_path / "broken.toml"
    broken.write_text('extractor = "mfcc"\n[params\n')
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_preset(str(broken))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('extractor = "mfcc"\nparameters = {}\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        load_preset(str(unknown))
    with pytest.raises(ConfigError, match="preset file not found"):
        load_preset(str(tmp_path / "absent.toml"))


def test_root_placeholder_and_plugin_extractors(tmp_path, monkeypatch):
    """A third-party extractor is registered through the entry-point group `emocli.extractors`, as a pip
    install would; a preset names it like a built-in, and "{root}" is filled with the dataset root."""
    plugin = write_plugin(tmp_path / "site", "emo-table-path", "emocli.extractors", {"table-path": "test_presets:TablePath"}, {})
    activate(plugin, monkeypatch)
    preset = tmp_path / "own.toml"
    preset.write_text('extractor = "table-path"\n[params]\npath = "{root}/au.parquet"\n')
    extractor = build_extractor(str(preset), {"width": 3}, root=tmp_path)
    assert isinstance(extractor, TablePath)
    assert extractor.params.path == f"{tmp_path}/au.parquet" and extractor.dim == 3
    with pytest.raises(ConfigError, match="no dataset root"):
        build_extractor(str(preset))


def test_an_extractor_is_never_imported_from_a_module_string(tmp_path, monkeypatch):
    """A preset or a run's feature spec naming "module:Class" does not import it: names are resolved in the
    registry only, so a file cannot make emo run code."""
    marker = tmp_path / "imported"
    (tmp_path / "hostile_extractor.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = tmp_path / "hostile.toml"
    preset.write_text('extractor = "hostile_extractor:Anything"\n')
    for name in ("hostile_extractor:Anything", "this:s"):
        with pytest.raises(ConfigError, match="unknown extractor"):
            extractor_class(name)
    with pytest.raises(ConfigError, match="unknown extractor"):
        build_extractor(str(preset))
    assert not marker.exists()


def test_a_feature_set_is_shown_by_the_preset_that_makes_it(tmp_path):
    """Whatever the choice was called (the preset, or its extractor with the preset's parameters), the
    preset whose parameters make the feature set names it; other parameters, or no root for a preset that
    reads under {root}, leave the hashed name alone."""
    minilm = build_extractor("minilm")
    assert preset_of("hf-text", minilm.identity_params()) == "minilm"
    assert preset_of("hf-text", build_extractor("hf-text", {"model": "minilm", "pooling": "mean"}).identity_params()) \
        == "minilm"
    assert preset_of("hf-text", build_extractor("minilm", {"pooling": "cls"}).identity_params()) is None
    assert preset_of("glove", minilm.identity_params()) is None
    table = build_extractor("openface-au", root=tmp_path)
    assert preset_of("clip-table", table.identity_params(), tmp_path) == "openface-au"
    assert preset_of("clip-table", table.identity_params()) is None
    name = minilm.feature_set_name
    assert feature_set_label(name, "minilm") == f"minilm ({name})" and feature_set_label(name, None) == name
