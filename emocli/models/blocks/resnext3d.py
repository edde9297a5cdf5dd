"""3D ResNeXt-50 (Hara et al., "Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?",
the Kinetics ResNeXt of 3D-ResNets-PyTorch), the video backbone of CFN-SR.

Bottleneck expansion 2, cardinality 32, shortcut B (a strided 1x1x1 convolution + BN on the first block of each
stage), layers [3, 4, 6, 3], conv1 7x7x7 stride (1, 2, 2), max-pool 3x3x3 stride 2. Module names follow the
original so that its state dicts load unchanged. Strides: time /2 at the max-pool and at layers 2-4 (x16 in
all), space /32; a 3x30x224x224 clip gives a [2048, 2, 7, 7] map. Pooling is adaptive, so any clip size works
(for 30x224x224 it is the original's AvgPool3d((2, 7, 7))).

`resnext3d50(weights=path)` loads a local file, in the spirit of torchvision's builders (nothing is downloaded).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from emocli.core.errors import EmoError

EXPANSION = 2


class Bottleneck(nn.Module):
    """1x1x1 reduce -> 3x3x3 grouped (cardinality groups, carries the stride) -> 1x1x1 expand, + shortcut."""

    def __init__(self, inplanes: int, planes: int, cardinality: int, stride: int) -> None:
        super().__init__()
        width = cardinality * (planes // 32)
        out = planes * EXPANSION
        self.conv1 = nn.Conv3d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:  # shortcut type B
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNeXt3D(nn.Module):
    """The 3D ResNeXt. `forward_features` gives the last map [B, 16·width, T/16, H/32, W/32] (2048 channels at
    the standard width 128); `forward` pools it and applies the classifier when there is one (`num_classes`),
    else returns the pooled [B, 16·width]. Smaller `layers` and `width` give the same network in miniature
    (tests, CPU trials)."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        cardinality: int = 32,
        num_classes: int | None = None,
        stem_relu: bool = True,
        width: int = 128,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.checkpointing = checkpointing
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        # CFN-SR's fused network rebuilds the stem as conv1 -> bn1 -> maxpool and so drops this ReLU.
        self.relu = nn.ReLU(inplace=True) if stem_relu else nn.Identity()
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        stages = []
        for index, (blocks, planes) in enumerate(zip(layers, (width, 2 * width, 4 * width, 8 * width))):
            stride = 1 if index == 0 else 2
            stage = [Bottleneck(inplanes, planes, cardinality, stride)]
            inplanes = planes * EXPANSION
            stage += [Bottleneck(inplanes, planes, cardinality, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = inplanes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes is not None else None

        for module in self.modules():  # the original's initialisation
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stem(self, clip: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(clip))))

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """clip [B, 3, T, H, W] -> [B, 2048, T', H', W']."""
        blocks = [*self.layer1, *self.layer2, *self.layer3, *self.layer4]
        if not (self.checkpointing and torch.is_grad_enabled()):
            x = self.stem(clip)
            for block in blocks:
                x = block(x)
            return x
        # Activation checkpointing: keep the stem's and each block's input only and recompute their activations
        # in the backward pass, without folding the batch into the BatchNorm statistics a second time.
        x = clip
        for run, norms in [(self.stem, self.bn1), *((block, block) for block in blocks)]:
            x = checkpoint(run, x, use_reentrant=False, context_fn=partial(_recomputation, norms))
        return x

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        pooled = self.avgpool(self.forward_features(clip)).flatten(1)
        return pooled if self.fc is None else self.fc(pooled)


def _recomputation(norms: nn.Module) -> tuple[AbstractContextManager, AbstractContextManager]:
    """torch.utils.checkpoint's (forward, recomputation) contexts for a part whose BatchNorms are in `norms`."""
    return nullcontext(), _batch_norm_statistics_kept(norms)


@contextmanager
def _batch_norm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """A recomputation normalises with the batch's statistics again, in training mode, and would fold them into
    the running statistics a second time: restore those to what the forward pass left."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm3d) and m.track_running_stats]
    saved = [[buffer.clone() for buffer in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, buffers in zip(norms, saved):
                for buffer, value in zip((norm.running_mean, norm.running_var, norm.num_batches_tracked), buffers):
                    buffer.copy_(value)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors file or a torch file (read with weights_only=True).

    A torch file may wrap the dict as {"state_dict": ...} and prefix every key with "module." (how the original
    3D-ResNets and MSAF checkpoints are saved, from DataParallel); both are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise EmoError("weights file not found", path=path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with objects, a truncated file...
        raise EmoError(f"not a readable tensor-only torch file ({error})", path=path) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EmoError("expected a state dict (parameter name -> tensor)", path=path)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _listing(kind: str, keys: list[str], shown: int = 12) -> str:
    if not keys:
        return f"no {kind} keys"
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"{len(keys)} {kind} keys ({', '.join(keys[:shown])}{more})"


def load_weights(model: nn.Module, path: str | Path, ignore: tuple[str, ...] = ()) -> None:
    """Load a local state dict into `model`, every key matching; a mismatch names the missing and extra keys.
    Keys starting with a prefix in `ignore` (a checkpoint's classifier the model does not have) are dropped."""
    state = {key: value for key, value in load_state_dict_file(path).items() if not key.startswith(ignore)}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise EmoError(
            f"the weights do not match the model: {_listing('missing', missing)}; {_listing('unexpected', unexpected)}",
            path=path,
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # the names match but a shape does not
        raise EmoError(f"the weights do not match the model: {error}", path=path) from error


def resnext3d50(
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    stem_relu: bool = True,
    checkpointing: bool = False,
) -> ResNeXt3D:
    """3D ResNeXt-50 (32x4d-style, expansion 2, shortcut B).

    weights: a local .safetensors or torch state-dict file to load (strict: the keys must match this model,
    including `fc.*` exactly when `num_classes` is given). num_classes: add the Kinetics-style classifier
    (None: no classifier; `forward` returns pooled features). stem_relu: False drops the ReLU after bn1, as
    CFN-SR's fused network does. checkpointing: in training, keep only each block's input and recompute the
    rest in the backward pass (the same gradients and running statistics, a fraction of the memory).
    """
    model = ResNeXt3D(
        (3, 4, 6, 3), cardinality=32, num_classes=num_classes, stem_relu=stem_relu, checkpointing=checkpointing
    )
    if weights is not None:
        load_weights(model, weights)
    return model
