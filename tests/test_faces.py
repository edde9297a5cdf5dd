"""Face detection and cropping (emocli.features.visual.faces)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media import face_photo, needs_haar, write_video

from emocli.core.errors import ConfigError, ExtractionError
from emocli.features.visual.faces import (
    FaceDetector,
    centre_square,
    crop_resize,
    face_crops,
    face_detector,
    full_frames,
    square_box,
)
from emocli.features.visual.video import read_frames


def test_square_box_adds_margin_and_stays_inside_the_frame():
    assert square_box((40, 30, 20, 20), margin=0.5, frame_shape=(100, 200, 3)) == (30, 20, 40, 40)
    # Near the corner the square is shifted in, not padded.
    assert square_box((0, 0, 20, 30), margin=0.5, frame_shape=(100, 200, 3)) == (0, 0, 60, 60)
    # Never larger than the frame's shorter side.
    assert square_box((50, 10, 80, 80), margin=1.0, frame_shape=(100, 200, 3)) == (40, 0, 100, 100)


def test_centre_square_and_crop_resize():
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[:, 20:80] = 255  # the centre square is exactly the white band
    assert centre_square(frame.shape) == (20, 0, 60, 60)
    crop = crop_resize(frame, centre_square(frame.shape), 32)
    assert crop.shape == (32, 32, 3) and crop.min() == 255
    assert full_frames(np.stack([frame, frame]), 16).shape == (2, 16, 16, 3)


def plain_frames(n: int) -> np.ndarray:
    ramp = np.linspace(30, 220, 160, dtype=np.uint8)[None, :, None]
    return np.repeat(np.repeat(ramp, 120, axis=0), 3, axis=2)[None].repeat(n, axis=0)


def face_frame() -> np.ndarray:
    frame = plain_frames(1)[0].copy()
    frame[10:110, 37:122] = cv2.resize(face_photo(), (85, 100), interpolation=cv2.INTER_AREA)
    return frame


@pytest.mark.skipif(hasattr(cv2, "CascadeClassifier"), reason="this OpenCV has the Haar cascade")
def test_without_the_haar_cascade_face_cropping_is_a_config_error():
    with pytest.raises(ConfigError, match="opencv-python-headless<5"):
        FaceDetector()


@needs_haar
def test_detector_finds_the_largest_face_and_nothing_in_a_plain_frame():
    detector = face_detector()
    assert detector is face_detector()  # one per process
    box = detector.detect(face_frame())
    assert box is not None
    x, y, w, h = box
    assert 37 <= x and x + w <= 122 and 10 <= y and y + h <= 110 and w >= 30
    assert detector.detect(plain_frames(1)[0]) is None
    # A large frame is detected on a downscaled copy; the box comes back in full-frame pixels.
    big = cv2.resize(face_frame(), (640, 480), interpolation=cv2.INTER_LINEAR)
    big_box = detector.detect(big)
    assert big_box is not None and abs(big_box[0] - 4 * x) < 24 and abs(big_box[2] - 4 * w) < 32


@needs_haar
def test_detects_faces_in_a_decoded_h264_video(tmp_path):
    path = write_video(tmp_path / "face.mp4", seconds=1, fps=10, size=(160, 120), face=True)
    sampled = read_frames(path, n_frames=4)
    crops = face_crops(sampled.frames, sampled.times, size=48, margin=0.2, fallback="error", missing="skip")
    assert crops.report.with_face == 4 and crops.images.shape == (4, 48, 48, 3)


@needs_haar
def test_frames_without_a_face_are_skipped_or_take_the_nearest_box():
    frames = np.stack([face_frame(), plain_frames(1)[0], plain_frames(1)[0], face_frame()])
    frames[3] = np.roll(frames[3], 20, axis=1)  # the last face sits further right
    times = np.array([0.0, 0.1, 0.2, 0.3])

    skipped = face_crops(frames, times, size=32, margin=0.1, fallback="error", missing="skip")
    assert skipped.report.sampled == 4 and skipped.report.with_face == 2 and skipped.report.fallback is None
    np.testing.assert_allclose(skipped.times, [0.0, 0.3])

    nearest = face_crops(frames, times, size=32, margin=0.1, fallback="error", missing="nearest")
    assert len(nearest.images) == 4
    np.testing.assert_array_equal(nearest.times, times)
    # Frame 1 is cut with frame 0's box and frame 2 with frame 3's: plain ramp crops from different places.
    assert not np.array_equal(nearest.images[1], nearest.images[2])
    np.testing.assert_array_equal(nearest.images[0], skipped.images[0])


@needs_haar
@pytest.mark.parametrize("fallback", ["full_frame", "zeros", "error"])
def test_a_clip_without_any_face_gets_the_fallback(fallback):
    frames, times = plain_frames(3), np.array([0.0, 0.5, 1.0])
    if fallback == "error":
        with pytest.raises(ExtractionError, match="no face found in any of the 3") as error:
            face_crops(frames, times, size=32, margin=0.2, fallback=fallback, missing="skip", path="x.mp4")
        assert str(error.value).startswith("x.mp4: ")
        return
    crops = face_crops(frames, times, size=32, margin=0.2, fallback=fallback, missing="skip")
    assert crops.report.with_face == 0 and crops.report.fallback == fallback
    assert crops.report.to_json() == {"sampled": 3, "with_face": 0, "fallback": fallback}
    np.testing.assert_array_equal(crops.times, times)
    if fallback == "zeros":
        assert crops.zeros and not crops.images.any()
    else:
        assert not crops.zeros
        np.testing.assert_array_equal(crops.images, full_frames(frames, 32))
