"""Keras .h5 files read into PyTorch (keras_h5.py), on tiny models written here with h5py.

The reference is a plain NumPy implementation of the Keras layers, channels-last as Keras computes, so
the PyTorch module's channels-first layout, kernel transposes, depthwise channel order and Flatten order
are each checked against an independent computation. TensorFlow's "same" padding is checked on values
worked out by hand.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from emocli.core.errors import ConfigError
from emocli.features.visual.keras_h5 import read_keras_h5

EPSILON = 1e-3


# -- writing Keras 2 .h5 files -----------------------------------------------------------------------


def layer(kind: str, name: str, inputs: list[str] | None = None, **config) -> dict:
    entry = {"class_name": kind, "name": name, "config": {"name": name, **config}}
    if inputs is not None:
        entry["inbound_nodes"] = [[[source, 0, 0, {}] for source in inputs]] if inputs else []
    return entry


def write_h5(path, model_config: dict, weights: dict[str, dict[str, np.ndarray]], keras_version="2.0.5"):
    """A whole-model .h5 as Keras 2 writes it: the config as JSON, each layer's weights under its group."""
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = json.dumps(model_config).encode()
        file.attrs["keras_version"] = keras_version.encode()
        file.attrs["backend"] = b"tensorflow"
        group = file.create_group("model_weights")
        for layer_name, arrays in weights.items():
            layer_group = group.create_group(layer_name)
            names = [f"{layer_name}_1/{key}:0" for key in arrays]
            layer_group.attrs["weight_names"] = [n.encode() for n in names]
            for name, array in zip(names, arrays.values(), strict=True):
                layer_group.create_dataset(name, data=np.asarray(array, np.float32))
    return path


def functional_model(rng) -> tuple[dict, dict]:
    """A mini-Xception in miniature: stride-2 "same" convolution, BN, a separable convolution with depth
    multiplier 2, "same" max pooling beside a 1x1 stride-2 shortcut, Add, Dropout, a classifier
    convolution, global average pooling and a softmax Activation. Input 8x8x2."""
    conv = lambda *shape: rng.normal(0, 0.5, shape)  # noqa: E731
    layers = [
        layer("InputLayer", "input_1", [], batch_input_shape=[None, 8, 8, 2], dtype="float32"),
        layer("Conv2D", "conv2d_1", ["input_1"], filters=4, kernel_size=[3, 3], strides=[2, 2], padding="same",
              activation="relu", use_bias=True, data_format="channels_last", dilation_rate=[1, 1]),
        layer("BatchNormalization", "bn_1", ["conv2d_1"], axis=-1, epsilon=EPSILON, center=True, scale=True),
        layer("SeparableConv2D", "sep_1", ["bn_1"], filters=6, kernel_size=[3, 3], strides=[1, 1], padding="same",
              depth_multiplier=2, activation="linear", use_bias=False, data_format="channels_last"),
        layer("MaxPooling2D", "pool_1", ["sep_1"], pool_size=[3, 3], strides=[2, 2], padding="same"),
        layer("Conv2D", "shortcut", ["bn_1"], filters=6, kernel_size=[1, 1], strides=[2, 2], padding="same",
              activation="linear", use_bias=False),
        layer("Add", "add_1", ["pool_1", "shortcut"]),
        layer("Dropout", "dropout_1", ["add_1"], rate=0.5),
        layer("Conv2D", "classifier", ["dropout_1"], filters=3, kernel_size=[3, 3], strides=[1, 1], padding="same",
              activation="linear", use_bias=True),
        layer("GlobalAveragePooling2D", "gap", ["classifier"]),
        layer("Activation", "predictions", ["gap"], activation="softmax"),
    ]
    config = {"class_name": "Model", "config": {"name": "tiny", "layers": layers,
                                                "input_layers": [["input_1", 0, 0]],
                                                "output_layers": [["predictions", 0, 0]]}}
    weights = {
        "conv2d_1": {"kernel": conv(3, 3, 2, 4), "bias": conv(4)},
        "bn_1": {"gamma": rng.uniform(0.5, 2, 4), "beta": conv(4), "moving_mean": conv(4),
                 "moving_variance": rng.uniform(0.2, 2, 4)},
        "sep_1": {"depthwise_kernel": conv(3, 3, 4, 2), "pointwise_kernel": conv(1, 1, 8, 6)},
        "shortcut": {"kernel": conv(1, 1, 4, 6)},
        "classifier": {"kernel": conv(3, 3, 6, 3), "bias": conv(3)},
    }
    return config, weights


def sequential_model(rng) -> tuple[dict, dict]:
    """facemood in miniature: valid convolution, max pooling, Flatten, Dense, BN over a vector, Dense
    softmax. Input 6x6x3."""
    layers = [
        {"class_name": "InputLayer", "config": {"name": "input_1", "batch_input_shape": [None, 6, 6, 3]}},
        {"class_name": "Conv2D", "config": {"name": "conv2d", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1],
                                             "padding": "valid", "activation": "relu", "use_bias": True}},
        {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2], "strides": [2, 2],
                                                   "padding": "valid"}},
        {"class_name": "Flatten", "config": {"name": "flatten"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 5, "activation": "linear", "use_bias": True}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": [1], "epsilon": EPSILON}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 3, "activation": "softmax", "use_bias": True}},
    ]
    normal = lambda *shape: rng.normal(0, 0.5, shape)  # noqa: E731
    weights = {
        "conv2d": {"kernel": normal(3, 3, 3, 4), "bias": normal(4)},
        "dense": {"kernel": normal(16, 5), "bias": normal(5)},
        "bn": {"gamma": rng.uniform(0.5, 2, 5), "beta": normal(5), "moving_mean": normal(5),
               "moving_variance": rng.uniform(0.2, 2, 5)},
        "dense_1": {"kernel": normal(5, 3), "bias": normal(3)},
    }
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}, weights


# -- the NumPy reference, channels-last ------------------------------------------------------------


def tf_pad(x, kernel, stride, value=0.0):
    """TensorFlow's "same": total = max((ceil(n / s) - 1) * s + k - n, 0), the smaller half before."""
    pads = []
    for n in x.shape[:2]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def np_conv(x, kernel, stride=1, same=False, bias=None):
    kh, kw, _, filters = kernel.shape
    if same:
        x = tf_pad(x, kh, stride)
    rows, cols = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((rows, cols, filters))
    for i in range(rows):
        for j in range(cols):
            window = x[i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[i, j] = np.tensordot(window, kernel, axes=3)
    return out + (bias if bias is not None else 0)


def np_depthwise(x, kernel):
    kh, kw, channels, multiplier = kernel.shape
    x = tf_pad(x, kh, 1)
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1, channels * multiplier))
    for c in range(channels):
        for m in range(multiplier):
            out[..., c * multiplier + m] = np_conv(x[..., c : c + 1], kernel[:, :, c : c + 1, m : m + 1])[..., 0]
    return out


def np_max_pool(x, pool, stride, same):
    if same:
        x = tf_pad(x, pool, stride, value=-np.inf)
    rows, cols = (x.shape[0] - pool) // stride + 1, (x.shape[1] - pool) // stride + 1
    return np.array([[x[i * stride : i * stride + pool, j * stride : j * stride + pool].max(axis=(0, 1))
                      for j in range(cols)] for i in range(rows)])


def np_bn(x, w):
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + EPSILON) * w["gamma"] + w["beta"]


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def reference_functional(x, w):
    """Probabilities and the classifier's input (pooled) for one image [8, 8, 2]."""
    a = np_bn(np.maximum(np_conv(x, w["conv2d_1"]["kernel"], 2, True, w["conv2d_1"]["bias"]), 0), w["bn_1"])
    sep = np_conv(np_depthwise(a, w["sep_1"]["depthwise_kernel"]), w["sep_1"]["pointwise_kernel"])
    added = np_max_pool(sep, 3, 2, True) + np_conv(a, w["shortcut"]["kernel"], 2, True)
    logits = np_conv(added, w["classifier"]["kernel"], 1, True, w["classifier"]["bias"]).mean(axis=(0, 1))
    return np_softmax(logits), added.mean(axis=(0, 1))


def reference_sequential(x, w):
    a = np.maximum(np_conv(x, w["conv2d"]["kernel"], bias=w["conv2d"]["bias"]), 0)
    flat = np_max_pool(a, 2, 2, False).reshape(-1)  # Keras flattens channels-last: (H, W, C) order
    hidden = np_bn(flat @ w["dense"]["kernel"] + w["dense"]["bias"], w["bn"])
    return np_softmax(hidden @ w["dense_1"]["kernel"] + w["dense_1"]["bias"]), hidden


def run(net, images_nhwc):
    with torch.inference_mode():
        out = net.classify(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).astype(np.float32)))
    return out.probabilities.numpy(), out.embedding.numpy(), out.logits.numpy()


# -- tests -----------------------------------------------------------------------------------------


def test_a_functional_model_matches_the_keras_layers_computed_channels_last(tmp_path):
    rng = np.random.default_rng(0)
    config, weights = functional_model(rng)
    net = read_keras_h5(write_h5(tmp_path / "tiny.h5", config, weights))
    assert net.input_shape == (8, 8, 2) and net.classifier == "classifier"
    images = rng.normal(0, 1, (3, 8, 8, 2))
    probabilities, embedding, logits = run(net, images)
    for index, image in enumerate(images):
        expected, expected_embedding = reference_functional(image, weights)
        np.testing.assert_allclose(probabilities[index], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(embedding[index], expected_embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), probabilities, atol=1e-6)


def test_a_sequential_model_flattens_in_keras_order(tmp_path):
    rng = np.random.default_rng(1)
    config, weights = sequential_model(rng)
    net = read_keras_h5(write_h5(tmp_path / "seq.h5", config, weights, keras_version="2.15.0"))
    assert net.input_shape == (6, 6, 3) and net.classifier == "dense_1"
    images = rng.normal(0, 1, (2, 6, 6, 3))
    probabilities, embedding, _ = run(net, images)
    for index, image in enumerate(images):
        expected, hidden = reference_sequential(image, weights)
        np.testing.assert_allclose(probabilities[index], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(embedding[index], hidden, rtol=1e-4, atol=1e-5)


def test_same_padding_puts_the_odd_pixel_after_the_image_as_tensorflow_does(tmp_path):
    """4x4 input, 3x3 kernel, stride 2: TensorFlow pads 0 rows before and 1 after, so the first output
    sums rows and columns 0-2 (a symmetric padding of 1 would sum 0-1 and give another number)."""
    ones = np.ones((3, 3, 1, 1))
    layers = [layer("InputLayer", "in", [], batch_input_shape=[None, 4, 4, 1]),
              layer("Conv2D", "conv", ["in"], filters=1, kernel_size=[3, 3], strides=[2, 2], padding="same",
                    use_bias=False, activation="linear"),
              layer("MaxPooling2D", "pool", ["conv"], pool_size=[3, 3], strides=[2, 2], padding="same"),
              layer("Activation", "out", ["pool"], activation="softmax")]
    config = {"class_name": "Model", "config": {"layers": layers, "input_layers": [["in", 0, 0]],
                                                "output_layers": [["out", 0, 0]]}}
    net = read_keras_h5(write_h5(tmp_path / "pad.h5", config, {"conv": {"kernel": ones}}))
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    conv, pool = net.modules_by_layer["conv"], net.modules_by_layer["pool"]
    with torch.inference_mode():
        summed = conv(torch.from_numpy(x)[None, None])[0, 0].numpy()
        pooled = pool(torch.from_numpy(-x - 100)[None, None])[0, 0].numpy()
    assert summed.tolist() == [[x[0:3, 0:3].sum(), x[0:3, 2:4].sum()], [x[2:4, 0:3].sum(), x[2:4, 2:4].sum()]]
    # Max pooling pads with -inf: all-negative windows at the edge still give the largest real value.
    assert pooled.tolist() == [[(-x - 100)[0:3, 0:3].max(), (-x - 100)[0:3, 2:4].max()],
                               [(-x - 100)[2:4, 0:3].max(), (-x - 100)[2:4, 2:4].max()]]


def _edit(config: dict, name: str, **changes) -> dict:
    edited = json.loads(json.dumps(config))
    for entry in edited["config"]["layers"]:
        if entry["config"]["name"] == name:
            entry.update({k: v for k, v in changes.items() if k == "class_name"})
            entry["config"].update({k: v for k, v in changes.items() if k != "class_name"})
    return edited


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, w: (_edit(c, "gap", class_name="GlobalMaxPooling2D"), w), "gap: Keras layer type GlobalMaxPooling2D"),
        (lambda c, w: (_edit(c, "conv2d_1", activation="selu"), w), "conv2d_1: activation 'selu' is not read"),
        (lambda c, w: (_edit(c, "conv2d_1", data_format="channels_first"), w), "only channels_last"),
        (lambda c, w: (c, {**w, "shortcut": {"kernel": np.zeros((1, 1, 4, 5))}}), r"shortcut: its kernel has shape"),
        (lambda c, w: (c, {**w, "sep_1": {"depthwise_kernel": w["sep_1"]["depthwise_kernel"]}}), "sep_1.*has the weights"),
        (lambda c, w: (c, {**w, "spare": {"kernel": np.zeros(3)}}), "1 weights are not used"),
        (lambda c, w: (c, {**w, "gap": {"kernel": np.zeros(3)}}), "gap .* never uses"),
        (lambda c, w: (c, {**w, "classifier": {"kernel": np.zeros((3, 3, 5, 3)), "bias": np.zeros(3)}}),
         "do not fit the layers they feed"),
    ],
)
def test_what_is_not_read_or_does_not_fit_is_refused_naming_the_file_and_layer(tmp_path, change, message):
    config, weights = change(*functional_model(np.random.default_rng(2)))
    path = write_h5(tmp_path / "bad.h5", config, weights)
    with pytest.raises(ConfigError, match=message) as error:
        read_keras_h5(path)
    assert str(error.value).startswith(str(path))


def test_files_that_are_not_whole_keras_2_models_are_refused(tmp_path):
    config, weights = functional_model(np.random.default_rng(3))
    with pytest.raises(ConfigError, match="Keras 3.1.0; only Keras 2"):
        read_keras_h5(write_h5(tmp_path / "k3.h5", config, weights, keras_version="3.1.0"))
    with h5py.File(tmp_path / "weights_only.h5", "w") as file:
        file.create_group("conv2d_1")
    with pytest.raises(ConfigError, match="no model_config attribute"):
        read_keras_h5(tmp_path / "weights_only.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ConfigError, match="cannot read as HDF5"):
        read_keras_h5(tmp_path / "text.h5")
