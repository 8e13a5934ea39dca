"""Simulated model packages: real package directories whose code objects are sim kernel models.

``build_sim_package(out_dir, name, kernels)`` writes a directory that
``reef_rocm.package.ModelPackage.load`` accepts and ``reef_rocm.runtime.ModelInstance(sim_device,
path, variant=...)`` runs on a sim device: a schema-v2 manifest (target backend ``sim``), the
variants ``plain`` and ``preemptible`` (each binary is a ``SimModuleSpec`` JSON), seeded weights
and reference input/output files, like a compiled package.

The model is a chain ``x0 -> x1 -> ... -> out`` of float32 vectors of ``elements`` values:
kernel i computes ``x[i+1] = x[i] * scale_i + bias_i + w_i`` (``w_i`` a seeded weight tensor)
as a declarative ``affine`` effect (reef_rocm.gpu.sim.effects), block b writing its own slice
of ``x[i+1]``. Every buffer is written by one kernel, so every kernel is idempotent, as the
compiler guarantees for real packages. The reference output is computed here with numpy over
whole arrays, independently of the sim.

Preemptible kernels take the arguments the REEF transformer adds, in its order: the preempt
flag pointer, the completion slot pointer and (``poll_arg=True``) an int32 ``reef_poll_every``
(poll every N loop iterations, 0 = block-start check only). ``loop_trips`` lives in the sim
module spec and, where the manifest schema has ``LaunchRecord.preempt`` (schema 3), also there
with the poll parameter and the plan's ``poll_every`` as the default launch value.

``sim_package_from_profile(out_dir, profile)`` builds one whose kernels replay a per-kernel
timing profile (what ``ModelInstance.profile()`` / ``reef profile`` writes), so a scheduler or
DISB can run on the sim with zoo-like timings.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm import __version__
from reef_rocm.errors import PackageError
from reef_rocm.gpu.sim.config import ARCHS
from reef_rocm.gpu.sim.spec import (
    ROLE_COMPLETION_SLOT,
    ROLE_POLL_EVERY,
    ROLE_PREEMPT_FLAG,
    SimKernelSpec,
    SimModuleSpec,
    SimParam,
)
from reef_rocm.package.manifest import Buffer, LaunchRecord, Manifest, PreemptLaunch, Variant
from reef_rocm.package.weights import GENERATOR, generate

POLL_PARAM = "reef_poll_every"  # the transformer's name for the poll-period argument
DTYPE = "float32"
SIM_MODEL_KIND = "sim"

Dims = int | Sequence[int]


def _dims3(v: Dims, what: str) -> tuple[int, int, int]:
    t = (int(v),) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)
    if not 1 <= len(t) <= 3 or any(x < 1 for x in t):
        raise ValueError(f"{what} must be 1 to 3 positive ints, got {v!r}")
    return (t + (1, 1))[:3]  # type: ignore[return-value]


@dataclass(frozen=True)
class SimKernelPlan:
    """One kernel of a simulated package.

    Give ``block_time_us`` (one block's run time) or ``duration_us`` (the whole kernel alone on
    the package's sim device; block time = duration / rounds of ``blocks_per_cu`` blocks on
    every CU). ``blocks_per_cu`` pins occupancy (None: computed from the block size with
    ``block_time_us``, 1 with ``duration_us``).
    ``loop_trips``: iterations of a block's loop, the unit of ``reef_poll_every``.
    ``poll_every``: the poll period baked into the preemptible kernel when it takes no
    ``reef_poll_every`` argument (None: block-start check only).
    ``scale``/``bias``: the affine step (None: a per-kernel default that keeps values bounded).
    """

    name: str
    grid: Dims
    block: Dims = 256
    block_time_us: float | None = None
    duration_us: float | None = None
    blocks_per_cu: int | None = None
    loop_trips: int = 1
    poll_every: int | None = None
    scale: float | None = None
    bias: float | None = None

    def __post_init__(self) -> None:
        if (self.block_time_us is None) == (self.duration_us is None):
            raise ValueError(f"kernel {self.name}: give exactly one of block_time_us, duration_us")
        t = self.block_time_us if self.block_time_us is not None else self.duration_us
        if not t or t <= 0:
            raise ValueError(f"kernel {self.name}: time must be > 0, got {t!r}")
        _dims3(self.grid, f"kernel {self.name} grid")
        _dims3(self.block, f"kernel {self.name} block")

    @property
    def num_blocks(self) -> int:
        return math.prod(_dims3(self.grid, "grid"))

    @property
    def occupancy_pin(self) -> int | None:
        """``blocks_per_cu`` for the kernel model: a ``duration_us`` plan is pinned (to 1 when
        not given), because its block time was derived from that many blocks per CU."""
        if self.duration_us is not None:
            return self.blocks_per_cu or 1
        return self.blocks_per_cu

    def block_time(self, compute_units: int) -> float:
        """Block time that makes the kernel last ``duration_us`` on ``compute_units`` CUs."""
        if self.block_time_us is not None:
            return float(self.block_time_us)
        per_cu = self.blocks_per_cu or 1
        rounds = math.ceil(self.num_blocks / (compute_units * per_cu))
        return max(float(self.duration_us) / rounds, 1e-3)  # type: ignore[arg-type]


def _affine_coefficients(i: int, plan: SimKernelPlan) -> tuple[float, float]:
    # |scale| < 1 keeps a long chain bounded; float32-exact values keep numpy and sim equal
    scale = plan.scale if plan.scale is not None else 0.5 + 0.125 * (i % 4)
    bias = plan.bias if plan.bias is not None else 0.25 * ((i % 5) - 2)
    return float(np.float32(scale)), float(np.float32(bias))


def build_sim_package(
    out_dir: str | os.PathLike[str],
    name: str,
    kernels: Sequence[SimKernelPlan],
    *,
    functional: bool = True,
    seed: int = 0,
    elements: int = 1024,
    arch: str = "gfx90a",
    compute_units: int | None = None,
    poll_arg: bool = False,
    weights: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a simulated model package to ``out_dir`` (created; must be empty or absent) and
    return its path. See the module docstring for the model it computes.

    ``functional=False``: kernels only take time (no effects; no reference output).
    ``arch``/``compute_units``: the sim device the timings are for (``duration_us`` plans are
    converted with this CU count); recorded in the manifest target.
    ``poll_arg``: preemptible kernels take an int32 ``reef_poll_every`` argument (the coming
    transformer's form); the default bakes each plan's ``poll_every`` into the kernel model.
    ``weights=False``: no weight tensors (``x[i+1] = x[i] * scale + bias``).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown sim arch {arch!r}; models exist for {', '.join(ARCHS)}")
    plans = list(kernels)
    if not plans:
        raise ValueError("a sim package needs at least one kernel")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names must be unique, got {names}")
    if elements < 1:
        raise ValueError("elements must be >= 1")
    cus = compute_units or ARCHS[arch].compute_units
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise PackageError(f"{out}: exists and is not empty; refusing to overwrite")
    n = len(plans)

    # buffers: x0 (input), w_i (params), x1..x_{n-1} (intermediate), x_n (output)
    nbytes = elements * np.dtype(DTYPE).itemsize
    buffers: list[Buffer] = [Buffer(0, "x0", DTYPE, [elements], nbytes, "input")]
    xs = [0]
    ws: list[int | None] = []
    for i in range(n):
        if weights:
            buffers.append(
                Buffer(len(buffers), f"w{i}", DTYPE, [elements], nbytes, "param",
                       {"kind": "uniform", "bound": 0.5})
            )  # fmt: skip
            ws.append(len(buffers) - 1)
        else:
            ws.append(None)
        role = "output" if i == n - 1 else "intermediate"
        xname = "out" if i == n - 1 else f"x{i + 1}"
        buffers.append(Buffer(len(buffers), xname, DTYPE, [elements], nbytes, role))
        xs.append(len(buffers) - 1)

    files: dict[str, bytes] = {}
    variants: dict[str, Variant] = {}
    for vname in ("plain", "preemptible"):
        pre = vname == "preemptible"
        specs, records = [], []
        for i, plan in enumerate(plans):
            params = [SimParam("src"), SimParam("dst")]
            args: list[dict[str, Any]] = [
                {"kind": "buffer", "id": xs[i]},
                {"kind": "buffer", "id": xs[i + 1]},
            ]
            if ws[i] is not None:
                params.insert(1, SimParam("weight"))
                args.insert(1, {"kind": "buffer", "id": ws[i]})
            if pre:
                params += [
                    SimParam("reef_preempt_flag", "ptr", ROLE_PREEMPT_FLAG),
                    SimParam("reef_completion_slot", "ptr", ROLE_COMPLETION_SLOT),
                ]
                args += [{"kind": "preempt_flag"}, {"kind": "completion_slot"}]
                if poll_arg:
                    params.append(SimParam(POLL_PARAM, "i32", ROLE_POLL_EVERY))
                    args.append({"kind": "reef_param", "name": POLL_PARAM, "dtype": "int32"})
            effect = None
            if functional:
                scale, bias = _affine_coefficients(i, plan)
                effect = {"op": "affine", "src": "src", "dst": "dst", "n": elements,
                          "dtype": DTYPE, "scale": scale, "bias": bias}  # fmt: skip
                if ws[i] is not None:
                    effect["weight"] = "weight"
            grid, block = _dims3(plan.grid, "grid"), _dims3(plan.block, "block")
            specs.append(
                SimKernelSpec(
                    name=plan.name,
                    block_time_us=plan.block_time(cus),
                    params=tuple(params),
                    blocks_per_cu=plan.occupancy_pin,
                    loop_trips=plan.loop_trips,
                    poll_every=plan.poll_every if pre and not poll_arg else None,
                    effect=effect,
                    meta={"grid": list(grid), "block": list(block)},
                )
            )
            record = LaunchRecord(
                name=plan.name,
                func=plan.name,
                grid=list(grid),
                block=list(block),
                shared_mem=0,
                args=args,
                writes=[xs[i + 1]],
            )
            if pre:
                # what the transformer records: slot counts blocks, the poll argument, the
                # loop trips per block and the compile-time poll interval
                record.preempt = PreemptLaunch(
                    slot_counts="blocks",
                    poll_param=POLL_PARAM if poll_arg else None,
                    loop_trips=plan.loop_trips,
                    default_poll_every=plan.poll_every or 0,
                )
            records.append(record)
        module = SimModuleSpec(tuple(specs), f"{name}-{vname}")
        rel = f"sim/{vname}.simmod.json"
        files[rel] = module.to_bytes()
        # a sim module is its own source: the kernel model is all there is
        variants[vname] = Variant(vname, rel, rel, records)

    reference: dict[str, Any] = {"device": "numpy", "inputs": [], "outputs": []}
    x = generate(seed, "input_0", [elements], DTYPE, {"kind": "uniform", "bound": 1.0})
    reference["inputs"].append("reference/input_0.npy")
    ref_files = {"reference/input_0.npy": x}
    if functional:
        y = x.copy()
        for i, plan in enumerate(plans):
            scale, bias = _affine_coefficients(i, plan)
            y = y * np.float32(scale) + np.float32(bias)
            if ws[i] is not None:
                b = buffers[ws[i]]  # type: ignore[index]
                y = y + generate(seed, b.name, b.shape, b.dtype, b.init or {})
        reference["outputs"].append("reference/output_0.npy")
        ref_files["reference/output_0.npy"] = y.astype(DTYPE)

    content = hashlib.sha256()
    for rel in sorted(files):
        content.update(files[rel])
    manifest = Manifest(
        model={
            "name": name, "kind": SIM_MODEL_KIND, "content_hash": content.hexdigest(),
            "input_names": ["x0"], "simulated": True, "functional": functional,
            "elements": elements, **dict(meta or {}),
        },
        target={
            "name": f"sim:{arch}", "kind": "sim", "arch": arch, "backend": "sim",
            "compute_units": cus, "simulated": True,
        },
        tools={"reef_rocm": __version__, "builder": "reef_rocm.gpu.sim.packages"},
        buffers=buffers,
        inputs=[0],
        outputs=[xs[-1]],
        weights={"generator": GENERATOR, "seed": seed, "file": None},
        variants=variants,
        reference=reference,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    manifest.validate()

    out.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    for rel, arr in ref_files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(out / rel, arr)
    manifest.save(out)
    return out


def plans_from_profile(
    profile: Mapping[str, Any] | str | os.PathLike[str],
    *,
    blocks_per_cu: int | None = 1,
    loop_trips: int = 1,
    poll_every: int | None = None,
) -> list[SimKernelPlan]:
    """One plan per profiled launch, in order: ``duration_us`` from ``us_median`` (or
    ``duration_us``), grid and block as profiled. A kernel launched more than once (one symbol,
    several launch records) gets ``name_<index>`` for every launch after the first, because a
    sim module holds each kernel name once."""
    prof = _load_profile(profile)
    records = prof.get("kernels")
    if not isinstance(records, list) or not records:
        raise ValueError("profile has no 'kernels' list")
    plans, seen = [], set()
    for i, r in enumerate(records):
        try:
            kname = str(r["name"])
            dur = float(r["us_median"] if "us_median" in r else r["duration_us"])
            grid, block = r["grid"], r.get("block", 1)
        except KeyError as e:
            raise ValueError(f"profile kernel {i}: missing {e}") from None
        if kname in seen:
            kname = f"{kname}_{r.get('index', i)}"
        seen.add(kname)
        plans.append(
            SimKernelPlan(kname, grid, block, duration_us=max(dur, 1e-3),
                          blocks_per_cu=blocks_per_cu, loop_trips=loop_trips,
                          poll_every=poll_every)
        )  # fmt: skip
    return plans


def sim_package_from_profile(
    out_dir: str | os.PathLike[str],
    profile: Mapping[str, Any] | str | os.PathLike[str],
    *,
    name: str | None = None,
    compute_units: int | None = None,
    arch: str | None = None,
    functional: bool = True,
    seed: int = 0,
    elements: int = 1024,
    blocks_per_cu: int | None = 1,
    loop_trips: int = 1,
    poll_every: int | None = None,
    poll_arg: bool = False,
) -> Path:
    """A sim package whose kernels replay a per-kernel timing profile (the JSON
    ``ModelInstance.profile()`` / ``reef profile`` writes: ``{"model", "device", "kernels":
    [{"name", "grid", "block", "us_median", ...}]}``).

    Each kernel's blocks run in ``ceil(blocks / (compute_units * blocks_per_cu))`` rounds on a
    sim with ``compute_units`` CUs, so block time = measured median / rounds and the kernel
    replays its measured time there. ``compute_units``: the CU/SM count of the GPU that was
    profiled (the profile JSON does not record it; ``profile["device"]["compute_units"]`` is
    used when present); open the sim with the same count (``manifest.target["compute_units"]``).
    ``arch``: the sim arch (default: sm_90 for an NVIDIA profile, else gfx90a).
    """
    prof = _load_profile(profile)
    dev = prof.get("device")
    dev_name = dev.get("name", "") if isinstance(dev, Mapping) else str(dev or "")
    cus = compute_units
    if cus is None and isinstance(dev, Mapping):
        cus = dev.get("compute_units")
    if not cus:
        raise ValueError(
            f"profile of {prof.get('model')!r} on {dev_name or 'an unnamed device'} does not say "
            "how many CUs/SMs it ran on; pass compute_units= (e.g. 132 for an H100/H200)"
        )
    if arch is None:
        arch = "sm_90" if "nvidia" in dev_name.lower() else "gfx90a"
    plans = plans_from_profile(
        prof, blocks_per_cu=blocks_per_cu, loop_trips=loop_trips, poll_every=poll_every
    )
    model = str(prof.get("model", "profiled"))
    return build_sim_package(
        out_dir, name or f"{model}-sim", plans, functional=functional, seed=seed,
        elements=elements, arch=arch, compute_units=int(cus), poll_arg=poll_arg,
        meta={"profile_of": model, "profile_device": dev_name,
              "profile_variant": prof.get("variant")},
    )  # fmt: skip


def _load_profile(src: Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    if isinstance(src, Mapping):
        return src
    text = os.fspath(src)
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text, encoding="utf-8") as f:
        return json.load(f)
