"""Device timestamps: a one-thread kernel that stores the device clock, and the calibration
that maps it onto the scheduler's host clock.

The kernel (``reef_timestamp(u64 *out)``) is launched on a stream ahead of the work whose start
it marks: its single block runs when that stream gets a block onto the GPU, i.e. when the next
kernel of the stream can start. Clocks: NVIDIA ``%globaltimer`` (ns; PTX below, loaded with
cuModuleLoadData, no nvcc needed); AMD ``s_memrealtime`` (100 MHz, hip_kernels/reef_timestamp.hip,
not built or run yet: no AMD GPU here); sim: the virtual clock itself (ns).

Calibration (min-RTT offset estimate, docs/scheduler.md): ``samples`` times, read the host clock
(t0), launch the kernel, synchronize, read the host clock (t1). The device wrote its clock at
some instant in [t0, t1]; the sample with the smallest t1 - t0 bounds the offset best, and its
midpoint gives offset = d - (t0 + t1) / 2 with uncertainty +-(t1 - t0) / 2. On the sim host and
device share one clock: the offset is exactly 0 and no calibration runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.gpu.api import DevicePtr, LaunchConfig

KERNEL = "reef_timestamp"

# %globaltimer: a 64-bit nanosecond timer (PTX ISA, special registers). One thread stores it.
PTX = b"""
.version 7.0
.target sm_70
.address_size 64

.visible .entry reef_timestamp(.param .u64 out)
{
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [out];
    cvta.to.global.u64 %rd2, %rd1;
    mov.u64 %rd3, %globaltimer;
    st.global.u64 [%rd2], %rd3;
    ret;
}
"""

SIM_BLOCK_US = 0.1  # the sim's timestamp block runs this long and reports its start


def _sim_image() -> Any:
    from reef_rocm.gpu.sim import SimKernelSpec

    def store_start(ctx: Any) -> None:
        t_ns = int(round((ctx.now_us - SIM_BLOCK_US) * 1000))
        ctx.memory.write(int(ctx.arg("out")), np.array([t_ns], dtype="<u8").view(np.uint8))

    return SimKernelSpec(
        KERNEL, block_time_us=SIM_BLOCK_US, params=["out:ptr"], on_block=store_start
    )


def timestamp_image(device: Any) -> tuple[Any | None, str]:
    """(module image, "") for the device's backend, or (None, why not)."""
    backend = device.info.backend
    if backend == "sim":
        return _sim_image(), ""
    if backend == "cuda":
        return PTX, ""
    hsaco = os.environ.get("REEF_TIMESTAMP_HSACO")
    if backend == "hip" and hsaco:
        return Path(hsaco).read_bytes(), ""
    return None, (
        f"no timestamp kernel for backend {backend!r} (hip: build hip_kernels/reef_timestamp.hip "
        "and set REEF_TIMESTAMP_HSACO); RT start times are host-observed launch times"
    )


@dataclass
class Calibration:
    offset_ns: int = 0  # device clock - host clock
    uncertainty_ns: int = 0  # half the best round trip
    samples: int = 0
    exact: bool = False  # same clock (sim)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "offset_ns": self.offset_ns, "uncertainty_ns": self.uncertainty_ns,
            "samples": self.samples, "exact": self.exact, "note": self.note,
        }  # fmt: skip


class DeviceStamps:
    """A ring of ``slots`` u64 device timestamps with pre-bound launches and pinned host
    copies, so stamping and reading back allocate and pack nothing."""

    def __init__(self, device: Any, clock: Any, slots: int = 256) -> None:
        self.device = device
        self.clock = clock
        self.slots = slots
        self.available = False
        self.reason = ""
        self.calibration = Calibration()
        image, why = timestamp_image(device)
        if image is None:
            self.reason = why
            return
        self.module = device.load_module(image)
        fn = self.module.get_kernel(KERNEL)
        self.dev_buf = device.alloc(8 * slots)
        device.memset32(self.dev_buf, 0, 2 * slots)
        self._pinned = None
        if device.capabilities.host_mapped_memory:
            self._pinned = device.alloc_host_mapped(8 * slots)
            self.host = self._pinned.host.view(np.uint64)
        else:
            self.host = np.zeros(slots, np.uint64)
        self.host[:] = 0
        self._views = [self.host[i : i + 1] for i in range(slots)]
        self._ptrs = [DevicePtr(self.dev_buf.ptr + 8 * i) for i in range(slots)]
        one = LaunchConfig(1, 1)
        self._launches = [fn.bind(one, [p]) for p in self._ptrs]
        self.available = True

    def stamp(self, slot: int, stream: Any) -> None:
        self._launches[slot].launch(stream)

    def read_async(self, slot: int, stream: Any) -> None:
        """Copy slot's timestamp to the host in ``stream`` order (lands before anything
        recorded on the stream after it)."""
        self.device.copy_to_host(self._views[slot], self._ptrs[slot], stream)

    def host_us(self, slot: int) -> float | None:
        """The slot's device time on the scheduler clock (None if it was never written)."""
        d = int(self.host[slot])
        if d == 0:
            return None
        return self.clock.to_us(d - self.calibration.offset_ns)

    def clear(self, slot: int) -> None:
        self.host[slot] = 0

    def calibrate(self, stream: Any, samples: int = 16) -> Calibration:
        if not self.available:
            self.calibration = Calibration(note=self.reason)
            return self.calibration
        if self.device.info.extra.get("simulated"):
            self.calibration = Calibration(
                0, 0, 0, True, "sim: host and device share the virtual clock"
            )
            return self.calibration
        best = None
        for _ in range(max(1, samples)):
            t0 = self.clock.now_ns()
            self.stamp(0, stream)
            stream.synchronize()
            t1 = self.clock.now_ns()
            self.device.copy_to_host(self._views[0], self._ptrs[0], stream)
            stream.synchronize()
            d = int(self.host[0])
            if best is None or t1 - t0 < best[2] - best[1]:
                best = (d, t0, t1)
        d, t0, t1 = best  # type: ignore[misc]
        self.calibration = Calibration(
            offset_ns=d - (t0 + t1) // 2, uncertainty_ns=(t1 - t0) // 2, samples=samples,
            note="min-RTT midpoint: timestamp kernel launched and synchronized from the host",
        )  # fmt: skip
        self.host[0] = 0
        return self.calibration

    def close(self) -> None:
        if not self.available:
            return
        self.available = False
        self.dev_buf.close()
        if self._pinned is not None:
            self._pinned.close()
        self.module.close()
