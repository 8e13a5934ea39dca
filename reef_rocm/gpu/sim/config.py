"""Architectures the sim imitates and the options that configure one simulated device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reef_rocm.codeobj.model import KernelResources
from reef_rocm.codeobj.occupancy import AmdArch, NvidiaArch, get_arch
from reef_rocm.codeobj.occupancy import occupancy as codeobj_occupancy
from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu.api import Capabilities
from reef_rocm.gpu.sim.dispatch import DISPATCHERS

GiB = 1 << 30


@dataclass(frozen=True)
class ArchModel:
    """A real GPU family the sim imitates. Per-CU limits (waves, registers, LDS/shared memory,
    block slots, allocation granularities) are reef_rocm.codeobj.occupancy's, not repeated
    here: ``limits`` is that model's arch."""

    arch: str
    product: str  # the real part this imitates, for reports
    vendor_like: str  # "amd" | "nvidia": picks default capabilities and priority range
    compute_units: int
    memory_bytes: int

    @property
    def limits(self) -> AmdArch | NvidiaArch:
        return get_arch(self.arch)

    @property
    def warp_size(self) -> int:
        return self.limits.wave_size

    @property
    def shared_per_block(self) -> int:
        lim = self.limits
        return lim.max_lds_per_workgroup if isinstance(lim, AmdArch) else lim.smem_per_block_optin


ARCHS: dict[str, ArchModel] = {
    a.arch: a
    for a in (
        ArchModel("gfx906", "MI50", "amd", 60, 32 * GiB),
        ArchModel("gfx908", "MI100", "amd", 120, 32 * GiB),
        ArchModel("gfx90a", "MI210", "amd", 104, 64 * GiB),
        ArchModel("gfx942", "MI300X", "amd", 304, 192 * GiB),
        ArchModel("sm_90", "H100", "nvidia", 132, 80 * GiB),
    )
}


def occupancy(
    arch: ArchModel, threads: int, registers: int, shared_bytes: int, sgprs: int = 0
) -> int:
    """Resident blocks per CU, from reef_rocm.codeobj.occupancy (the same rules, allocation
    granularities included, that ``reef codeobj`` applies to real code objects).
    ``shared_bytes`` is static plus dynamic; ``sgprs`` counts on AMD only."""
    res = KernelResources(
        name="sim",
        vendor=arch.vendor_like,
        arch=arch.arch,
        registers=registers,
        sgprs=sgprs if arch.vendor_like == "amd" else 0,
        shared_bytes=shared_bytes,
        wave_size=arch.warp_size,
    )
    return codeobj_occupancy(arch.arch, res, threads).blocks_per_cu


WRITE_VALUE_MODELS = ("packet", "blit")

# overridable per device; launch graphs are not modelled, so the sim never claims them
_CAPABILITY_NAMES = tuple(f.name for f in dataclasses.fields(Capabilities) if f.name != "graphs")


def default_capabilities(arch: ArchModel) -> Capabilities:
    """AMD-like models have everything REEF builds (patched KFD included); NVIDIA-like ones
    have what the cuda backend has (no CU masks, no kill, no queue reset)."""
    amd = arch.vendor_like == "amd"
    return Capabilities(
        stream_write_value=True,
        stream_priorities=True,
        cu_mask=amd,
        wave_kill=amd,
        queue_reset=amd,
        in_kernel_polling=True,
        host_mapped_memory=True,
        indirect_calls=False,  # no DKP dispatcher model in the sim (tests bring one)
    )


@dataclass(frozen=True)
class SimConfig:
    """Every knob of one simulated device; ``open_device("sim", **options)`` fills it.

    Times are microseconds of virtual time. Measured on an H100 80GB HBM3 (driver 580, CUDA
    13.0, 2026-11-24, one run): C++ ``cuLaunchKernel`` 3.6-3.75 us per launch (3.7 here); a
    flag written with ``cuStreamWriteValue32`` visible to the GPU after ~6 us (p50); a launch +
    synchronize round trip ~9.5 us p50, split here as 3.7 launch + 2 dispatch + ~1.8 empty
    kernel + 2 sync wake-up (that split was not measured). Nothing was measured on an AMD GPU.
    Costs marked "estimate" were not measured at all.
    """

    arch: str = "gfx90a"
    compute_units: int | None = None  # None: the arch's count
    memory_bytes: int | None = None  # None: the arch's; caps the sum of live allocations
    # host side: each call advances the one virtual clock by its cost
    launch_overhead_us: float = 3.7  # H100 cuLaunchKernel, measured (see above)
    stream_op_overhead_us: float = 1.0  # write_value32 / event record / wait_event (estimate)
    query_overhead_us: float = 0.5  # stream/event query (estimate); >0 so polling loops progress
    sync_latency_us: float = 2.0  # device done -> a blocked host thread wakes up
    ioctl_latency_us: float = 5.0  # wave kill / queue reset ioctl; acts at its end (estimate)
    copy_latency_us: float = 5.0  # fixed part of a copy / memset (estimate)
    copy_bandwidth_gbps: float = 25.0  # host<->device, GB/s (PCIe 4 x16 class, estimate)
    # device side
    dispatch_latency_us: float = 2.0  # kernel reaches queue head -> its blocks may start
    # how write_value32 executes; None: per arch ("blit" on AMD arches, "packet" on sm_90).
    # "packet": the value lands flag_visibility_us after the op reaches its queue's head.
    # "blit": ROCm's hipStreamWriteValue32 - a barrier packet plus a one-work-item blit kernel,
    # which needs one wave slot of room on some CU (so behind a GPU full of BE blocks it waits
    # for one to leave), starts dispatch_latency_us after reaching the head and writes the
    # value when it ends, blit_time_us later.
    write_value_model: str | None = None
    flag_visibility_us: float = 6.0  # "packet": queue head -> value in memory (H100, measured)
    blit_time_us: float = 1.0  # "blit": run time of the one-work-item blit kernel (estimate)
    block_skip_us: float = 0.5  # a block that sees the flag at start returns after this
    # blocks that leave at a poll or are killed fill their slice of every output their
    # declarative effect writes with 0xDEADBEEF words (partial writes; see docs/sim.md)
    poison_partial_writes: bool = True
    dispatcher: str = "least-loaded"  # block placement, a name in sim.dispatch.DISPATCHERS
    block_time_jitter: float = 0.0  # each block's time scaled by 1 +- U(0, jitter), seeded
    seed: int = 0
    priority_range: tuple[int, int] | None = None  # (least, most urgent); None: per vendor
    # hardware queues streams share per priority; None: 4 on AMD arches (ROCm's
    # GPU_MAX_HW_QUEUES default), 8 on sm_90 (CUDA_DEVICE_MAX_CONNECTIONS default)
    hw_queues: int | None = None
    # does memset32 without a stream block the host until done? None: yes on AMD arches
    # (hipMemsetD32 is the synchronous form), no on sm_90 (CUDA's synchronous memsets are
    # asynchronous to the host for device memory)
    sync_memset_blocks_host: bool | None = None
    trace: bool = False  # record every block/kernel/op in dev.trace
    # capabilities; None: the arch's default (see default_capabilities)
    stream_write_value: bool | None = None
    stream_priorities: bool | None = None
    cu_mask: bool | None = None
    wave_kill: bool | None = None
    queue_reset: bool | None = None
    in_kernel_polling: bool | None = None
    host_mapped_memory: bool | None = None
    indirect_calls: bool | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(
                f"sim: unknown arch {self.arch!r}; models exist for {', '.join(ARCHS)}"
            )
        if self.compute_units is not None and self.compute_units < 1:
            raise ValueError("sim: compute_units must be >= 1")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_us") and (not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"sim: {f.name} must be a number >= 0, got {v!r}")
        if self.copy_bandwidth_gbps <= 0:
            raise ValueError("sim: copy_bandwidth_gbps must be > 0")
        if not 0 <= self.block_time_jitter < 1:
            raise ValueError("sim: block_time_jitter must be in [0, 1)")
        if self.dispatcher not in DISPATCHERS:
            raise ValueError(
                f"sim: unknown dispatcher {self.dispatcher!r}; registered: {', '.join(DISPATCHERS)}"
            )
        if self.write_value_model not in (None, *WRITE_VALUE_MODELS):
            raise ValueError(
                f"sim: write_value_model must be one of {WRITE_VALUE_MODELS}, "
                f"got {self.write_value_model!r}"
            )
        if self.hw_queues is not None and (
            not isinstance(self.hw_queues, int) or self.hw_queues < 1
        ):
            raise ValueError(f"sim: hw_queues must be an int >= 1, got {self.hw_queues!r}")
        if self.priority_range is not None:
            least, most = self.priority_range
            if most > least:
                raise ValueError("sim: priority_range is (least, most urgent); most <= least")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SimConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        caps = options.pop("capabilities", None)
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"sim backend: unknown option(s) {unknown}; valid: {', '.join(sorted(names))}, "
                "capabilities"
            )
        if caps is not None:
            # a Capabilities object or dict sets every flag it names unless given one by one
            capd = caps.as_dict() if isinstance(caps, Capabilities) else dict(caps)
            capd.pop("level", None)
            if capd.pop("graphs", False):
                raise UnsupportedError("sim backend: launch graphs are not modelled")
            bad = sorted(set(capd) - set(_CAPABILITY_NAMES))
            if bad:
                raise TypeError(f"sim backend: unknown capabilities {bad}")
            for k, v in capd.items():
                options.setdefault(k, bool(v))
        if "priority_range" in options and options["priority_range"] is not None:
            options["priority_range"] = tuple(options["priority_range"])
        return cls(**options)

    @property
    def arch_model(self) -> ArchModel:
        a = ARCHS[self.arch]
        return dataclasses.replace(
            a,
            compute_units=self.compute_units or a.compute_units,
            memory_bytes=self.memory_bytes or a.memory_bytes,
        )

    def capabilities(self) -> Capabilities:
        base = default_capabilities(ARCHS[self.arch])
        over = {n: getattr(self, n) for n in _CAPABILITY_NAMES if getattr(self, n) is not None}
        return dataclasses.replace(base, **over)

    def stream_priority_range(self) -> tuple[int, int]:
        if not self.capabilities().stream_priorities:
            return (0, 0)
        if self.priority_range is not None:
            return self.priority_range
        # HIP exposes low/normal/high; CUDA on sm_90 exposes 0..-5
        return (0, -1) if ARCHS[self.arch].vendor_like == "amd" else (0, -5)

    @property
    def vendor_like(self) -> str:
        return ARCHS[self.arch].vendor_like

    def write_value_mode(self) -> str:
        if self.write_value_model is not None:
            return self.write_value_model
        return "blit" if self.vendor_like == "amd" else "packet"

    def sync_memset_waits(self) -> bool:
        if self.sync_memset_blocks_host is not None:
            return self.sync_memset_blocks_host
        return self.vendor_like == "amd"

    def hw_queue_count(self) -> int:
        if self.hw_queues is not None:
            return self.hw_queues
        return 4 if ARCHS[self.arch].vendor_like == "amd" else 8

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["simulated"] = True
        return d
