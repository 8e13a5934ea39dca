"""ModelInstance on the sim backend and the fake device, with a package written without TVM
(tests/runtime/synthetic.py): exact restore after repeated partial runs, stream-ordered
housekeeping, input checks, no leaked device objects, in-place launch arguments, profiles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu import open_device
from reef_rocm.runtime import CompletionCountError, ModelInstance, load_profile, profile_path

from .fake_device import FakeDevice
from .scenarios import cut_longest_kernels, preempt_whole_inference
from .synthetic import make_input, write_package

BLOCKS, CUS = 100, 32  # 100 blocks on 32 CUs, one block per CU: 4 rounds of 10 us
# every host and device cost zero, so the timeline is exactly the block times
EXACT = dict(
    launch_overhead_us=0, stream_op_overhead_us=0, query_overhead_us=0, sync_latency_us=0,
    dispatch_latency_us=0, flag_visibility_us=0, block_skip_us=0, copy_latency_us=0,
    trace=True, **{"write_value_model": "packet"},
)  # fmt: skip
# The flag is raised from a same-priority side stream into a full GPU: as a CUDA packet it
# lands at once; as AMD's write-value blit it would wait for a free wave slot and lose it to
# the BE kernel (tests/sim/test_sim_fidelity.py), so these CUDA-host scenarios say "packet".


@pytest.fixture
def pkg(tmp_path):
    return write_package(tmp_path / "synthetic-sim", n_kernels=4, blocks=BLOCKS)


@pytest.fixture
def sim():
    return open_device("sim", compute_units=CUS, **EXACT)


def _no_polling(inst) -> None:
    """Running blocks finish (the sim reads the poll parameter as microseconds, 0 = never;
    also the default, said here so the test does not depend on it)."""
    for k in range(inst.num_kernels):
        inst.set_poll_every(k, 0)


def _cut(dev, inst, stream, side, k: int, after_us: float = 5.0) -> None:
    """Launch kernel k alone, raise the flag ``after_us`` into it, wait for it to drain."""
    inst.launch(k, stream)
    dev.advance(after_us)
    side.write_value32(inst.preempt_flag, 1)
    stream.synchronize()
    side.write_value32(inst.preempt_flag, 0)
    side.synchronize()


def test_restore_is_exact_after_repeated_partial_runs(sim, pkg):
    """Kernel 1 is cut three times, 32 of its 100 blocks finishing each time: each re-launch
    zeroes its slot first (prepare_resume), so the slot says 32, never 64/96/128, and the
    inference resumes at kernel 1 until a full run; the output is the CPU reference."""
    x = make_input(pkg)
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        s, side = sim.create_stream(), sim.create_stream()
        _no_polling(inst)
        inst.begin(s)
        inst.set_input(0, x, s)
        inst.launch_range(s, 0, 1)
        s.synchronize()
        for _ in range(3):
            inst.prepare_resume(s, 1)
            _cut(sim, inst, s, side, 1)
            counts = inst.read_slots(s)
            assert list(counts) == [BLOCKS, CUS, 0, 0]
            assert inst.first_incomplete() == 1
        inst.read_slots_async(s).synchronize()
        inst.resume(s, inst.first_incomplete())
        assert list(inst.read_slots(s)) == [BLOCKS] * 4 and inst.first_incomplete() == 4
        np.testing.assert_array_equal(inst.get_output(0, s), pkg.reference(x))
        s.close()
        side.close()


def test_relaunch_without_reset_is_reported(sim, pkg):
    """What prepare_resume prevents: re-launching without zeroing adds 32 per partial run
    (32 -> 64 -> 96 -> 128 of 100 while only the same 32 blocks ever finished). 96 is
    incomplete (== not >=), 128 is reported as double counting instead of 'complete'."""
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        s, side = sim.create_stream(), sim.create_stream()
        _no_polling(inst)
        inst.begin(s)
        seen = []
        for _ in range(3):
            _cut(sim, inst, s, side, 0)
            seen.append(int(inst.read_slots(s)[0]))
            assert inst.first_incomplete() == 0
        assert seen == [32, 64, 96]
        _cut(sim, inst, s, side, 0)
        with pytest.raises(CompletionCountError, match="128 exceeds its 100 blocks"):
            inst.read_slots(s)


def test_poll_interval_edited_in_place_cuts_running_blocks(sim, pkg):
    """set_poll_every edits the bound launch's argument: with polling, the running blocks
    leave at their next poll, nothing of kernel 1 completes, and restore is still exact."""
    x = make_input(pkg, seed=3)
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        s, side = sim.create_stream(), sim.create_stream()
        params = inst.launches[1].params
        addr = params.buffer
        inst.set_poll_every(1, 2)  # the sim reads it as microseconds between polls
        assert params.buffer == addr, "edited in place, not re-packed"
        inst.run([x], s)
        inst.prepare_resume(s, 1)
        _cut(sim, inst, s, side, 1)
        assert list(inst.read_slots(s)) == [BLOCKS, 0, 0, 0]  # 2, 3 zeroed by the resume
        polled = [b for b in sim.trace.blocks("axpb_1") if b.outcome == "polled_out"]
        assert len(polled) == CUS
        inst.resume(s, inst.first_incomplete())
        np.testing.assert_array_equal(inst.get_output(0, s), pkg.reference(x))


def _equal(out, ref, what):
    np.testing.assert_array_equal(out, ref, err_msg=what)


@pytest.mark.parametrize("poll_us", [0, 3])
def test_gpu_preemption_scenarios_on_sim(tmp_path, poll_us):
    """The GPU test's mid-kernel scenarios (tests/runtime/scenarios.py) on the sim, with
    default (non-zero) host and device costs, without and with poll points."""
    pkg = write_package(tmp_path / "synthetic-sim", n_kernels=5, blocks=200)
    dev = open_device("sim", compute_units=CUS, write_value_model="packet")
    with ModelInstance(dev, pkg, variant="preemptible") as inst:
        for k in range(inst.num_kernels):
            inst.set_poll_every(k, poll_us)
        r = cut_longest_kernels(inst, _equal)
        assert r["max_waves"] >= 4 and r["partial"] == r["cuts"] == 9
        starts = preempt_whole_inference(inst, _equal, lambda: dev.now_us, dev.advance)
        assert starts == sorted(starts) and len(set(starts)) > 1  # it made progress between


def test_slot_reset_is_stream_ordered(sim, pkg):
    """A reset queued behind a running kernel lands after it (the slot ends at 0); the same
    memset on the null stream would land at once and the kernel would count on top of it."""
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        s = sim.create_stream()
        _no_polling(inst)
        inst.launch(0, s)
        sim.advance(5)
        inst.prepare_resume(s, 0)  # queued while kernel 0 runs
        s.synchronize()
        assert sim.peek_u32(inst.completion_slots) == 0
        kernel_end = sim.trace.kernels("axpb_0")[-1].end_us
        (reset,) = [r for r in sim.trace.of_kind("copy") if r.name == "memset32"][-1:]
        assert reset.start_us >= kernel_end
        # control: the null-stream memset is not ordered behind the kernel
        inst.launch(0, s)
        sim.advance(5)
        sim.memset32(inst.completion_slots, 0, inst.num_kernels)
        s.synchronize()
        assert sim.peek_u32(inst.completion_slots) == BLOCKS


def test_get_output_waits_for_its_copy(sim, pkg):
    x = make_input(pkg, seed=5)
    with ModelInstance(sim, pkg) as inst:
        s = sim.create_stream()
        inst.begin(s)
        inst.set_input(0, x, s)
        inst.launch_range(s)
        out = inst.get_output(0, s)  # no synchronize before: the read waits for its copy
        np.testing.assert_array_equal(out, pkg.reference(x))
        buf = np.zeros_like(out)
        inst.launch_range(s)
        ev = inst.get_output_async(0, s, buf)
        assert not ev.query()  # queued behind four kernels
        ev.synchronize()
        np.testing.assert_array_equal(buf, out)
        with pytest.raises(ValueError, match="float32"):
            inst.get_output_async(0, s, np.zeros(out.shape, np.float64))


def test_slot_read_is_queued_not_waited(sim, pkg):
    """read_slots_async returns at once (the copy waits in the stream, into pinned memory);
    first_incomplete() then waits for it."""
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        assert inst._slot_pinned is not None  # the sim has host-mapped memory
        s = sim.create_stream()
        inst.begin(s)
        inst.launch_range(s)
        t0 = sim.now_us
        inst.read_slots_async(s)
        assert sim.now_us - t0 < 10 and not inst.slots_ready()  # four kernels of 40 us queued
        assert inst.first_incomplete() == inst.num_kernels and inst.slots_ready()
        assert sim.now_us - t0 >= 4 * 40


def test_slot_reads_must_come_after_resets(sim, pkg):
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        s = sim.create_stream()
        with pytest.raises(RuntimeError, match="read_slots_async"):
            inst.first_incomplete()
        inst.read_slots_async(s)
        inst.prepare_resume(s, 2)
        with pytest.raises(RuntimeError, match="since the last slot reset"):
            inst.completed()
        with pytest.raises(ValueError, match="resume point 5"):
            inst.prepare_resume(s, 5)


# ------------------------------------------------------------------ fake device
@pytest.fixture
def fake_pkg(tmp_path):
    return write_package(tmp_path / "synthetic-cuda", n_kernels=3, blocks=8, target="cuda:sm_90")


def test_set_input_refuses_casts_and_reshapes(fake_pkg):
    dev = FakeDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        x = make_input(fake_pkg)
        ptr, nbytes = inst.buffers[0].ptr, inst.buffers[0].nbytes
        before = dev.read(ptr, nbytes)
        with pytest.raises(ValueError, match=r"input 0 \(x\): expected float32\[32\], got float64"):
            inst.set_input(0, x.astype(np.float64))
        with pytest.raises(ValueError, match=r"expected float32\[32\], got float32\[4, 8\]"):
            inst.set_input(0, x.reshape(4, 8))  # same bytes, wrong shape
        with pytest.raises(ValueError, match="got list"):
            inst.set_input(0, list(x))
        with pytest.raises(ValueError, match="has 1 input"):
            inst.set_input(1, x)
        with pytest.raises(ValueError, match="takes 1 input.*got 2"):
            inst.run([x, x])
        with pytest.raises(ValueError, match="takes 1 input.*got 0"):
            inst.run([])
        assert dev.read(ptr, nbytes) == before and not dev.launched, "nothing uploaded or run"
        inst.set_input(0, x[::-1][::-1])  # a view is fine: exact dtype and shape
        assert dev.read(ptr, nbytes) == x.tobytes()


@pytest.mark.parametrize("host_mapped", [False, True], ids=["pageable", "pinned"])
def test_no_leaks_and_no_null_stream(fake_pkg, host_mapped):
    dev = FakeDevice(host_mapped=host_mapped)
    inst = ModelInstance(dev, fake_pkg, variant="preemptible")
    assert len(dev.live_streams) == 1 and len(dev.live_events) == 1  # housekeeping, slot read
    x = make_input(fake_pkg)
    for _ in range(3):
        inst.run([x])
        inst.profile(repeats=2, warmup=1)
    inst.read_slots()
    assert len(dev.live_streams) == 1, "run()/profile() leave no stream behind"
    assert len(dev.live_events) == 2  # + the output read's event, owned by the instance
    inst.close()
    assert not dev.live_streams and not dev.live_events and not dev.live_buffers()
    assert dev.null_stream_ops == [], "housekeeping never uses the null stream"
    inst.close()  # idempotent: nothing freed twice (the fake asserts)
    with ModelInstance(dev, fake_pkg) as again:
        again.run([x])
    again.close()
    assert not dev.live_streams and not dev.live_events and not dev.live_buffers()


def test_failed_init_releases_everything(fake_pkg):
    dev = FakeDevice()
    dev.fail_on_load = True
    with pytest.raises(RuntimeError, match="load_module failed"):
        ModelInstance(dev, fake_pkg)
    assert dev.mem, "it got as far as allocating"
    assert not dev.live_buffers() and not dev.live_streams and not dev.live_events
    with pytest.raises(UnsupportedError, match="sm_80"):
        ModelInstance(FakeDevice(arch="sm_80"), fake_pkg)


def test_set_reef_param_in_place(fake_pkg):
    dev = FakeDevice()
    with ModelInstance(dev, fake_pkg, variant="preemptible") as inst:
        s = dev.create_stream()
        assert inst.poll_param(1) == "reef_poll_every"
        assert inst.reef_params(1) == ["reef_poll_every"]
        bound = inst.launches[1]
        pos = [a["kind"] for a in inst.kernels[1].args].index("reef_param")
        off = bound.params.offsets[pos]
        ptrs = bound.params.pointer_array

        def poll_value(raw: bytes) -> int:
            return int(np.frombuffer(raw[off : off + 4], np.int32)[0])

        inst.launch(1, s)
        assert poll_value(dev.launched_params[-1]) == 0  # default: no poll point fires
        inst.set_poll_every(1, 7)
        inst.launch(1, s)
        inst.launch(2, s)
        assert poll_value(dev.launched_params[-2]) == 7 and poll_value(dev.launched_params[-1]) == 0
        assert bound.params.pointer_array == ptrs and inst.launches[1] is bound
        with pytest.raises(ValueError, match="no reef_ parameter 'reef_nope'"):
            inst.set_reef_param(1, "reef_nope", 1)
        with pytest.raises(ValueError, match="not a int32"):
            inst.set_reef_param(1, "reef_poll_every", 2**31)
        with pytest.raises(ValueError, match="non-negative"):
            inst.set_poll_every(1, -1)
        s.close()
    with ModelInstance(dev, fake_pkg) as plain:
        assert plain.poll_param(0) is None
        with pytest.raises(UnsupportedError, match="no poll parameter"):
            plain.set_poll_every(0, 4)


def test_profile_stored_beside_package(sim, pkg, tmp_path):
    """``reef profile`` (on the sim, timing only) writes PACKAGE/profiles/<arch>-<variant>.json
    by default, where load_profile finds it."""
    from reef_rocm.cli import main

    arch = open_device("sim").info.arch
    assert load_profile(pkg, arch, "preemptible") is None
    rc = main(["profile", str(pkg.path), "--backend", "sim", "--variant", "preemptible",
               "--repeats", "2"])  # fmt: skip
    assert rc == 0
    path = profile_path(pkg, arch, "preemptible")
    assert path == pkg.path / "profiles" / f"{arch}-preemptible.json" and path.is_file()
    prof = load_profile(pkg.path, arch, "preemptible")
    assert prof == json.loads(path.read_text())
    assert [k["name"] for k in prof["kernels"]] == [k.name for k in pkg.manifest.variant().kernels]
    assert all(k["us_median"] > 0 for k in prof["kernels"]) and prof["arch"] == arch
    assert load_profile(pkg, arch, "plain") is None


def test_profile_leaves_valid_slot_counts(sim, pkg):
    """profile() launches every kernel many times; each timed run starts from zeroed slots,
    so afterwards the counts are one run's, not a sum past the block count."""
    with ModelInstance(sim, pkg, variant="preemptible") as inst:
        prof = inst.profile(repeats=3, warmup=1)
        assert len(prof["kernels"]) == inst.num_kernels
        assert list(inst.read_slots()) == [BLOCKS] * inst.num_kernels
