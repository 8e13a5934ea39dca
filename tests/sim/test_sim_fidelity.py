"""Sim fidelity (issue 9): the model must not let a scheduler pass where hardware would not.
Each test here fails on a sim without the behaviour it names."""

from __future__ import annotations

import numpy as np
import pytest
from exact_sim import BE_PARAMS, exact_sim

from reef_rocm.gpu import LaunchConfig, open_device
from reef_rocm.gpu.sim import SimDevice, SimKernelSpec


# Every host and device cost zero, so timelines are exactly the block times.
def sim(**kw) -> SimDevice:
    return exact_sim(8, **kw)


def one_block(dev: SimDevice, us: float = 10, name: str = "k"):
    k = dev.load_module(SimKernelSpec(name, us, params=["out"], blocks_per_cu=1)).get_kernel(name)
    return k.bind(LaunchConfig(1, 64), [dev.alloc(64)])


def starts(dev: SimDevice) -> dict[int, float]:
    """Stream id -> start of its first block."""
    out: dict[int, float] = {}
    for r in sorted(dev.trace.blocks(), key=lambda r: r.start_us):
        out.setdefault(r.stream, r.start_us)
    return out


# ---------------------------------------------------------------------------------------
# (c) hardware queues


def test_streams_beyond_the_hw_queue_count_share_a_queue_in_order():
    dev = sim()  # gfx90a: 4 hardware queues (GPU_MAX_HW_QUEUES)
    streams = [dev.create_stream() for _ in range(5)]
    launch = one_block(dev)
    for s in streams:
        launch.launch(s)
    dev.synchronize()
    assert [s.hw_queue for s in streams] == [0, 1, 2, 3, 0]
    # stream 4 is on stream 0's hardware queue: it waits although 3 CUs are idle
    assert starts(dev) == {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 10.0}
    wide = sim(hw_queues=8)
    launch = one_block(wide)
    for s in [wide.create_stream() for _ in range(5)]:
        launch.launch(s)
    wide.synchronize()
    assert set(starts(wide).values()) == {0.0}


def test_nvidia_default_is_eight_connections_and_priorities_do_not_share():
    dev = sim(arch="sm_90", compute_units=16)
    streams = [dev.create_stream() for _ in range(9)]
    urgent = dev.create_stream(priority=-5)  # its own pool: not behind stream 0
    launch = one_block(dev)
    for s in [*streams, urgent]:
        launch.launch(s)
    dev.synchronize()
    st = starts(dev)
    assert st[8] == 10.0 and st[9] == 0.0
    assert all(st[i] == 0.0 for i in range(8))


def test_head_of_line_blocking_behind_a_wait_on_a_shared_queue():
    dev = sim(hw_queues=1)
    a, b = dev.create_stream(), dev.create_stream()  # one hardware queue
    other = dev.create_stream(priority=-1)  # another pool, another queue
    long, short = one_block(dev, 50, "long"), one_block(dev, 5, "short")
    e = dev.create_event()
    long.launch(other)
    e.record(other)
    a.wait_event(e)  # a waits for the long kernel ...
    short.launch(b)  # ... and b, behind it on the same hardware queue, waits too
    dev.synchronize()
    assert dev.trace.blocks("short")[0].start_us == 50.0


def test_queue_reset_acts_on_the_hardware_queue():
    dev = sim(hw_queues=1)
    a, b = dev.create_stream(), dev.create_stream()
    launch = one_block(dev)
    for s in (a, b, a, b):
        launch.launch(s)
    dev.run_until(1)
    assert dev.clear_queue(a) == 3  # b's queued kernels share the queue: dropped too
    assert (a.pending_kernels, b.pending_kernels) == (1, 0)
    dev.synchronize()
    assert len(dev.trace.kernels()) == 1


# ---------------------------------------------------------------------------------------
# (d) the null stream


def flag_kernel(dev: SimDevice, us: float = 10):
    spec = SimKernelSpec("be", us, params=BE_PARAMS, blocks_per_cu=1)
    k = dev.load_module(spec).get_kernel("be")
    out, flag, slot = dev.alloc(64), dev.alloc(4), dev.alloc(4)
    return k.bind(LaunchConfig(1, 64), [out, flag, slot]), flag, slot


def test_cuda_sync_memset_is_not_ordered_with_a_non_blocking_stream():
    for arch, skipped in (("sm_90", False), ("gfx90a", True)):
        dev = sim(arch=arch, copy_latency_us=5)
        launch, flag, _ = flag_kernel(dev)
        s = dev.create_stream()
        dev.memset32(flag, 1, 1)  # meant to evict the kernel launched next
        launch.launch(s)
        dev.synchronize()
        outcome = dev.trace.blocks("be")[0].outcome
        # CUDA: the memset returns before it lands and the stream does not wait for it, so
        # the kernel reads the old flag and runs; HIP: hipMemsetD32 returns once done
        assert (outcome == "skipped") is skipped, arch
        assert dev.peek_u32(flag) == 1


def test_null_stream_calls_wait_for_cu_masked_streams_on_amd():
    dev = sim(copy_latency_us=5)
    masked = dev.create_stream(cu_mask=[0, 1])  # hipExtStreamCreateWithCUMask: blocking
    plain = dev.create_stream()
    buf = dev.alloc(64)
    one_block(dev, 50, "be_long").launch(masked)
    one_block(dev, 80, "other").launch(plain)
    dev.memset32(buf, 3, 4)
    # behind the CU-masked stream's 50 us kernel, not the non-blocking stream's 80 us one
    assert dev.now_us == pytest.approx(55.0, abs=0.01)
    out = np.zeros(4, np.uint32)
    dev.copy_to_host(out, buf)
    assert dev.now_us == pytest.approx(60.0, abs=0.02) and out.tolist() == [3, 3, 3, 3]
    waits = [r for r in dev.trace.of_kind("wait_event") if r.stream == -1]
    assert [w.name for w in waits] == ["legacy sync stream 0"]


def test_null_stream_is_in_order_on_cuda():
    dev = sim(arch="sm_90", copy_latency_us=5)
    buf = dev.alloc(16)
    dev.memset32(buf, 9, 4)  # asynchronous to the host ...
    assert dev.now_us == 0.0 and dev.peek_u32(buf) == 0
    out = np.zeros(4, np.uint32)
    dev.copy_to_host(out, buf)  # ... but the synchronous copy queues behind it
    assert out.tolist() == [9] * 4 and dev.now_us == pytest.approx(10.0, abs=0.01)


# ---------------------------------------------------------------------------------------
# (a) per-architecture write-value


def be_flag_run(arch: str, flag_priority: int) -> tuple[list[str], float, int]:
    """6 BE blocks (10 us, one per CU) on 2 CUs; the flag is raised at t=12 on a side stream.
    Returns block outcomes, when the value landed and the completion count."""
    dev = sim(arch=arch, compute_units=2, flag_visibility_us=6, blit_time_us=1)
    launch = dev.load_module(
        SimKernelSpec("be", 10, params=BE_PARAMS, blocks_per_cu=1)
    ).get_kernel("be")
    flag, slot = dev.alloc(4), dev.alloc(4)
    be, side = dev.create_stream(), dev.create_stream(priority=flag_priority)
    launch.bind(LaunchConfig(6, 64), [dev.alloc(64), flag, slot]).launch(be)
    dev.run_until(12)
    side.write_value32(flag, 1)
    dev.synchronize()
    outcomes = [r.outcome for r in sorted(dev.trace.blocks("be"), key=lambda r: r.block)]
    (w,) = dev.trace.of_kind("write_value32")
    return outcomes, w.end_us, dev.peek_u32(slot)


def test_amd_write_value_is_a_blit_that_waits_for_a_free_wave_slot():
    done4 = ["completed"] * 4
    # sm_90: a packet, visible 6 us after it reaches the queue head
    assert be_flag_run("sm_90", 0) == (done4 + ["skipped"] * 2, 18.0, 4)
    # gfx90a, same priority: the GPU is full of BE blocks; at t=20 the BE kernel (activated
    # first) takes the freed room again, so the blit runs only at t=30 - nothing is evicted
    assert be_flag_run("gfx90a", 0) == (["completed"] * 6, 31.0, 6)
    # gfx90a, urgent flag stream: the blit gets the first free slot (t=20), lands at 21
    assert be_flag_run("gfx90a", -1) == (["completed"] * 5 + ["skipped"], 21.0, 5)


def test_blit_on_an_idle_gpu_and_its_trace():
    dev = sim(dispatch_latency_us=2, blit_time_us=1)
    flag = dev.alloc(4)
    dev.create_stream().write_value32(flag, 7)
    dev.synchronize()
    assert dev.peek_u32(flag) == 7
    (w,) = dev.trace.of_kind("write_value32")
    assert (w.start_us, w.end_us) == (0.0, 3.0)
    (b,) = dev.trace.of_kind("blit")
    assert (b.start_us, b.end_us) == (2.0, 3.0)
    assert dev.trace.kernels() == [] and dev.stats()["kernels_finished"] == 0


# ---------------------------------------------------------------------------------------
# (b) partial writes of blocks that leave early or are killed


def preempted_rerun(tmp_path, skip_partial: bool, **sim_kw) -> tuple[np.ndarray, np.ndarray]:
    """Run a 3-kernel package once, then again with the same input, preempted by polling in the
    middle of kernel 1, and resume at the first incomplete kernel (or one past it)."""
    from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package
    from reef_rocm.package import ModelPackage
    from reef_rocm.runtime.executor import ModelInstance

    plans = [
        SimKernelPlan("k0", grid=4, block_time_us=10, blocks_per_cu=1),
        SimKernelPlan("k1", grid=8, block_time_us=20, blocks_per_cu=1, loop_trips=10, poll_every=2),
        SimKernelPlan("k2", grid=4, block_time_us=5, blocks_per_cu=1),
    ]
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
    build_sim_package(path, "p", plans, elements=64)
    pkg = ModelPackage.load(path)
    x, ref = pkg.reference_inputs()[0], pkg.reference_outputs()[0]
    dev = open_device("sim", compute_units=4, trace=True, **sim_kw)
    with ModelInstance(dev, path, variant="preemptible") as inst:
        np.testing.assert_array_equal(inst.run([x])[0], ref)  # buffers now hold good values
        dev.trace.clear()
        s = dev.create_stream()
        inst.begin(s)
        inst.set_input(0, x, s)
        inst.launch_range(s)
        while not any(b.name == "k1" for b in dev.trace.blocks()):
            dev.advance(0.5)  # the first round of k1 ended; the second is running
        dev.advance(5)
        dev.memset32(inst.preempt_flag, 1, 1)
        s.synchronize()
        assert {b.outcome for b in dev.trace.blocks("k1")} >= {"completed", "polled_out"}
        inst.read_slots(s)
        start = inst.first_incomplete()
        assert start == 1
        dev.memset32(inst.preempt_flag, 0, 1)
        inst.resume(s, start + 1 if skip_partial else start)
        return inst.get_output(0, s), ref


def test_resume_that_skips_a_partly_run_kernel_gives_wrong_output(tmp_path):
    out, ref = preempted_rerun(tmp_path, skip_partial=False)
    np.testing.assert_array_equal(out, ref)
    out, ref = preempted_rerun(tmp_path, skip_partial=True)
    # the polled-out blocks' slices of k1's output are garbage, so k2 computes garbage; with
    # no partial writes the previous inference's values would hide the bug
    assert not np.array_equal(out, ref)
    out, ref = preempted_rerun(tmp_path, skip_partial=True, poison_partial_writes=False)
    np.testing.assert_array_equal(out, ref)  # what a sim without partial writes would say


def test_killed_blocks_leave_a_deterministic_pattern_in_their_slice():
    dev = sim(compute_units=2)
    spec = SimKernelSpec(
        "acc", 10, params=["src", "dst"], blocks_per_cu=1,
        effect={"op": "accumulate", "src": "src", "dst": "dst", "n": 8, "scale": 2.0},
    )  # fmt: skip
    k = dev.load_module(spec).get_kernel("acc")
    src, dst = dev.alloc(32), dev.alloc(32)
    dev.copy_to_device(src, np.arange(8, dtype=np.float32))
    dev.copy_to_device(dst, np.ones(8, dtype=np.float32))
    s = dev.create_stream()
    k.bind(LaunchConfig(4, 64), [src, dst]).launch(s)  # 4 blocks of 2 elements, 2 rounds
    dev.run_until(15)
    assert dev.kill_running_waves() == 2
    dev.synchronize()
    words = np.frombuffer(dev.peek(dst, 32), dtype="<u4")
    got = np.frombuffer(dev.peek(dst, 32), dtype=np.float32)
    np.testing.assert_array_equal(got[:4], 1 + 2 * np.arange(4, dtype=np.float32))
    assert words[4:].tolist() == [0xDEADBEEF] * 4


# ---------------------------------------------------------------------------------------
# (e) swappable block dispatcher


def cus_used(dispatcher: str) -> list[int]:
    dev = sim(compute_units=4, dispatcher=dispatcher)
    k = dev.load_module(SimKernelSpec("k", 10, params=["out"], blocks_per_cu=2)).get_kernel("k")
    k.bind(LaunchConfig(4, 64), [dev.alloc(64)]).launch(dev.create_stream())
    dev.synchronize()
    return sorted(r.cu for r in dev.trace.blocks("k"))


def test_dispatcher_is_chosen_by_option():
    assert cus_used("least-loaded") == [0, 1, 2, 3]  # spread (default)
    assert cus_used("packed") == [0, 0, 1, 1]  # two per CU on as few CUs as possible
    with pytest.raises(ValueError, match="unknown dispatcher 'dkp'"):
        sim(dispatcher="dkp")


def test_a_registered_dispatcher_places_blocks_and_is_checked():
    from reef_rocm.errors import GpuError
    from reef_rocm.gpu.sim.dispatch import CAPACITY, DISPATCHERS, register_dispatcher

    class LastCuOnly:
        name = "last-cu"

        def place(self, run, cus, used):
            c = max(cus)
            return [c] * min(run.num_blocks - run.next_block, (CAPACITY - used[c]) // run.units)

    class Overfill(LastCuOnly):
        name = "overfill"

        def place(self, run, cus, used):
            return [max(cus)] * (run.num_blocks - run.next_block)

    register_dispatcher("last-cu", LastCuOnly)
    register_dispatcher("overfill", Overfill)
    try:
        assert cus_used("last-cu") == [3, 3, 3, 3]  # two rounds on CU 3
        with pytest.raises(GpuError, match="overfill.*does not fit"):
            cus_used("overfill")
    finally:
        del DISPATCHERS["last-cu"], DISPATCHERS["overfill"]
