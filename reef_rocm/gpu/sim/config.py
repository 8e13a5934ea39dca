"""Architectures the sim imitates and the options that configure one simulated device."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from reef_rocm.gpu.api import Capabilities

GiB = 1 << 30


@dataclass(frozen=True)
class ArchModel:
    """Per-CU limits of a real GPU family, enough to compute occupancy."""

    arch: str
    product: str  # the real part this imitates, for reports
    vendor_like: str  # "amd" | "nvidia": picks default capabilities and priority range
    compute_units: int
    warp_size: int
    max_waves_per_cu: int
    registers_per_cu: int  # 32-bit registers per CU summed over lanes
    shared_per_cu: int  # LDS / shared memory per CU in bytes
    shared_per_block: int
    max_blocks_per_cu: int
    memory_bytes: int


ARCHS: dict[str, ArchModel] = {
    a.arch: a
    for a in (
        # gfx9: 4 SIMDs per CU, 64 KiB LDS. gfx906/908: 256 VGPRs x 64 lanes per SIMD, 10 waves
        # per SIMD; gfx90a/942: 512 unified VGPRs, 8 waves per SIMD.
        ArchModel("gfx906", "MI50", "amd", 60, 64, 40, 4 * 256 * 64, 65536, 65536, 16, 32 * GiB),
        ArchModel("gfx908", "MI100", "amd", 120, 64, 40, 4 * 256 * 64, 65536, 65536, 16, 32 * GiB),
        ArchModel("gfx90a", "MI210", "amd", 104, 64, 32, 4 * 512 * 64, 65536, 65536, 16, 64 * GiB),
        ArchModel(
            "gfx942", "MI300X", "amd", 304, 64, 32, 4 * 512 * 64, 65536, 65536, 16, 192 * GiB
        ),
        # H100 SXM: 64 warps, 64K registers, 228 KiB shared per SM (227 KiB per block), 32 blocks
        ArchModel("sm_90", "H100", "nvidia", 132, 32, 64, 65536, 233472, 232448, 32, 80 * GiB),
    )
}


def occupancy(arch: ArchModel, threads: int, registers: int, shared_bytes: int) -> int:
    """Resident blocks per CU: the tightest of the wave, register, shared-memory and block
    limits. Allocation granularities are ignored (a model, not the vendor's calculator)."""
    waves = math.ceil(threads / arch.warp_size)
    limits = [arch.max_waves_per_cu // waves, arch.max_blocks_per_cu]
    if registers:
        limits.append(arch.registers_per_cu // (registers * waves * arch.warp_size))
    if shared_bytes:
        limits.append(arch.shared_per_cu // shared_bytes)
    return max(0, min(limits))


_CAPABILITY_NAMES = tuple(f.name for f in dataclasses.fields(Capabilities))


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
    )


@dataclass(frozen=True)
class SimConfig:
    """Every knob of one simulated device; ``open_device("sim", **options)`` fills it.

    Times are microseconds of virtual time. Defaults come from REFERENCE.md section 5 (H100):
    3.7 us per launch, ~6 us for a stream write-value to become visible, ~9.5 us for a launch +
    synchronize round trip (split here as 3.7 launch + 2 dispatch + ~1.8 empty kernel + 2 sync
    wake-up; that split was not measured). Costs marked "estimate" were not measured at all.
    """

    arch: str = "gfx90a"
    compute_units: int | None = None  # None: the arch's count
    memory_bytes: int | None = None  # None: the arch's; caps the sum of live allocations
    # host side: each call advances the one virtual clock by its cost
    launch_overhead_us: float = 3.7
    stream_op_overhead_us: float = 1.0  # write_value32 / event record / wait_event (estimate)
    query_overhead_us: float = 0.5  # stream/event query (estimate); >0 so polling loops progress
    sync_latency_us: float = 2.0  # device done -> a blocked host thread wakes up
    ioctl_latency_us: float = 5.0  # wave kill / queue reset ioctl; acts at its end (estimate)
    copy_latency_us: float = 5.0  # fixed part of a copy / memset (estimate)
    copy_bandwidth_gbps: float = 25.0  # host<->device, GB/s (PCIe 4 x16 class, estimate)
    # device side
    dispatch_latency_us: float = 2.0  # kernel reaches queue head -> its blocks may start
    flag_visibility_us: float = 6.0  # write_value32 reaches queue head -> value in memory
    block_skip_us: float = 0.5  # a block that sees the flag at start returns after this
    block_time_jitter: float = 0.0  # each block's time scaled by 1 +- U(0, jitter), seeded
    seed: int = 0
    priority_range: tuple[int, int] | None = None  # (least, most urgent); None: per vendor
    trace: bool = False  # record every block/kernel/op in dev.trace
    # capabilities; None: the arch's default (see default_capabilities)
    stream_write_value: bool | None = None
    stream_priorities: bool | None = None
    cu_mask: bool | None = None
    wave_kill: bool | None = None
    queue_reset: bool | None = None
    in_kernel_polling: bool | None = None
    host_mapped_memory: bool | None = None

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

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["simulated"] = True
        return d
