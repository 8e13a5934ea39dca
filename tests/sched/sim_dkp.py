"""A padding backend for the sim (test tooling): the padder's device side, modelled.

The sim has no DKP dispatcher. This model keeps what the scheduler relies on and checks it:
a padded launch, in stream order on the RT stream, runs the RT kernel (its own sim kernel,
every block) and then a *BE part*: a sim kernel whose every block, when it completes, takes
the next BE virtual block from the cursor's ``next`` word if it is below the launch's limit,
applies the BE kernel's own effect to that virtual block (its slice of the BE kernel's
output, as the DKP-ready body computes it), and counts it in the ``done`` word - the BE
instance's completion slot (``SlotCursor``). So padded BE work is a prefix of the kernel's
virtual blocks, continues across launches, and lands in the slots the engine restores from.
It also records every virtual block that ran while its BE kernel's predecessor was not
complete (``violations``: sequential BE semantics broken).

Not modelled: timing (the BE part runs after the RT kernel, not beside it), the CU split, and
the dispatcher stopping BE work when the RT kernel's blocks are done; ``per_launch`` caps the
blocks one launch hands out instead, so launches can fall short of their limit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reef_rocm.codeobj import KernelResources
from reef_rocm.dkp.build import ProxyBuild
from reef_rocm.dkp.launch import SlotCursor
from reef_rocm.dkp.select import KernelProfile, Selector
from reef_rocm.gpu import LaunchConfig
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.gpu.sim.context import SimBlockContext
from reef_rocm.gpu.sim.params import decode_params
from reef_rocm.gpu.sim.spec import SimKernelSpec, SimModuleSpec, SimParam

ARCH = "gfx90a"
PROXY = ProxyBuild(
    64, "r64.model",
    KernelResources("reef_dkp_dispatch_kernel", "amd", ARCH, 32, sgprs=32, shared_bytes=8),
)  # fmt: skip


class SimPaddedLaunch:
    """RT kernel ``rt`` then the BE part (grid = min(limit, per_launch) blocks)."""

    def __init__(self, rt_bound: Any, be_kernel: Any, be_args: list, n: int, per_launch: Any,
                 names: tuple[str, int, str, int]) -> None:  # fmt: skip
        self.names = names  # (RT model, RT kernel, BE model, BE kernel)
        self.rt = rt_bound
        self.kernel = be_kernel
        self.args = be_args
        self.be_count = n
        self.limit = 0
        self.per_launch = per_launch
        self.table = None
        self._bound: dict[int, Any] = {}
        self.launches = 0

    def set_be_limit(self, limit: int) -> None:
        if not 0 <= limit <= self.be_count:
            raise ValueError(f"BE limit {limit} outside 0..{self.be_count}")
        self.limit = limit

    def set_table(self, table: Any) -> None:
        self.table = table

    def launch(self, stream: Any) -> None:
        self.rt.launch(stream)
        grid = min(self.limit, self.per_launch or self.limit)
        if grid < 1:
            return
        b = self._bound.get(grid)
        if b is None:
            b = self._bound[grid] = self.kernel.bind(LaunchConfig(grid, 64), self.args)
        b.params.set(2, np.int32(self.limit))
        b.launch(stream)
        self.launches += 1


class SimPadBackend:
    """``padder.open_backend``'s stand-in on the sim. ``bodies``: model names with DKP
    bodies (None: all); ``profile``: None (no DKP profile) or model name -> per-kernel
    ``padded/plain`` time ratio list (missing models: 1.0 for every kernel)."""

    def __init__(self, device: Any, tolerance: float, *, bodies: set[str] | None = None,
                 profile: dict[str, list[float]] | None = None, per_launch: int | None = None,
                 has_profile: bool = True) -> None:  # fmt: skip
        self.device = device
        self.tolerance = tolerance
        self.bodies = bodies
        self.ratios = profile or {}
        self.per_launch = per_launch
        self.selector = Selector(ARCH, device.info.compute_units, [PROXY])
        self.profile_note = None if has_profile else "no DKP profile (sim model): padding nothing"
        self.violations: list[str] = []
        self.blocks_run = 0
        self.pads: list[SimPaddedLaunch] = []
        self.tables: set[int] = set()

    def has_bodies(self, package: Any) -> bool:
        return self.bodies is None or package.name in self.bodies

    def kernel_profiles(self, model: Any) -> list[KernelProfile] | None:
        if self.profile_note is not None:
            return None
        cus = self.device.info.compute_units
        out = []
        for b in model.inst.launches:
            spec, cfg = b.kernel.spec, b.config
            per_cu = spec.blocks_per_cu or 1
            us = spec.block_time_us * math.ceil(cfg.num_blocks / (cus * per_cu))
            out.append(KernelProfile(spec.name, cfg.num_blocks, cfg.threads_per_block, us,
                                     per_cu, 32, 0))  # fmt: skip
        return out

    def rt_within(self, model: Any, kernel: int, budget: int) -> bool:
        if self.profile_note is not None:
            return False
        r = self.ratios.get(model.package.name)
        ratio = 1.0 if r is None else r[kernel]
        return ratio <= 1.0 + self.tolerance

    def prepare(self, inst: Any, profiles: Any, stream: Any) -> None:
        pass

    def cursor(self, inst: Any) -> SlotCursor:
        return SlotCursor(self.device, inst)

    def bind(self, rt: Any, i: int, be: Any, j: int, cursor: Any, proxy: Any, stream: Any):
        bb = be.launches[j]
        spec, cfg, eff = bb.kernel.spec, bb.config, bb.kernel.effect
        be_args = decode_params(spec.params, bb.params.raw())
        blocks = cfg.num_blocks
        slots = be.completion_slots.ptr
        pred = (slots + 4 * (j - 1), int(be.block_counts[j - 1])) if j > 0 else None
        back = self

        def on_block(ctx: SimBlockContext) -> None:
            mem = ctx.memory
            nxt, done, limit = int(ctx.args[0]), int(ctx.args[1]), int(ctx.args[2])
            vb = mem.read_u32(nxt)
            if vb >= limit:
                return
            if pred is not None and mem.read_u32(pred[0]) != pred[1]:
                back.violations.append(f"{spec.name} block {vb} ran before kernel {j - 1} "
                                       "completed")  # fmt: skip
            eff.apply(SimBlockContext(spec.name, vb, cfg.grid, cfg.block, spec.params,
                                      be_args, mem, ctx.now_us))  # fmt: skip
            mem.write_u32(nxt, vb + 1)
            mem.add_u32(done, 1)
            back.blocks_run += 1

        model = SimKernelSpec(
            f"dkp_be_{j}", spec.block_time_us,
            params=(SimParam("next"), SimParam("done"), SimParam("limit", "i32")),
            blocks_per_cu=spec.blocks_per_cu, on_block=on_block,
        )  # fmt: skip
        kern = self.device.load_module(SimModuleSpec((model,), "dkp-model")).get_kernel(model.name)
        args = [cursor.next_ptr(j), DevicePtr(cursor.done_ptr(j).ptr), np.int32(0)]
        names = (rt.package.name, i, be.package.name, j)
        pad = SimPaddedLaunch(rt.launches[i], kern, args, blocks, self.per_launch, names)
        self.pads.append(pad)
        return pad

    def table_for(self, n_rt: int, stream: Any) -> int:
        self.tables.add(n_rt)
        return n_rt

    def forget(self, inst: Any) -> None:
        pass

    def close(self) -> None:
        pass
