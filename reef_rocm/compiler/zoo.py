"""The model zoo, defined in code (no network, no weight files): the five DISB models plus
ResNet-18 and a tiny CNN for tests. Batch 1, fp32.

Models are written with Relax's BlockBuilder as inference graphs: batch norm that follows a
convolution is folded into the convolution's bias (as every inference engine does), batch
norm that precedes one (DenseNet's pre-activation) stays as a per-channel scale and shift.
Weights are not data here: every parameter carries an init spec for the seeded generator
(reef_rocm.package.weights), scaled by fan-in so activations stay O(1) through the depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reef_rocm.errors import ModelError


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    init: dict[str, Any] | None = None  # generator spec (reef_rocm.package.weights)


@dataclass
class ZooModel:
    name: str
    description: str
    build: Callable[[], Any]  # -> (relax IRModule with "main", inputs, params)
    extra: dict[str, Any] = field(default_factory=dict)


class _Net:
    """BlockBuilder helper: creates parameters on first use and remembers their init."""

    def __init__(self) -> None:
        from tvm import relax

        self.relax = relax
        self.bb = relax.BlockBuilder()
        self.inputs: list[tuple[Any, TensorSpec]] = []
        self.params: list[tuple[Any, TensorSpec]] = []

    # ---- plumbing ----
    def input(self, name: str, shape: tuple[int, ...], dtype: str, init: dict) -> Any:
        var = self.relax.Var(name, self.relax.TensorType(shape=list(shape), dtype=dtype))
        self.inputs.append((var, TensorSpec(name, shape, dtype, init)))
        return var

    def param(self, name: str, shape: tuple[int, ...], init: dict) -> Any:
        var = self.relax.Var(
            name.replace(".", "_"), self.relax.TensorType(shape=list(shape), dtype="float32")
        )
        self.params.append((var, TensorSpec(name, tuple(shape), "float32", init)))
        return var

    def emit(self, expr: Any) -> Any:
        return self.bb.emit(expr)

    @staticmethod
    def shape(x: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in x.ty.shape.ty.values)

    def finish(self, body: Callable[[_Net], Any]) -> tuple[Any, list[TensorSpec], list[TensorSpec]]:
        import tvm

        with self.bb.function("main"):
            with self.bb.dataflow():
                out = self.bb.emit_output(body(self))
            self.bb.emit_func_output(out, params=[v for v, _ in self.inputs + self.params])
        mod = self.bb.get()
        mod["main"] = mod["main"].with_attr("num_input", len(self.inputs))
        assert isinstance(mod, tvm.IRModule)
        return mod, [s for _, s in self.inputs], [s for _, s in self.params]

    # ---- layers ----
    def conv(
        self, x: Any, name: str, cout: int, k: int | tuple[int, int], stride: int = 1,
        pad: int | tuple[int, int] | None = None, relu: bool = True, bias: bool = True,
        gain: float = 1.0,
    ) -> Any:  # fmt: skip
        op = self.relax.op
        kh, kw = (k, k) if isinstance(k, int) else k
        if pad is None:
            pad = (kh // 2, kw // 2)
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        cin = self.shape(x)[1]
        fan_in = cin * kh * kw
        # He-uniform (variance 2/fan_in) ahead of a ReLU, unit-variance otherwise
        bound = gain * math.sqrt((6.0 if relu else 3.0) / fan_in)
        w = self.param(f"{name}.weight", (cout, cin, kh, kw), {"kind": "uniform", "bound": bound})
        y = self.emit(op.nn.conv2d(x, w, strides=stride, padding=(ph, pw, ph, pw)))
        if bias:
            b = self.param(f"{name}.bias", (1, cout, 1, 1), {"kind": "uniform", "bound": 0.01})
            y = self.emit(op.add(y, b))
        return self.emit(op.nn.relu(y)) if relu else y

    def bn_relu(self, x: Any, name: str) -> Any:
        """Inference batch norm that cannot be folded (it precedes the conv): scale + shift."""
        op = self.relax.op
        c = self.shape(x)[1]
        s = self.param(
            f"{name}.scale", (1, c, 1, 1), {"kind": "uniform", "bound": 0.1, "center": 1.0}
        )
        t = self.param(f"{name}.shift", (1, c, 1, 1), {"kind": "uniform", "bound": 0.05})
        return self.emit(op.nn.relu(op.add(op.multiply(x, s), t)))

    def maxpool(self, x: Any, k: int, stride: int, pad: int = 0) -> Any:
        return self.emit(self.relax.op.nn.max_pool2d(x, k, stride, pad))

    def avgpool(self, x: Any, k: int, stride: int, pad: int = 0) -> Any:
        return self.emit(self.relax.op.nn.avg_pool2d(x, k, stride, pad, count_include_pad=True))

    def gap_flatten(self, x: Any) -> Any:
        op = self.relax.op
        y = self.emit(op.nn.adaptive_avg_pool2d(x, (1, 1)))
        return self.emit(op.reshape(y, (self.shape(x)[0], self.shape(x)[1])))

    def linear(self, x: Any, name: str, out: int, relu: bool = False, std: float = 0.0) -> Any:
        op = self.relax.op
        fan_in = self.shape(x)[-1]
        bound = std * math.sqrt(3.0) if std else math.sqrt((6.0 if relu else 3.0) / fan_in)
        w = self.param(f"{name}.weight", (out, fan_in), {"kind": "uniform", "bound": bound})
        b = self.param(f"{name}.bias", (out,), {"kind": "uniform", "bound": 0.01})
        y = self.emit(op.linear(x, w, b))
        return self.emit(op.nn.relu(y)) if relu else y

    def concat(self, xs: list[Any]) -> Any:
        return self.emit(self.relax.op.concat(xs, axis=1))


IMAGE_INIT = {"kind": "uniform", "bound": 1.0}  # a normalised image: values in [-1, 1)


# ---------------------------------------------------------------- CNNs


def _tiny_cnn():
    net = _Net()
    x = net.input("input", (1, 3, 32, 32), "float32", IMAGE_INIT)

    def body(n: _Net):
        y = n.conv(x, "conv1", 16, 3)
        y = n.maxpool(y, 2, 2)
        y = n.conv(y, "conv2", 32, 3)
        return n.linear(n.gap_flatten(y), "fc", 10)

    return net.finish(body)


def _vgg19():
    net = _Net()
    x = net.input("input", (1, 3, 224, 224), "float32", IMAGE_INIT)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip

    def body(n: _Net):
        y, i = x, 0
        for c in cfg:
            if c == "M":
                y = n.maxpool(y, 2, 2)
            else:
                y = n.conv(y, f"features.{i}", c, 3)
                i += 1
        y = n.emit(n.relax.op.reshape(y, (1, 512 * 7 * 7)))
        y = n.linear(y, "classifier.0", 4096, relu=True)
        y = n.linear(y, "classifier.3", 4096, relu=True)
        return n.linear(y, "classifier.6", 1000)

    return net.finish(body)


def _resnet(layers: list[int], bottleneck: bool):
    net = _Net()
    x = net.input("input", (1, 3, 224, 224), "float32", IMAGE_INIT)
    op = net.relax.op

    def block(n: _Net, y: Any, name: str, width: int, stride: int) -> Any:
        cin = n.shape(y)[1]
        cout = width * 4 if bottleneck else width
        # the branch's last conv starts small so the residual sum does not grow with depth
        if bottleneck:
            h = n.conv(y, f"{name}.conv1", width, 1)
            h = n.conv(h, f"{name}.conv2", width, 3, stride)
            h = n.conv(h, f"{name}.conv3", cout, 1, relu=False, gain=0.2)
        else:
            h = n.conv(y, f"{name}.conv1", width, 3, stride)
            h = n.conv(h, f"{name}.conv2", cout, 3, relu=False, gain=0.2)
        if stride != 1 or cin != cout:
            y = n.conv(y, f"{name}.downsample", cout, 1, stride, relu=False)
        return n.emit(op.nn.relu(op.add(h, y)))

    def body(n: _Net):
        y = n.conv(x, "conv1", 64, 7, 2)
        y = n.maxpool(y, 3, 2, 1)
        for li, (count, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            for bi in range(count):
                stride = 2 if (bi == 0 and li > 0) else 1
                y = block(n, y, f"layer{li + 1}.{bi}", width, stride)
        return n.linear(n.gap_flatten(y), "fc", 1000)

    return net.finish(body)


def _densenet201():
    net = _Net()
    x = net.input("input", (1, 3, 224, 224), "float32", IMAGE_INIT)
    growth, bn_size = 32, 4

    def body(n: _Net):
        y = n.conv(x, "features.conv0", 64, 7, 2, relu=False, bias=False)
        y = n.bn_relu(y, "features.norm0")
        y = n.maxpool(y, 3, 2, 1)
        for bi, count in enumerate((6, 12, 48, 32)):
            feats = [y]
            for li in range(count):
                name = f"features.denseblock{bi + 1}.denselayer{li + 1}"
                h = n.concat(feats) if len(feats) > 1 else feats[0]
                h = n.bn_relu(h, f"{name}.norm1")
                h = n.conv(h, f"{name}.conv1", bn_size * growth, 1, relu=False, bias=False)
                h = n.bn_relu(h, f"{name}.norm2")
                h = n.conv(h, f"{name}.conv2", growth, 3, relu=False, bias=False, gain=1.4)
                feats.append(h)
            y = n.concat(feats)
            if bi < 3:
                name = f"features.transition{bi + 1}"
                y = n.bn_relu(y, f"{name}.norm")
                y = n.conv(y, f"{name}.conv", n.shape(y)[1] // 2, 1, relu=False, bias=False)
                y = n.avgpool(y, 2, 2)
        y = n.bn_relu(y, "features.norm5")
        return n.linear(n.gap_flatten(y), "classifier", 1000)

    return net.finish(body)


def _inception_v3():
    net = _Net()
    x = net.input("input", (1, 3, 299, 299), "float32", IMAGE_INIT)

    def a(n: _Net, y: Any, p: str, pool_features: int) -> Any:
        b1 = n.conv(y, f"{p}.branch1x1", 64, 1)
        b5 = n.conv(n.conv(y, f"{p}.branch5x5_1", 48, 1), f"{p}.branch5x5_2", 64, 5)
        b3 = n.conv(y, f"{p}.branch3x3dbl_1", 64, 1)
        b3 = n.conv(n.conv(b3, f"{p}.branch3x3dbl_2", 96, 3), f"{p}.branch3x3dbl_3", 96, 3)
        bp = n.conv(n.avgpool(y, 3, 1, 1), f"{p}.branch_pool", pool_features, 1)
        return n.concat([b1, b5, b3, bp])

    def b(n: _Net, y: Any, p: str) -> Any:
        b3 = n.conv(y, f"{p}.branch3x3", 384, 3, 2, 0)
        d = n.conv(y, f"{p}.branch3x3dbl_1", 64, 1)
        d = n.conv(n.conv(d, f"{p}.branch3x3dbl_2", 96, 3), f"{p}.branch3x3dbl_3", 96, 3, 2, 0)
        return n.concat([b3, d, n.maxpool(y, 3, 2)])

    def c(n: _Net, y: Any, p: str, c7: int) -> Any:
        b1 = n.conv(y, f"{p}.branch1x1", 192, 1)
        b7 = n.conv(y, f"{p}.branch7x7_1", c7, 1)
        b7 = n.conv(b7, f"{p}.branch7x7_2", c7, (1, 7))
        b7 = n.conv(b7, f"{p}.branch7x7_3", 192, (7, 1))
        d = n.conv(y, f"{p}.branch7x7dbl_1", c7, 1)
        d = n.conv(d, f"{p}.branch7x7dbl_2", c7, (7, 1))
        d = n.conv(d, f"{p}.branch7x7dbl_3", c7, (1, 7))
        d = n.conv(d, f"{p}.branch7x7dbl_4", c7, (7, 1))
        d = n.conv(d, f"{p}.branch7x7dbl_5", 192, (1, 7))
        bp = n.conv(n.avgpool(y, 3, 1, 1), f"{p}.branch_pool", 192, 1)
        return n.concat([b1, b7, d, bp])

    def d_(n: _Net, y: Any, p: str) -> Any:
        b3 = n.conv(n.conv(y, f"{p}.branch3x3_1", 192, 1), f"{p}.branch3x3_2", 320, 3, 2, 0)
        b7 = n.conv(y, f"{p}.branch7x7x3_1", 192, 1)
        b7 = n.conv(b7, f"{p}.branch7x7x3_2", 192, (1, 7))
        b7 = n.conv(b7, f"{p}.branch7x7x3_3", 192, (7, 1))
        b7 = n.conv(b7, f"{p}.branch7x7x3_4", 192, 3, 2, 0)
        return n.concat([b3, b7, n.maxpool(y, 3, 2)])

    def e(n: _Net, y: Any, p: str) -> Any:
        b1 = n.conv(y, f"{p}.branch1x1", 320, 1)
        b3 = n.conv(y, f"{p}.branch3x3_1", 384, 1)
        b3 = n.concat(
            [
                n.conv(b3, f"{p}.branch3x3_2a", 384, (1, 3)),
                n.conv(b3, f"{p}.branch3x3_2b", 384, (3, 1)),
            ]
        )
        d = n.conv(n.conv(y, f"{p}.branch3x3dbl_1", 448, 1), f"{p}.branch3x3dbl_2", 384, 3)
        d = n.concat(
            [
                n.conv(d, f"{p}.branch3x3dbl_3a", 384, (1, 3)),
                n.conv(d, f"{p}.branch3x3dbl_3b", 384, (3, 1)),
            ]
        )
        bp = n.conv(n.avgpool(y, 3, 1, 1), f"{p}.branch_pool", 192, 1)
        return n.concat([b1, b3, d, bp])

    def body(n: _Net):
        y = n.conv(x, "Conv2d_1a_3x3", 32, 3, 2, 0)
        y = n.conv(y, "Conv2d_2a_3x3", 32, 3, 1, 0)
        y = n.conv(y, "Conv2d_2b_3x3", 64, 3, 1, 1)
        y = n.maxpool(y, 3, 2)
        y = n.conv(y, "Conv2d_3b_1x1", 80, 1)
        y = n.conv(y, "Conv2d_4a_3x3", 192, 3, 1, 0)
        y = n.maxpool(y, 3, 2)
        y = a(n, y, "Mixed_5b", 32)
        y = a(n, y, "Mixed_5c", 64)
        y = a(n, y, "Mixed_5d", 64)
        y = b(n, y, "Mixed_6a")
        for p, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            y = c(n, y, p, c7)
        y = d_(n, y, "Mixed_7a")
        y = e(n, y, "Mixed_7b")
        y = e(n, y, "Mixed_7c")
        return n.linear(n.gap_flatten(y), "fc", 1000)

    return net.finish(body)


# ---------------------------------------------------------------- DistilBERT

BERT_SEQ = 128
BERT_VOCAB = 30522


def _distilbert(layers: int = 6, hidden: int = 768, heads: int = 12, ffn: int = 3072):
    """DistilBERT-base encoder (no attention mask: one full 128-token sequence)."""
    net = _Net()
    ids = net.input("input_ids", (1, BERT_SEQ), "int32", {"kind": "randint", "high": BERT_VOCAB})
    op = net.relax.op
    dh = hidden // heads

    def layer_norm(n: _Net, y: Any, name: str) -> Any:
        g = n.param(f"{name}.weight", (hidden,), {"kind": "const", "value": 1.0})
        b = n.param(f"{name}.bias", (hidden,), {"kind": "const", "value": 0.0})
        return n.emit(op.nn.layer_norm(y, g, b, axes=[-1], epsilon=1e-12))

    def heads_first(n: _Net, y: Any) -> Any:  # (S, H) -> (heads, S, dh)
        y = n.emit(op.reshape(y, (BERT_SEQ, heads, dh)))
        return n.emit(op.permute_dims(y, (1, 0, 2)))

    def body(n: _Net):
        word = n.param(
            "embeddings.word_embeddings.weight",
            (BERT_VOCAB, hidden),
            {"kind": "uniform", "bound": 0.05},
        )
        pos = n.param(
            "embeddings.position_embeddings.weight",
            (BERT_SEQ, hidden),
            {"kind": "uniform", "bound": 0.05},
        )
        y = n.emit(op.take(word, op.reshape(ids, (BERT_SEQ,)), axis=0))
        y = layer_norm(n, n.emit(op.add(y, pos)), "embeddings.LayerNorm")
        for i in range(layers):
            p = f"transformer.layer.{i}"
            q = heads_first(n, n.linear(y, f"{p}.attention.q_lin", hidden))
            k = heads_first(n, n.linear(y, f"{p}.attention.k_lin", hidden))
            v = heads_first(n, n.linear(y, f"{p}.attention.v_lin", hidden))
            s = n.emit(op.matmul(q, op.permute_dims(k, (0, 2, 1))))
            s = n.emit(op.nn.softmax(op.multiply(s, net.relax.const(1.0 / math.sqrt(dh))), axis=-1))
            ctx = n.emit(op.permute_dims(op.matmul(s, v), (1, 0, 2)))
            ctx = n.emit(op.reshape(ctx, (BERT_SEQ, hidden)))
            a = n.linear(ctx, f"{p}.attention.out_lin", hidden)
            y = layer_norm(n, n.emit(op.add(a, y)), f"{p}.sa_layer_norm")
            h = n.emit(op.nn.gelu(n.linear(y, f"{p}.ffn.lin1", ffn)))
            h = n.linear(h, f"{p}.ffn.lin2", hidden)
            y = layer_norm(n, n.emit(op.add(h, y)), f"{p}.output_layer_norm")
        return n.emit(op.reshape(y, (1, BERT_SEQ, hidden)))

    return net.finish(body)


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("tiny_cnn", "2 convs + pool + linear, 32x32 input (tests)", _tiny_cnn),
        ZooModel("resnet18", "ResNet-18, 224x224 (tests)", lambda: _resnet([2, 2, 2, 2], False)),
        ZooModel("vgg19", "VGG-19, 224x224 (DISB)", _vgg19),
        ZooModel("resnet152", "ResNet-152, 224x224 (DISB)", lambda: _resnet([3, 8, 36, 3], True)),
        ZooModel("densenet201", "DenseNet-201, 224x224 (DISB)", _densenet201),
        ZooModel("inception_v3", "Inception-v3, 299x299 (DISB)", _inception_v3),
        ZooModel("distilbert", "DistilBERT-base encoder, 128 tokens (DISB)", _distilbert),
    )
}
DISB_MODELS = ("vgg19", "resnet152", "densenet201", "inception_v3", "distilbert")


def zoo_model(name: str) -> ZooModel:
    try:
        return ZOO[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}: not a zoo model ({', '.join(ZOO)}) and not an existing "
            ".onnx / .pt2 file"
        ) from None
