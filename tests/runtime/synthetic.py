"""A small model package written without TVM, for executor tests on the fake and sim devices.

The model is a chain of ``n`` kernels over float32 vectors: kernel i computes
``h[i+1] = h[i] * 2 + w`` element-wise (``h[0]`` the input, ``h[n]`` the output, ``w`` a
seeded parameter). Block b of each kernel handles elements ``[b*per_block, (b+1)*per_block)``.
Every kernel writes its own buffer and reads only earlier ones, so the model is idempotent and
re-running a kernel is harmless, as the compiler guarantees for real packages.

Variants: ``plain`` (in, w, out) and ``preemptible`` (in, w, out, preempt flag, completion
slot, ``reef_poll_every`` int32). On the sim the poll parameter has the poll-interval role, so
``set_poll_every`` really makes running blocks leave early; the kernels' functional effect
(``on_block``) runs only for blocks that finish, as on a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.gpu.sim import SimBlockContext, SimKernelSpec, SimModuleSpec
from reef_rocm.package.files import ModelPackage
from reef_rocm.package.manifest import (
    Buffer,
    LaunchRecord,
    Manifest,
    PreemptLaunch,
    Variant,
)  # fmt: skip
from reef_rocm.package.weights import GENERATOR, generate

SEED = 7
POLL = "reef_poll_every"


def _effect(per_block: int):
    def on_block(ctx: SimBlockContext) -> None:
        lo, nb = ctx.block_id * per_block * 4, per_block * 4
        mem = ctx.memory
        x = mem.view(int(ctx.arg("in")) + lo, nb).view(np.float32)
        w = mem.view(int(ctx.arg("w")) + lo, nb).view(np.float32)
        mem.write(int(ctx.arg("out")) + lo, (x * np.float32(2) + w).astype(np.float32))

    return on_block


class SyntheticPackage(ModelPackage):
    """The package on disk, plus sim kernel models with their functional effect (callables
    do not survive the JSON code object, so the sim gets them from here)."""

    block_time_us: float = 10.0
    per_block: int = 4
    effects: bool = True

    def binary(self, variant: str = "plain") -> Any:
        if self.manifest.target["backend"] != "sim" or not self.effects:
            return super().binary(variant)
        return sim_module(self.manifest, variant, self.block_time_us, self.per_block)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The CPU reference, computed independently of the kernels' effect."""
        w = self.weight()
        h = x.astype(np.float32)
        for _ in self.manifest.variant().kernels:
            h = (h * np.float32(2) + w).astype(np.float32)
        return h

    def weight(self) -> np.ndarray:
        b = self.manifest.buffers[1]
        return generate(SEED, b.name, tuple(b.shape), b.dtype, b.init)


def sim_module(m: Manifest, variant: str, block_time_us: float, per_block: int) -> SimModuleSpec:
    params: tuple[str, ...] = ("in", "w", "out")
    if variant == "preemptible":
        params += ("flag:ptr:preempt_flag", "slot:ptr:completion_slot",
                   f"{POLL}:i32:poll_interval_us")  # fmt: skip
    return SimModuleSpec(
        tuple(
            SimKernelSpec(
                k.name, block_time_us, params=params, blocks_per_cu=1, on_block=_effect(per_block)
            )  # fmt: skip
            for k in m.variant(variant).kernels
        ),
        name=f"synthetic-{variant}",
    )


def write_package(
    root: Path, n_kernels: int = 4, blocks: int = 100, per_block: int = 4,
    target: str = "sim", block_time_us: float = 10.0,
) -> SyntheticPackage:  # fmt: skip
    """Write the package under ``root`` and load it. ``target``: "sim" or "cuda:sm_90"."""
    elems = blocks * per_block
    shape = [elems]
    bufs = [Buffer(0, "x", "float32", shape, 4 * elems, "input")]
    bufs.append(Buffer(1, "w", "float32", shape, 4 * elems, "param",
                       {"kind": "uniform", "bound": 1.0}))  # fmt: skip
    for i in range(1, n_kernels + 1):
        role = "output" if i == n_kernels else "intermediate"
        bufs.append(Buffer(i + 1, f"h{i}", "float32", shape, 4 * elems, role))

    def kernels(preemptible: bool) -> list[LaunchRecord]:
        out = []
        for i in range(n_kernels):
            src = 0 if i == 0 else i + 1
            args: list[dict[str, Any]] = [
                {"kind": "buffer", "id": src}, {"kind": "buffer", "id": 1},
                {"kind": "buffer", "id": i + 2},
            ]  # fmt: skip
            if preemptible:
                args += [{"kind": "preempt_flag"}, {"kind": "completion_slot"},
                         {"kind": "reef_param", "name": POLL, "dtype": "int32"}]  # fmt: skip
            rec = LaunchRecord(f"axpb_{i}", f"axpb_{i}", [blocks, 1, 1], [64, 1, 1], 0,
                               args, writes=[i + 2])  # fmt: skip
            if preemptible:  # one loop trip per block: the sim polls at block time / N
                rec.preempt = PreemptLaunch("blocks", POLL, loop_trips=1)
            out.append(rec)
        return out

    backend, _, arch = target.partition(":")
    variants = {}
    for v in ("plain", "preemptible"):
        variants[v] = Variant(v, f"{v}.bin", f"{v}.src", kernels(v == "preemptible"))
    m = Manifest(
        model={"name": "synthetic", "source": "tests/runtime/synthetic.py"},
        target={"name": target, "backend": backend, "arch": arch},
        tools={}, buffers=bufs, inputs=[0], outputs=[n_kernels + 1],
        weights={"generator": GENERATOR, "seed": SEED, "file": None},
        variants=variants, reference={},
    )  # fmt: skip
    m.validate()
    root.mkdir(parents=True, exist_ok=True)
    m.save(root)
    for v in variants:
        # the JSON sim module: the fake device finds kernel names in it; the sim gets the
        # same models with their effects from SyntheticPackage.binary
        (root / f"{v}.bin").write_bytes(sim_module(m, v, block_time_us, per_block).to_bytes())
        (root / f"{v}.src").write_text("synthetic kernels: see tests/runtime/synthetic.py\n")
    pkg = SyntheticPackage(root, Manifest.load(root))
    pkg.block_time_us, pkg.per_block = block_time_us, per_block
    # reference tensors, as the compiler stores them (the output from the CPU formula)
    x = make_input(pkg)
    np.save(root / "ref_in0.npy", x)
    np.save(root / "ref_out0.npy", pkg.reference(x))
    pkg.manifest.reference = {"inputs": ["ref_in0.npy"], "outputs": ["ref_out0.npy"],
                              "device": "numpy"}  # fmt: skip
    pkg.manifest.save(root)
    return pkg


def make_input(pkg: ModelPackage, seed: int = 1) -> np.ndarray:
    b = pkg.manifest.buffers[pkg.manifest.inputs[0]]
    return np.random.default_rng(seed).standard_normal(tuple(b.shape)).astype(np.float32)
