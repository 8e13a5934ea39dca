"""The sim backend: exact virtual timelines on small cases, REEF's mechanisms, and that every
output says it is simulated. Runs on any CPU."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest
from exact_sim import BE_PARAMS, exact_sim

from reef_rocm.errors import CodeObjectError, GpuError, UnsupportedError
from reef_rocm.gpu import Capabilities, DevicePtr, LaunchConfig, PreemptLevel, open_device, probe
from reef_rocm.gpu.sim import SimBlockContext, SimDevice, SimKernelSpec, SimModuleSpec, SimParam


# Every host and device cost zero, so timelines are exactly the block times.
def sim(**kw) -> SimDevice:
    return exact_sim(2, **kw)


def mark_block(ctx: SimBlockContext) -> None:
    """Functional effect: block b writes b + 1 into out[b] (u32)."""
    ctx.memory.write_u32(int(ctx.arg("out")) + 4 * ctx.block_id, ctx.block_id + 1)


def be_kernel(block_time_us: float = 10, **kw) -> SimKernelSpec:
    kw.setdefault("blocks_per_cu", 1)
    return SimKernelSpec("be", block_time_us, params=BE_PARAMS, on_block=mark_block, **kw)


class BE:
    """One BE kernel with its output, preempt flag and completion slot."""

    def __init__(self, dev: SimDevice, spec: SimKernelSpec | None = None, blocks: int = 4):
        self.dev = dev
        self.kernel = dev.load_module(spec or be_kernel()).get_kernel("be")
        self.out = dev.alloc(4 * blocks)
        self.flag = dev.alloc(4)
        self.slot = dev.alloc(4)
        self.bound = self.kernel.bind(LaunchConfig(blocks, 64), [self.out, self.flag, self.slot])

    def outputs(self) -> list[int]:
        return list(np.frombuffer(self.dev.peek(self.out, self.out.nbytes), dtype="<u4"))

    @property
    def slot_value(self) -> int:
        return self.dev.peek_u32(self.slot)


def timeline(dev: SimDevice, kernel: str | None = None) -> list[tuple]:
    return [
        (r.block, r.cu, r.start_us, r.end_us, r.outcome)
        for r in sorted(dev.trace.blocks(kernel), key=lambda r: (r.start_us, r.block))
    ]


# ---------------------------------------------------------------------------------------
# timing


def test_four_blocks_on_two_cus_take_two_block_times():
    dev = sim()
    be = BE(dev)
    s = dev.create_stream()
    be.bound.launch(s)
    dev.synchronize()
    assert dev.now_us == 20.0
    assert timeline(dev) == [
        (0, 0, 0.0, 10.0, "completed"),
        (1, 1, 0.0, 10.0, "completed"),
        (2, 0, 10.0, 20.0, "completed"),
        (3, 1, 10.0, 20.0, "completed"),
    ]
    (k,) = dev.trace.kernels()
    assert (k.start_us, k.end_us, k.outcome) == (0.0, 20.0, "completed=4")
    assert be.slot_value == 4 and be.outputs() == [1, 2, 3, 4]


def test_occupancy_from_resources_packs_blocks_per_cu():
    dev = sim()
    spec = SimKernelSpec("k", 10, registers=64, shared_bytes=32 * 1024)
    k = dev.load_module(spec).get_kernel("k")
    # gfx90a: 256 threads = 4 waves; registers allow 8 blocks, 64 KiB LDS allows 2
    assert k.max_active_blocks_per_cu(256) == 2
    assert k.max_active_blocks_per_cu(256, dynamic_shared=32 * 1024) == 1
    assert k.max_active_blocks_per_cu(2048) == 0
    assert k.attributes["registers"] == 64
    k.launch(dev.create_stream(), LaunchConfig(4, 256))
    dev.synchronize()
    assert dev.now_us == 10.0  # 4 blocks, 2 per CU, 2 CUs: one round
    assert sorted(r.cu for r in dev.trace.blocks()) == [0, 0, 1, 1]


def test_occupancy_applies_allocation_granularity_and_slot_rules():
    # The sim uses reef_rocm.codeobj.occupancy; these are the documented hardware rules,
    # computed by hand (the old sim formula got each of them wrong).
    amd = sim()
    k = amd.load_module(SimKernelSpec("lds", 10, shared_bytes=13000)).get_kernel("lds")
    # gfx90a LDS is allocated in 512-byte granules: 13000 -> 13312 B, 65536 // 13312 = 4 (not 5)
    assert k.max_active_blocks_per_cu(256) == 4
    k = amd.load_module(SimKernelSpec("wave", 10, registers=60)).get_kernel("wave")
    # one-wave workgroups take no barrier slot: 60 -> 64 VGPRs, 8 waves/SIMD x 4 SIMDs = 32
    assert k.max_active_blocks_per_cu(64) == 32
    assert k.max_active_blocks_per_cu(128) == 16  # two waves each: 32 wave slots / 2
    nv = sim(arch="sm_90")
    k = nv.load_module(SimKernelSpec("smem", 10, shared_bytes=57 * 1024)).get_kernel("smem")
    # sm_90 reserves 1 KiB per block: 58 KiB per block, 228 KiB // 58 KiB = 3 (not 4)
    assert k.max_active_blocks_per_cu(128) == 3
    pinned = amd.load_module(SimKernelSpec("p", 10, shared_bytes=13000, blocks_per_cu=7))
    assert pinned.get_kernel("p").max_active_blocks_per_cu(256) == 7  # pinning still wins


def test_blocks_of_different_kernels_share_a_cu_by_occupancy():
    dev = sim(compute_units=1)
    mod = dev.load_module(
        SimModuleSpec(
            (
                SimKernelSpec("half", 10, blocks_per_cu=2),
                SimKernelSpec("whole", 5, blocks_per_cu=1),
            )
        )
    )
    a, b, c = dev.create_stream(), dev.create_stream(), dev.create_stream()
    mod.get_kernel("half").launch(a, LaunchConfig(1, 64))
    mod.get_kernel("whole").launch(b, LaunchConfig(1, 64))  # needs the whole CU: waits
    mod.get_kernel("half").launch(c, LaunchConfig(1, 64))  # fits beside the first (backfill)
    dev.synchronize()
    spans = sorted((r.stream, r.start_us, r.end_us) for r in dev.trace.blocks())
    assert spans == [(0, 0.0, 10.0), (1, 10.0, 15.0), (2, 0.0, 10.0)]


def test_host_calls_cost_host_time_and_device_runs_meanwhile():
    dev = open_device("sim", compute_units=2, trace=True)  # the documented defaults
    cfg = dev.config
    assert (cfg.launch_overhead_us, cfg.flag_visibility_us) == (3.7, 6.0)
    be = BE(dev)
    s = dev.create_stream()
    be.bound.launch(s)
    assert dev.now_us == pytest.approx(3.7)  # the launch call itself
    assert not s.query()  # costs query_overhead_us
    assert dev.now_us == pytest.approx(3.7 + 0.5)
    s.synchronize()
    # in the queue at 3.7, blocks from 3.7 + 2 (dispatch), two rounds, host wakes 2 us later
    assert dev.trace.kernels()[0].start_us == pytest.approx(5.7)
    assert dev.trace.kernels()[0].end_us == pytest.approx(25.7)
    assert dev.now_us == pytest.approx(27.7)


def test_advance_run_until_and_next_event():
    dev = sim()
    be = BE(dev)
    s = dev.create_stream()
    be.bound.launch(s)
    assert dev.next_event_us == 10.0 and not dev.idle
    dev.advance(4)
    assert dev.now_us == 4.0 and s.pending_kernels == 1
    dev.run_until(10)
    assert be.slot_value == 2  # first round done at exactly t = 10
    with pytest.raises(ValueError, match="past"):
        dev.run_until(5)
    assert dev.run_until_idle() == 20.0
    assert dev.idle and dev.next_event_us is None and s.pending_ops == 0
    s.close()
    with pytest.raises(GpuError, match="destroyed"):
        be.bound.launch(s)


def test_priorities_order_dispatch_but_never_preempt():
    def run(high_priority: bool) -> tuple[list, list]:
        dev = sim()
        low = dev.create_stream(priority=0)
        high = dev.create_stream(priority=-1 if high_priority else 0)
        mod = dev.load_module(
            SimModuleSpec(
                (SimKernelSpec("L", 10, blocks_per_cu=1), SimKernelSpec("H", 3, blocks_per_cu=1))
            )
        )
        mod.get_kernel("L").launch(low, LaunchConfig(4, 64))
        dev.advance(5)
        mod.get_kernel("H").launch(high, LaunchConfig(2, 64))
        dev.synchronize()
        return timeline(dev, "L"), timeline(dev, "H")

    low, high = run(high_priority=True)
    # running L blocks finish untouched; when they free the CUs, H's blocks go first
    assert low == [
        (0, 0, 0.0, 10.0, "completed"),
        (1, 1, 0.0, 10.0, "completed"),
        (2, 0, 13.0, 23.0, "completed"),
        (3, 1, 13.0, 23.0, "completed"),
    ]
    assert high == [(0, 0, 10.0, 13.0, "completed"), (1, 1, 10.0, 13.0, "completed")]
    # same priority: first come, first dispatched
    low, high = run(high_priority=False)
    assert [r[2] for r in low] == [0.0, 0.0, 10.0, 10.0]
    assert [r[2:4] for r in high] == [(20.0, 23.0), (20.0, 23.0)]


def test_priority_range_and_clamping():
    dev = sim()
    assert dev.stream_priority_range() == (0, -1)
    assert dev.create_stream(priority=-7).priority == -1
    assert dev.create_stream(priority=3).priority == 0
    assert sim(arch="sm_90").stream_priority_range() == (0, -5)
    assert sim(stream_priorities=False).stream_priority_range() == (0, 0)


# ---------------------------------------------------------------------------------------
# REEF's preemption mechanisms


def test_flag_set_before_launch_all_blocks_skip():
    dev = sim(block_skip_us=0.5)
    be = BE(dev)
    dev.memset32(be.flag, 1, 1)
    be.bound.launch(dev.create_stream())
    dev.synchronize()
    assert timeline(dev) == [
        (0, 0, 0.0, 0.5, "skipped"),
        (1, 1, 0.0, 0.5, "skipped"),
        (2, 0, 0.5, 1.0, "skipped"),
        (3, 1, 0.5, 1.0, "skipped"),
    ]
    assert be.slot_value == 0 and be.outputs() == [0, 0, 0, 0]
    assert dev.stats()["blocks"]["skipped"] == 4


def test_flag_raised_mid_kernel_counts_completed_blocks_and_skips_the_rest():
    # the packet write-value (CUDA's): lands flag_visibility_us after reaching the queue head;
    # the AMD blit write-value is tested in test_sim_fidelity.py
    dev = sim(flag_visibility_us=6, block_skip_us=0.5, write_value_model="packet")
    be = BE(dev, blocks=6)
    be_stream, flag_stream = dev.create_stream(), dev.create_stream()
    be.bound.launch(be_stream)
    dev.run_until(12)
    flag_stream.write_value32(be.flag, 1)  # reaches memory at 18
    dev.synchronize()
    assert timeline(dev) == [
        (0, 0, 0.0, 10.0, "completed"),
        (1, 1, 0.0, 10.0, "completed"),
        (2, 0, 10.0, 20.0, "completed"),  # started before the flag landed: no polling
        (3, 1, 10.0, 20.0, "completed"),
        (4, 0, 20.0, 20.5, "skipped"),
        (5, 1, 20.0, 20.5, "skipped"),
    ]
    (w,) = dev.trace.of_kind("write_value32")
    assert (w.start_us, w.end_us, w.outcome) == (12.0, 18.0, "value=1")
    assert be.slot_value == 4  # exact restore point: blocks 0..3 done
    assert be.outputs() == [1, 2, 3, 4, 0, 0]


def test_in_kernel_polling_leaves_running_blocks_at_the_next_poll():
    dev = sim(flag_visibility_us=6, block_skip_us=0.5, write_value_model="packet")
    be = BE(dev, be_kernel(poll_interval_us=4), blocks=6)
    be.bound.launch(dev.create_stream())
    dev.run_until(12)
    dev.create_stream().write_value32(be.flag, 1)  # in memory at 18; polls at 14, 18
    dev.synchronize()
    assert timeline(dev)[2:] == [
        (2, 0, 10.0, 18.0, "polled_out"),
        (3, 1, 10.0, 18.0, "polled_out"),
        (4, 0, 18.0, 18.5, "skipped"),
        (5, 1, 18.0, 18.5, "skipped"),
    ]
    assert be.slot_value == 2 and be.outputs() == [1, 2, 0, 0, 0, 0]


def test_poll_interval_parameter_overrides_and_needs_the_capability():
    spec = SimKernelSpec(
        "be", 10, params=(*BE_PARAMS, "poll:f32:poll_interval_us"), blocks_per_cu=1
    )
    dev = sim()
    k = dev.load_module(spec).get_kernel("be")
    out, flag, slot = dev.alloc(16), dev.alloc(4), dev.alloc(4)
    k.launch(dev.create_stream(), LaunchConfig(2, 64), out, flag, slot, np.float32(2.5))
    dev.run_until(5.1)
    dev.memset32(flag, 1, 1)
    dev.synchronize()
    assert [r.end_us for r in dev.trace.blocks()] == [7.5, 7.5]  # polls at 2.5, 5, 7.5
    off = sim(in_kernel_polling=False)
    k = off.load_module(spec).get_kernel("be")
    args = (off.alloc(16), off.alloc(4), off.alloc(4))
    with pytest.raises(UnsupportedError, match="polling"):
        k.launch(off.create_stream(), LaunchConfig(2, 64), *args, np.float32(2.5))
    k.launch(off.create_stream(), LaunchConfig(2, 64), *args, np.float32(0))  # 0: no polling


def test_host_mapped_flag_is_seen_at_block_start():
    dev = sim()
    be = BE(dev)
    flag = dev.alloc_host_mapped(4)
    be.bound.params.set(1, flag)
    be.bound.launch(dev.create_stream())
    dev.run_until(5)
    flag.host.view("<u4")[0] = 1  # a host store, visible at once in the model
    dev.synchronize()
    assert [r.outcome for r in sorted(dev.trace.blocks(), key=lambda r: r.block)] == [
        "completed",
        "completed",
        "skipped",
        "skipped",
    ]
    assert be.slot_value == 2


def test_wave_kill_stops_running_blocks_and_the_stream_drains():
    dev = sim(ioctl_latency_us=2, block_skip_us=0.5)
    be = BE(dev)
    s = dev.create_stream()
    be.bound.launch(s)
    dev.run_until(3)
    dev.memset32(be.flag, 1, 1)  # REEF raises the flag before killing
    assert dev.kill_running_waves() == 2
    assert dev.now_us == 5.0  # the ioctl's cost; waves die at its end
    dev.synchronize()
    assert timeline(dev) == [
        (0, 0, 0.0, 5.0, "killed"),
        (1, 1, 0.0, 5.0, "killed"),
        (2, 0, 5.0, 5.5, "skipped"),
        (3, 1, 5.0, 5.5, "skipped"),
    ]
    assert be.slot_value == 0 and be.outputs() == [0, 0, 0, 0]  # killed blocks count nothing
    assert s.query() and dev.trace.kernels()[0].end_us == 5.5
    assert dev.stats()["killed_blocks"] == 2


def test_wave_kill_without_flag_lets_remaining_blocks_run():
    dev = sim()
    be = BE(dev)
    be.bound.launch(dev.create_stream())
    dev.run_until(3)
    assert dev.kill_running_waves() == 2
    dev.synchronize()
    assert [r[4] for r in timeline(dev)] == ["killed", "killed", "completed", "completed"]
    assert dev.now_us == 13.0 and be.slot_value == 2 and be.outputs() == [0, 0, 3, 4]


def test_capability_switches_give_every_level():
    assert sim().capabilities.level == PreemptLevel.RUNNING
    no_kill = sim(wave_kill=False)
    assert no_kill.capabilities.level == PreemptLevel.DEVICE_QUEUE
    with pytest.raises(UnsupportedError, match="wave kill"):
        no_kill.kill_running_waves()
    host_only = sim(capabilities=Capabilities())
    assert host_only.capabilities.level == PreemptLevel.HOST_QUEUE
    with pytest.raises(UnsupportedError, match="write-value"):
        host_only.create_stream().write_value32(host_only.alloc(4), 1)
    with pytest.raises(UnsupportedError):
        host_only.alloc_host_mapped(4)
    # one-by-one options win over the capabilities object
    assert sim(capabilities=Capabilities(), wave_kill=True).capabilities.wave_kill
    nv = sim(arch="sm_90")
    assert nv.info.warp_size == 32 and nv.capabilities.level == PreemptLevel.DEVICE_QUEUE


def test_clear_queue_drops_queued_kernels_but_not_the_running_one():
    dev = sim()
    be = BE(dev)
    s = dev.create_stream()
    for _ in range(3):
        be.bound.launch(s)
    e = dev.create_event()
    e.record(s)
    assert s.pending_kernels == 3
    dev.run_until(5)
    assert dev.clear_queue(s) == 2
    assert e.query()  # a dropped record completes, so nobody waits for it forever
    dev.synchronize()
    assert dev.now_us == 20.0 and be.slot_value == 4 and len(dev.trace.kernels()) == 1
    with pytest.raises(UnsupportedError):
        sim(queue_reset=False).clear_queue(dev.create_stream())


# ---------------------------------------------------------------------------------------
# CU masks, events, memory


def test_cu_masks_confine_blocks():
    dev = sim(compute_units=4)
    a = dev.create_stream(cu_mask=[0, 1])
    b = dev.create_stream(cu_mask=[3])
    k = dev.load_module(SimKernelSpec("k", 10, blocks_per_cu=1)).get_kernel("k")
    k.launch(a, LaunchConfig(4, 64))
    k.launch(b, LaunchConfig(2, 64))
    dev.synchronize()
    by_stream = {0: set(), 1: set()}
    for r in dev.trace.blocks():
        by_stream[r.stream].add(r.cu)
    assert by_stream == {0: {0, 1}, 1: {3}}
    assert dev.now_us == 20.0  # CU 2 idles: b's 2 blocks run one after the other on CU 3
    with pytest.raises(ValueError, match="0..3"):
        dev.create_stream(cu_mask=[4])
    with pytest.raises(ValueError, match="distinct"):
        dev.create_stream(cu_mask=[])
    with pytest.raises(UnsupportedError, match="CU masks"):
        sim(arch="sm_90").create_stream(cu_mask=[0])


def test_events_elapsed_on_the_virtual_clock():
    dev = sim()
    be = BE(dev)
    s = dev.create_stream()
    start, end = dev.create_event(), dev.create_event()
    start.record(s)
    be.bound.launch(s)
    end.record(s)
    assert not end.query()
    with pytest.raises(GpuError, match="not ready"):
        start.elapsed_ms(end)
    end.synchronize()
    assert start.elapsed_ms(end) == pytest.approx(0.020)
    assert (start.timestamp_us, end.timestamp_us) == (0.0, 20.0)
    untimed = dev.create_event(timing=False)
    untimed.record(s)
    with pytest.raises(GpuError, match="timing"):
        start.elapsed_ms(untimed)
    with pytest.raises(GpuError, match="never recorded"):
        start.elapsed_ms(dev.create_event())
    assert dev.create_event().query()  # never recorded: complete, as in CUDA


def test_wait_event_orders_streams():
    dev = sim()
    be = BE(dev)
    s1, s2 = dev.create_stream(), dev.create_stream()
    k = dev.load_module(SimKernelSpec("after", 1, blocks_per_cu=1)).get_kernel("after")
    e = dev.create_event()
    be.bound.launch(s1)
    e.record(s1)
    s2.wait_event(e)
    k.launch(s2, LaunchConfig(1, 64))
    dev.synchronize()
    assert dev.trace.kernels("after")[0].start_us == 20.0


def test_copies_and_memset_change_real_bytes():
    dev = sim(copy_latency_us=5, copy_bandwidth_gbps=25)
    buf = dev.alloc(25000)
    src = np.arange(25000 // 4, dtype=np.uint32)
    dev.copy_to_device(buf, src)
    assert dev.now_us == pytest.approx(6.0)  # 5 us + 25000 B at 25 GB/s
    back = np.zeros_like(src)
    dev.copy_to_host(back, buf)
    assert np.array_equal(back, src)
    dev.memset32(buf.offset(8), 0xDEADBEEF, 3)
    dev.copy_to_host(back, buf)
    assert list(back[:6]) == [0, 1, 0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF, 5]
    dev.copy_to_device(DevicePtr(buf.ptr + 4), b"\x07\x00\x00\x00")
    assert dev.peek_u32(DevicePtr(buf.ptr + 4)) == 7
    with pytest.raises(ValueError, match="copy of 8 bytes into/from a buffer of 4 bytes"):
        dev.copy_to_device(dev.alloc(4), np.zeros(2, dtype=np.uint32))
    with pytest.raises(GpuError, match="runs past the end"):
        dev.memset32(DevicePtr(buf.ptr + 24996), 0, 2)
    with pytest.raises(GpuError, match="not inside any live allocation"):
        dev.peek_u32(DevicePtr(0x1234))
    small = dev.alloc(4)
    small.close()
    with pytest.raises(GpuError, match="live allocation"):
        dev.memset32(small, 1, 1)
    with pytest.raises(GpuError, match="out of memory"):
        sim(memory_bytes=1024).alloc(2048)


def test_stream_ordered_copy_sees_the_kernels_output():
    dev = sim(copy_latency_us=1)
    be = BE(dev)
    s = dev.create_stream()
    host = np.zeros(4, dtype=np.uint32)
    be.bound.launch(s)
    dev.copy_to_host(host, be.out, stream=s)
    assert list(host) == [0, 0, 0, 0]  # not yet: the copy runs after the kernel
    s.synchronize()
    assert list(host) == [1, 2, 3, 4]
    (c,) = dev.trace.of_kind("copy")
    assert c.start_us == 20.0 and c.end_us == 21.001  # 1 us + 16 B at 25 GB/s, in whole ns


# ---------------------------------------------------------------------------------------
# arguments


def test_arguments_are_decoded_from_the_packed_param_block():
    dev = sim()
    be = BE(dev)
    other_slot = dev.alloc(4)
    s = dev.create_stream()
    be.bound.launch(s)
    be.bound.params.set(2, other_slot)  # repoint the completion slot in place
    be.bound.launch(s)
    dev.synchronize()
    assert be.slot_value == 4 and dev.peek_u32(other_slot) == 4


def test_scalar_and_pointer_arguments_follow_the_c_abi():
    def effect(ctx: SimBlockContext) -> None:
        ctx.memory.write(int(ctx.arg("out")), np.array([ctx.arg("n")], dtype="<i4"))
        assert isinstance(ctx.arg("scale"), float) and ctx.simulated

    spec = SimKernelSpec(
        "k", 1, params=("n:i32", "out:ptr", "scale:f64"), blocks_per_cu=1, on_block=effect
    )
    dev = sim()
    out = dev.alloc(4)
    dev.load_module(spec).get_kernel("k").launch(
        dev.create_stream(), LaunchConfig(1, 1), np.int32(-42), out, np.float64(0.5)
    )
    dev.synchronize()
    assert int(np.frombuffer(dev.peek(out, 4), dtype="<i4")[0]) == -42


def test_a_wrong_packing_fails_at_launch():
    dev = sim()
    be = BE(dev)
    # scribble over the flag pointer inside the packed bytes, as a layout bug would
    ctypes.memmove(be.bound.params.buffer + be.bound.params.offsets[1], b"\x01" * 8, 8)
    with pytest.raises(GpuError, match="flag = 0x101010101010101 is not a live"):
        be.bound.launch(dev.create_stream())


def test_wrong_arguments_error_clearly():
    dev = sim()
    k = dev.load_module(be_kernel()).get_kernel("be")
    out = dev.alloc(16)
    with pytest.raises(TypeError, match=r"takes 3 argument\(s\) \(out, flag, slot\), got 2"):
        k.bind(LaunchConfig(1, 64), [out, out])
    ik = dev.load_module(SimKernelSpec("ik", 1, params=("n:i32",))).get_kernel("ik")
    with pytest.raises(TypeError, match=r"argument 0 \(n\) is i32 \(4 bytes\), got a 8-byte"):
        ik.bind(LaunchConfig(1, 64), [np.int64(1)])
    with pytest.raises(TypeError, match="numpy scalar"):
        ik.bind(LaunchConfig(1, 64), [1])
    with pytest.raises(UnsupportedError, match="threads per block"):
        k.bind(LaunchConfig(1, 2048), [out, out, out])
    with pytest.raises(GpuError, match="no kernel 'nope'"):
        dev.load_module(be_kernel()).get_kernel("nope")


# ---------------------------------------------------------------------------------------
# modules, profiles, determinism


def test_module_json_round_trip_and_real_code_objects_rejected():
    spec = SimModuleSpec((be_kernel(poll_interval_us=3),), name="m")
    image = spec.to_bytes()
    d = json.loads(image)
    assert d["simulated"] is True and d["kernels"][0]["on_block_dropped"] is True
    back = SimModuleSpec.from_image(image)
    assert back.kernel("be").params == spec.kernel("be").params
    assert back.kernel("be").poll_interval_us == 3 and back.kernel("be").on_block is None
    dev = sim()
    assert dev.load_module(image).get_kernel("be").spec == spec.kernel("be")
    with pytest.raises(CodeObjectError, match="ELF"):
        dev.load_module(b"\x7fELF\x02\x01\x01")
    with pytest.raises(CodeObjectError, match="not JSON"):
        dev.load_module(b"garbage")
    with pytest.raises(CodeObjectError, match="format"):
        dev.load_module(b'{"kernels": []}')
    with pytest.raises(ValueError, match="polling needs a preempt_flag"):
        SimKernelSpec("p", 1, poll_interval_us=2)
    with pytest.raises(ValueError, match="must be a pointer"):
        SimParam("f", "i32", "preempt_flag")


def test_module_from_profile_replays_measured_durations():
    profile = {
        "device": {"name": "NVIDIA H100 80GB HBM3", "compute_units": 4},
        "kernels": [
            {"name": "conv", "duration_us": 30.0, "grid": [12], "block": [256], "num_args": 2},
            {"name": "relu", "duration_us": 2.0, "grid": [4], "block": [64], "num_args": 1},
            {"name": "relu", "duration_us": 4.0, "grid": [4], "block": [64], "num_args": 1},
        ],
    }
    mod = SimModuleSpec.from_profile(json.dumps(profile), be_variant=True)
    conv = mod.kernel("conv")
    assert conv.block_time_us == 10.0  # 12 blocks on 4 CUs: 3 rounds
    assert mod.kernel("relu").block_time_us == 3.0  # two calls averaged, 1 round
    assert [p.role for p in conv.params] == [None, None, "preempt_flag", "completion_slot"]
    dev = sim(compute_units=4)
    k = dev.load_module(mod).get_kernel("conv")
    bufs = [dev.alloc(4) for _ in range(4)]
    k.launch(dev.create_stream(), LaunchConfig(12, 256), *bufs)
    dev.synchronize()
    assert dev.now_us == 30.0 and dev.peek_u32(bufs[3]) == 12
    with pytest.raises(ValueError, match="compute_units"):
        SimModuleSpec.from_profile({"kernels": profile["kernels"]})
    # what `reef profile` writes: us_median instead of duration_us
    reef = {"kernels": [{"name": "conv", "us_median": 30.0, "grid": [12, 1, 1],
                         "block": [256, 1, 1]}]}  # fmt: skip
    assert SimModuleSpec.from_profile(reef, compute_units=4).kernel("conv").block_time_us == 10.0
    with pytest.raises(ValueError, match="neither duration_us nor us_median"):
        SimModuleSpec.from_profile({"kernels": [{"name": "x", "grid": [1]}]}, compute_units=4)


def scenario(**kw) -> dict:
    dev = sim(compute_units=3, flag_visibility_us=6, block_skip_us=0.5, **kw)
    be = BE(dev, be_kernel(poll_interval_us=2.5), blocks=20)
    rt = dev.load_module(SimKernelSpec("rt", 4, blocks_per_cu=2)).get_kernel("rt")
    be_s, rt_s, flag_s = dev.create_stream(0), dev.create_stream(-1), dev.create_stream(-1)
    for _ in range(3):
        be.bound.launch(be_s)
    dev.advance(17)
    flag_s.write_value32(be.flag, 1)
    flag_s.synchronize()
    dev.kill_running_waves()
    rt.launch(rt_s, LaunchConfig(5, 128))
    rt_s.synchronize()
    dev.memset32(be.flag, 0, 1)
    be.bound.launch(be_s)
    dev.synchronize()
    return dev.trace.as_dict()


def test_same_inputs_same_timeline():
    assert scenario() == scenario()
    assert scenario(block_time_jitter=0.2, seed=1) == scenario(block_time_jitter=0.2, seed=1)
    assert scenario(block_time_jitter=0.2, seed=1) != scenario(block_time_jitter=0.2, seed=2)


# ---------------------------------------------------------------------------------------
# it says it is a model, everywhere


def test_every_output_says_simulated():
    report = probe("sim")
    assert report.available and report.backend == "sim"
    assert "simulated" in report.reason and report.versions["simulated"] == "true"
    assert json.loads(json.dumps(report.as_dict()))["devices"][0]["extra"]["simulated"] is True
    dev = sim()
    info = dev.info
    assert info.name == "REEF-SIM model of gfx90a (simulated)"
    assert info.backend == "sim" and info.vendor.value == "sim" and info.extra["simulated"]
    assert "simulated" in info.driver_version and info.extra["config"]["simulated"] is True
    be = BE(dev)
    s = dev.create_stream()
    e = dev.create_event()
    be.bound.launch(s)
    e.record(s)
    dev.synchronize()
    module = dev.load_module(be_kernel())
    for obj in (dev, s, e, be.out, dev.alloc_host_mapped(4), module, be.kernel, dev.trace):
        assert "simulated" in repr(obj), obj
    trace = dev.trace.as_dict()
    assert trace["simulated"] is True and all(r["simulated"] for r in trace["records"])
    assert json.loads(dev.trace.to_json())["simulated"] is True
    assert dev.stats()["simulated"] is True
    assert json.loads(module.spec.to_bytes())["simulated"] is True


def test_open_device_through_the_interface():
    from reef_rocm.gpu import open_device as gpu_open

    dev = gpu_open("sim", arch="gfx906", compute_units=6)
    assert isinstance(dev, SimDevice) and dev.info.compute_units == 6
    assert dev.info.arch == "gfx906" and dev.info.ordinal == 0
    assert gpu_open("sim", 1).info.ordinal == 1
    with pytest.raises(TypeError, match="unknown option"):
        gpu_open("sim", warp_drive=True)
    with pytest.raises(ValueError, match="unknown arch"):
        gpu_open("sim", arch="gfx1100")
    dev.close()
    with pytest.raises(GpuError, match="closed"):
        dev.create_stream()


def test_stream_memset_is_ordered_in_its_stream():
    """memset32(stream=) is a stream op: it lands after the kernel before it, not at the call."""
    dev = sim()
    buf = dev.alloc(16)
    k = dev.load_module(SimKernelSpec("slow", block_time_us=50)).get_kernel("slow")
    s = dev.create_stream()
    k.bind(LaunchConfig(1, 64), []).launch(s)
    dev.memset32(buf, 9, 4, stream=s)
    assert dev.peek_u32(buf) == 0  # queued behind the 50 us kernel
    s.synchronize()
    assert [dev.peek_u32(buf.offset(4 * i)) for i in range(4)] == [9, 9, 9, 9]
