"""Face detection, alignment and cropping (emocli.features.visual.faces) and the packaged weights' checks."""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import pytest
from media import (
    FACE_PHOTO_BOX,
    FACE_PHOTO_EYES,
    box_overlap,
    face_box_in_video,
    face_photo,
    needs_haar,
    needs_mtcnn,
    write_video,
)

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.visual.faces import (
    NO_FACE,
    Face,
    HaarDetector,
    MtcnnDetector,
    aligned_crop,
    centre_square,
    crop_resize,
    crop_transform,
    face_crops,
    face_detector,
    full_frames,
)
from emocli.features.visual.video import read_frames
from emocli.features.visual.weights import MTCNN_WEIGHTS, PackagedWeights, verified_path


def plain_frames(n: int) -> np.ndarray:
    ramp = np.linspace(30, 220, 160, dtype=np.uint8)[None, :, None]
    return np.repeat(np.repeat(ramp, 120, axis=0), 3, axis=2)[None].repeat(n, axis=0)


def face_frame() -> np.ndarray:
    frame = plain_frames(1)[0].copy()
    frame[10:110, 37:122] = cv2.resize(face_photo(), (85, 100), interpolation=cv2.INTER_AREA)
    return frame


def photo_on_canvas(angle: float = 0.0, canvas: tuple[int, int] = (560, 480)):
    """The photo in the middle of a grey canvas (width, height), turned `angle` degrees counter-clockwise
    on screen about the canvas centre; returns the frame and the hand-marked eyes and face box in it."""
    width, height = canvas
    photo = face_photo()
    frame = np.full((height, width, 3), 128, np.uint8)
    left, top = (width - photo.shape[1]) // 2, (height - photo.shape[0]) // 2
    frame[top : top + photo.shape[0], left : left + photo.shape[1]] = photo
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    frame = cv2.warpAffine(frame, turn, (width, height), borderValue=(128, 128, 128))
    eyes = (np.asarray(FACE_PHOTO_EYES) + (left, top)) @ turn[:, :2].T + turn[:, 2]
    x, y, w, h = FACE_PHOTO_BOX
    return frame, eyes, (x + left, y + top, w, h)


def through(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def test_centre_square_and_crop_resize():
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[:, 20:80] = 255  # the centre square is exactly the white band
    assert centre_square(frame.shape) == (20, 0, 60, 60)
    crop = crop_resize(frame, centre_square(frame.shape), 32)
    assert crop.shape == (32, 32, 3) and crop.min() == 255
    assert full_frames(np.stack([frame, frame]), 16).shape == (2, 16, 16, 3)


def test_crop_transform_centres_the_box_with_its_margin_and_levels_the_eyes():
    # A face box (40, 30, 20x20) with eyes 30 degrees off level, cut with margin 0.5 into 40 px.
    eyes = np.array([[45.0, 35.0], [45 + 10 * math.cos(math.pi / 6), 35 + 10 * math.sin(math.pi / 6)]])
    face = Face(box=(40.0, 30.0, 20.0, 20.0), landmarks=np.vstack([eyes, np.zeros((3, 2))]))
    assert face.eye_angle() == pytest.approx(30.0)

    upright = crop_transform(face, size=40, margin=0.5, align=False)
    # Side 20 * (1 + 2 * 0.5) = 40: the box's corners land 10 px inside the crop's, at scale 1.
    np.testing.assert_allclose(through(upright, [[40, 30], [60, 50]]), [[10, 10], [30, 30]], atol=1e-9)

    aligned = crop_transform(face, size=40, margin=0.5, align=True)
    np.testing.assert_allclose(through(aligned, [face.centre]), [[20, 20]], atol=1e-9)  # the centre stays
    left, right = through(aligned, eyes)
    assert right[1] == pytest.approx(left[1]) and right[0] - left[0] == pytest.approx(10)
    # Without landmarks (the Haar detector) alignment leaves the crop upright.
    boxed = Face(box=face.box)
    np.testing.assert_allclose(crop_transform(boxed, 40, 0.5, align=True), upright)


def test_aligned_crop_shrinks_with_area_averaging_and_pads_outside_the_frame_with_black():
    # Fine stripes one pixel wide: bilinear sampling at 1/8 scale would alias, area averaging gives grey.
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[:, ::2] = 255
    crop = aligned_crop(frame, Face(box=(100.0, 100.0, 200.0, 200.0)), size=25, margin=0.0)
    assert crop.shape == (25, 25, 3)
    assert np.abs(crop[2:-2, 2:-2].astype(int) - 128).max() <= 8
    # A face at the corner: the part of the square outside the frame is black, the rest is the frame.
    corner = aligned_crop(np.full((100, 100, 3), 200, np.uint8), Face(box=(0.0, 0.0, 20.0, 20.0)), 40, 0.5)
    assert corner[:8, :8].max() == 0 and corner[-8:, -8:].min() == 200


@needs_mtcnn
def test_mtcnn_finds_the_hand_marked_face_and_eyes():
    detector = face_detector()
    assert isinstance(detector, MtcnnDetector) and detector is face_detector("mtcnn")  # one per process
    frame, eyes, box = photo_on_canvas()
    face = detector.detect(frame)
    assert face is not None and face.score > 0.9
    assert box_overlap(face.box, box) > 0.65
    eye_distance = np.linalg.norm(eyes[1] - eyes[0])
    assert np.linalg.norm(face.landmarks[:2] - eyes, axis=1).max() < 0.15 * eye_distance
    assert detector.detect(plain_frames(1)[0]) is None
    assert detector.detect_batch(np.zeros((2, 16, 16, 3), np.uint8)) == [None, None]  # too small for a face


@needs_mtcnn
def test_alignment_levels_the_eyes_of_a_turned_face():
    frame, eyes, _ = photo_on_canvas(angle=25.0)
    assert math.degrees(math.atan2(*(eyes[1] - eyes[0])[::-1])) == pytest.approx(-27.6, abs=0.5)
    face = face_detector().detect(frame)
    assert face is not None and face.eye_angle() == pytest.approx(-27.6, abs=2)

    def eye_tilt(matrix):
        left, right = through(matrix, eyes)
        return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))

    assert abs(eye_tilt(crop_transform(face, 112, 0.2, align=False))) > 20
    assert abs(eye_tilt(crop_transform(face, 112, 0.2, align=True))) < 3
    # The aligned crop is upright enough for the detector to find the same level eyes in it again.
    again = face_detector().detect(aligned_crop(frame, face, 160, 0.3))
    assert again is not None and abs(again.eye_angle()) < 3


@needs_mtcnn
@needs_haar
def test_mtcnn_finds_a_tilted_face_the_haar_cascade_misses():
    for angle, haar_finds in ((10.0, True), (30.0, False)):
        frame, _, box = photo_on_canvas(angle=angle)
        assert (face_detector("haar").detect(frame) is not None) == haar_finds
        face = face_detector("mtcnn").detect(frame)
        assert face is not None and box_overlap(face.box, box) > 0.3  # the upright box of a turned face
    frame, _, _ = photo_on_canvas(angle=40.0)
    assert face_detector("mtcnn").detect(frame) is not None


@needs_mtcnn
def test_mtcnn_crops_land_on_the_face_in_a_decoded_h264_video(tmp_path):
    size = (320, 240)
    path = write_video(tmp_path / "face.mp4", seconds=1, fps=10, size=size, face=True)
    sampled = read_frames(path, n_frames=4)
    faces = face_detector().detect_batch(sampled.frames)
    assert all(face is not None for face in faces)
    assert min(box_overlap(face.box, face_box_in_video(size)) for face in faces) > 0.65

    crops = face_crops(sampled.frames, sampled.times, size=64, margin=0.2, fallback="error", missing="skip")
    assert crops.report.with_face == 4 and crops.images.shape == (4, 64, 64, 3) and crops.flags == ()
    # The crop holds the face, not the background ramp: skin tones (red above blue) at its centre.
    centre = crops.images[:, 24:40, 24:40].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[2] + 20


def test_mtcnn_weights_are_checked_before_they_are_read():
    pytest.importorskip("facenet_pytorch")
    assert verified_path(MTCNN_WEIGHTS["onet"]).name == "onet.pt"
    tampered = PackagedWeights("facenet-pytorch==2.6.0", "facenet_pytorch", "data/onet.pt", "0" * 64)
    with pytest.raises(ConfigError, match="differs from the pinned 0000000000000000") as error:
        verified_path(tampered)
    assert str(error.value).startswith(str(verified_path(MTCNN_WEIGHTS["onet"])))
    absent = PackagedWeights("no-such-weights==1.0", "no_such_weights", "w.pt", "0" * 64)
    with pytest.raises(ConfigError, match=r"pip install --no-deps no-such-weights==1.0"):
        verified_path(absent)


def test_without_facenet_pytorch_mtcnn_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    monkeypatch.setitem(sys.modules, "facenet_pytorch.models.mtcnn", None)
    with pytest.raises(ConfigError, match="facenet-pytorch==2.6.0.*detector=haar"):
        MtcnnDetector()


def test_an_unknown_detector_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown face detector 'dlib'"):
        face_detector("dlib")


@pytest.mark.skipif(hasattr(cv2, "CascadeClassifier"), reason="this OpenCV has the Haar cascade")
def test_without_the_haar_cascade_the_haar_detector_is_a_config_error():
    with pytest.raises(ConfigError, match="opencv-python-headless<5"):
        HaarDetector()


@needs_haar
def test_haar_finds_the_largest_face_and_nothing_in_a_plain_frame():
    detector = face_detector("haar")
    assert isinstance(detector, HaarDetector) and detector is face_detector("haar")
    face = detector.detect(face_frame())
    assert face is not None and face.landmarks is None
    x, y, w, h = face.box
    assert 37 <= x and x + w <= 122 and 10 <= y and y + h <= 110 and w >= 30
    assert detector.detect(plain_frames(1)[0]) is None
    # A large frame is detected on a downscaled copy; the box comes back in full-frame pixels.
    big = cv2.resize(face_frame(), (640, 480), interpolation=cv2.INTER_LINEAR)
    big_face = detector.detect(big)
    assert big_face is not None and abs(big_face.box[0] - 4 * x) < 24 and abs(big_face.box[2] - 4 * w) < 32


@pytest.mark.parametrize(
    "detector", [pytest.param("mtcnn", marks=needs_mtcnn), pytest.param("haar", marks=needs_haar)]
)
def test_frames_without_a_face_are_skipped_or_take_the_nearest_face(detector):
    frames = np.stack([face_frame(), plain_frames(1)[0], plain_frames(1)[0], face_frame()])
    frames[3] = np.roll(frames[3], 20, axis=1)  # the last face sits further right
    times = np.array([0.0, 0.1, 0.2, 0.3])
    options = dict(size=32, margin=0.1, fallback="error", detector=detector)

    skipped = face_crops(frames, times, missing="skip", **options)
    assert skipped.report.sampled == 4 and skipped.report.with_face == 2 and skipped.report.fallback is None
    assert skipped.flags == ()  # some frames have a face: the clip is not flagged
    np.testing.assert_allclose(skipped.times, [0.0, 0.3])

    nearest = face_crops(frames, times, missing="nearest", **options)
    assert len(nearest.images) == 4
    np.testing.assert_array_equal(nearest.times, times)
    # Frame 1 is cut with frame 0's face and frame 2 with frame 3's: plain ramp crops from different places.
    assert not np.array_equal(nearest.images[1], nearest.images[2])
    np.testing.assert_array_equal(nearest.images[0], skipped.images[0])


@needs_mtcnn
@pytest.mark.parametrize("fallback", ["full_frame", "zeros", "error"])
def test_a_clip_without_any_face_gets_the_fallback_and_the_no_face_flag(fallback):
    frames, times = plain_frames(3), np.array([0.0, 0.5, 1.0])
    if fallback == "error":
        with pytest.raises(ExtractionError, match="no face found in any of the 3") as error:
            face_crops(frames, times, size=32, margin=0.2, fallback=fallback, missing="skip", path="x.mp4")
        assert str(error.value).startswith("x.mp4: ")
        return
    crops = face_crops(frames, times, size=32, margin=0.2, fallback=fallback, missing="skip")
    assert crops.flags == (NO_FACE,)
    assert crops.report.to_json() == {"sampled": 3, "with_face": 0, "fallback": fallback}
    np.testing.assert_array_equal(crops.times, times)
    if fallback == "zeros":
        assert crops.zeros and not crops.images.any()
    else:
        assert not crops.zeros
        np.testing.assert_array_equal(crops.images, full_frames(frames, 32))
