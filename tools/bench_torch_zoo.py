#!/usr/bin/env python3
"""The zoo in PyTorch, for the comparison column of issue 15: the same graphs as
``reef_rocm/compiler/zoo.py`` (batch 1, fp32, batch norm folded into conv biases where the zoo
folds it, DenseNet's pre-activation as scale + shift, DistilBERT without attention mask),
random weights, timed on the GPU in eager mode and replayed as one CUDA graph.

TF32 is off (our kernels are plain fp32 FMA loops); cuDNN picks its algorithms as PyTorch does
by default (``cudnn.benchmark`` off) unless ``--cudnn-benchmark``. Latency: CUDA events around
one inference, median of ``--repeats`` after warm-up; host latency: launch start to the end
event seen by the host. Writes one JSON result (card, driver, date, commit, command).

    python3 tools/bench_torch_zoo.py --out docs/results/torch_zoo_h200.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from reef_rocm.bench.meta import write_result  # noqa: E402


def conv(cin: int, cout: int, k, stride: int = 1, pad=None, relu: bool = True,
         bias: bool = True) -> nn.Module:  # fmt: skip
    kh, kw = (k, k) if isinstance(k, int) else k
    if pad is None:
        pad = (kh // 2, kw // 2)
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, (kh, kw), stride, pad, bias=bias)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ScaleShiftReLU(nn.Module):
    """Inference batch norm ahead of a conv (not foldable) + ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(1, c, 1, 1))
        self.t = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return torch.relu(x * self.s + self.t)


def vgg19() -> tuple[nn.Module, tuple]:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip
    layers, cin = [], 3
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(conv(cin, c, 3))
            cin = c
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))  # fmt: skip
    return nn.Sequential(*layers, head), (1, 3, 224, 224)


class Block(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        cout = width * 4 if bottleneck else width
        if bottleneck:
            self.h = nn.Sequential(conv(cin, width, 1), conv(width, width, 3, stride),
                                   conv(width, cout, 1, relu=False))  # fmt: skip
        else:
            self.h = nn.Sequential(conv(cin, width, 3, stride), conv(width, cout, 3, relu=False))
        self.down = conv(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else None
        self.cout = cout

    def forward(self, x):
        y = x if self.down is None else self.down(x)
        return torch.relu(self.h(x) + y)


def resnet(layers: list[int], bottleneck: bool) -> tuple[nn.Module, tuple]:
    mods: list[nn.Module] = [conv(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for li, (count, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
        for bi in range(count):
            b = Block(cin, width, 2 if (bi == 0 and li > 0) else 1, bottleneck)
            mods.append(b)
            cin = b.cout
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*mods), (1, 3, 224, 224)


class DenseBlock(nn.Module):
    def __init__(self, cin: int, count: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(count):
            c = cin + i * growth
            self.layers.append(nn.Sequential(
                ScaleShiftReLU(c), conv(c, bn_size * growth, 1, relu=False, bias=False),
                ScaleShiftReLU(bn_size * growth),
                conv(bn_size * growth, growth, 3, relu=False, bias=False),
            ))  # fmt: skip
        self.cout = cin + count * growth

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1) if len(feats) > 1 else feats[0]))
        return torch.cat(feats, 1)


def densenet201() -> tuple[nn.Module, tuple]:
    mods: list[nn.Module] = [conv(3, 64, 7, 2, relu=False, bias=False), ScaleShiftReLU(64),
                             nn.MaxPool2d(3, 2, 1)]  # fmt: skip
    c = 64
    for bi, count in enumerate((6, 12, 48, 32)):
        blk = DenseBlock(c, count)
        mods.append(blk)
        c = blk.cout
        if bi < 3:
            mods += [ScaleShiftReLU(c), conv(c, c // 2, 1, relu=False, bias=False),
                     nn.AvgPool2d(2, 2)]  # fmt: skip
            c //= 2
    mods += [ScaleShiftReLU(c), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000)]
    return nn.Sequential(*mods), (1, 3, 224, 224)


class Branches(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.b = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.b], 1)


class Split(nn.Module):  # inception E: one stem, two parallel heads concatenated
    def __init__(self, stem: nn.Module, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.stem, self.a, self.b = stem, a, b

    def forward(self, x):
        y = self.stem(x)
        return torch.cat([self.a(y), self.b(y)], 1)


def inception_v3() -> tuple[nn.Module, tuple]:
    S = nn.Sequential
    pool = lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=True)  # noqa: E731

    def a(cin, pf):
        return Branches(conv(cin, 64, 1), S(conv(cin, 48, 1), conv(48, 64, 5)),
                        S(conv(cin, 64, 1), conv(64, 96, 3), conv(96, 96, 3)),
                        S(pool(), conv(cin, pf, 1))), 224 + pf  # fmt: skip

    def b(cin):
        return Branches(conv(cin, 384, 3, 2, 0),
                        S(conv(cin, 64, 1), conv(64, 96, 3), conv(96, 96, 3, 2, 0)),
                        nn.MaxPool2d(3, 2)), 480 + cin  # fmt: skip

    def c(cin, c7):
        return Branches(conv(cin, 192, 1),
                        S(conv(cin, c7, 1), conv(c7, c7, (1, 7)), conv(c7, 192, (7, 1))),
                        S(conv(cin, c7, 1), conv(c7, c7, (7, 1)), conv(c7, c7, (1, 7)),
                          conv(c7, c7, (7, 1)), conv(c7, 192, (1, 7))),
                        S(pool(), conv(cin, 192, 1))), 768  # fmt: skip

    def d(cin):
        return Branches(S(conv(cin, 192, 1), conv(192, 320, 3, 2, 0)),
                        S(conv(cin, 192, 1), conv(192, 192, (1, 7)), conv(192, 192, (7, 1)),
                          conv(192, 192, 3, 2, 0)),
                        nn.MaxPool2d(3, 2)), 512 + cin  # fmt: skip

    def e(cin):
        return Branches(conv(cin, 320, 1),
                        Split(conv(cin, 384, 1), conv(384, 384, (1, 3)), conv(384, 384, (3, 1))),
                        Split(S(conv(cin, 448, 1), conv(448, 384, 3)), conv(384, 384, (1, 3)),
                              conv(384, 384, (3, 1))),
                        S(pool(), conv(cin, 192, 1))), 2048  # fmt: skip

    mods: list[nn.Module] = [conv(3, 32, 3, 2, 0), conv(32, 32, 3, 1, 0), conv(32, 64, 3, 1, 1),
                             nn.MaxPool2d(3, 2), conv(64, 80, 1), conv(80, 192, 3, 1, 0),
                             nn.MaxPool2d(3, 2)]  # fmt: skip
    cin = 192
    for pf in (32, 64, 64):
        m, cin = a(cin, pf)
        mods.append(m)
    m, cin = b(cin)
    mods.append(m)
    for c7 in (128, 160, 160, 192):
        m, cin = c(cin, c7)
        mods.append(m)
    m, cin = d(cin)
    mods.append(m)
    for _ in range(2):
        m, cin = e(cin)
        mods.append(m)
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*mods), (1, 3, 299, 299)


class BertLayer(nn.Module):
    def __init__(self, hidden: int = 768, heads: int = 12, ffn: int = 3072) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=1e-12), nn.LayerNorm(hidden, eps=1e-12)
        self.f1, self.f2 = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.heads, self.dh = heads, hidden // heads

    def forward(self, y):  # (S, H)
        s_len = y.shape[0]

        def split(t):
            return t.view(s_len, self.heads, self.dh).permute(1, 0, 2)

        q, k, v = split(self.q(y)), split(self.k(y)), split(self.v(y))
        att = torch.softmax((q @ k.transpose(1, 2)) * (1.0 / math.sqrt(self.dh)), dim=-1)
        ctx = (att @ v).permute(1, 0, 2).reshape(s_len, -1)
        y = self.ln1(self.o(ctx) + y)
        return self.ln2(self.f2(nn.functional.gelu(self.f1(y))) + y)


class DistilBert(nn.Module):
    def __init__(self, seq: int = 128, vocab: int = 30522, hidden: int = 768) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(torch.randn(seq, hidden) * 0.05)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.Sequential(*(BertLayer() for _ in range(6)))

    def forward(self, ids):
        y = self.ln(self.word(ids.view(-1)) + self.pos)
        return self.layers(y).view(1, ids.shape[1], -1)


MODELS = {
    "vgg19": vgg19, "resnet18": lambda: resnet([2, 2, 2, 2], False),
    "resnet152": lambda: resnet([3, 8, 36, 3], True), "densenet201": densenet201,
    "inception_v3": inception_v3, "distilbert": lambda: (DistilBert(), (1, 128)),
}  # fmt: skip


def _time(fn, repeats: int) -> tuple[list[float], list[float]]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    dev_ms, host_ms = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        host_ms.append((time.perf_counter() - t0) * 1e3)
        dev_ms.append(start.elapsed_time(end))
    return dev_ms, host_ms


def _kernel_us(fn) -> list[float]:
    """Sorted durations (us) of the GPU kernels of one call, from the PyTorch profiler
    (empty when the profiler cannot see CUDA here)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - the timing columns do not need it
        print(f"profiler unavailable: {exc}", file=sys.stderr)
        return []
    cuda = torch.autograd.DeviceType.CUDA
    out = []
    for e in prof.events():
        if e.device_type == cuda:
            out.append(float(getattr(e, "device_time_total", 0) or e.cuda_time_total))
    return sorted(out)


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def bench(name: str, repeats: int) -> dict:
    net, shape = MODELS[name]()
    net = net.cuda().eval()
    if name == "distilbert":
        x = torch.randint(0, 30522, shape, device="cuda", dtype=torch.int32)
    else:
        x = torch.rand(shape, device="cuda") * 2 - 1
    with torch.inference_mode():
        eager_dev, eager_host = _time(lambda: net(x), repeats)
        ks = _kernel_us(lambda: net(x))
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                net(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            net(x)
        graph_dev, graph_host = _time(g.replay, repeats)
    return {
        "model": name, "eager_ms_median": _median(eager_dev),
        "eager_host_ms_median": _median(eager_host), "graph_ms_median": _median(graph_dev),
        "graph_host_ms_median": _median(graph_host), "kernels": len(ks),
        "longest_kernel_us": ks[-1] if ks else None,
        "median_kernel_us": ks[len(ks) // 2] if ks else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    torch.manual_seed(0)
    rows = []
    for name in a.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)}")
        r = bench(name, a.repeats)
        rows.append(r)
        print(f"{name:14s} eager {r['eager_ms_median']:7.3f} ms  graph {r['graph_ms_median']:7.3f}"
              f" ms  kernels {r['kernels']:4d}  longest {r['longest_kernel_us'] or 0:7.1f} us",
              flush=True)  # fmt: skip
    from reef_rocm.gpu import open_device

    doc = {"benchmark": "torch_zoo", "torch": torch.__version__,
           "cudnn": torch.backends.cudnn.version(), "tf32": False,
           "cudnn_benchmark": a.cudnn_benchmark, "models": rows}  # fmt: skip
    with open_device("cuda") as dev:
        write_result(a.out, doc, dev)
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
