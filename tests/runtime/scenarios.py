"""Preemption scenarios driven through ModelInstance, shared by the GPU tests (zoo packages)
and the sim tests (the synthetic package), so the GPU test's logic is exercised offline.

``compare(out, ref, what)`` checks an output against the CPU reference; ``clock_us()`` and
``wait_us(us)`` are the host clock and a busy wait (wall time on a GPU, virtual time on the
sim, where only device calls move the clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reef_rocm.runtime import ModelInstance

Compare = Callable[[np.ndarray, np.ndarray, str], Any]
# 1e6 as float32: far outside any zoo output's scale, and finite, so a (legal) multiply of
# never-written padding by zero stays zero instead of turning NaN
POISON32 = 0x49742400


def poison(inst: ModelInstance, s: Any) -> None:
    """Fill every buffer with 1e6, then reload weights and inputs: a block that restore
    skipped leaves 1e6 (not a previous run's right answer) in its output."""
    inst.device.memset32(inst.arena, POISON32, inst.arena.nbytes // 4, s)
    s.synchronize()
    inst.load_params()
    for i, x in enumerate(inst.package.reference_inputs()):
        inst.set_input(i, x, s)


def waves(inst: ModelInstance, k: int) -> float:
    """Rounds of blocks kernel k needs on this device (1 = every block resident at once)."""
    bound = inst.launches[k]
    per_cu = bound.kernel.max_active_blocks_per_cu(
        bound.config.threads_per_block, bound.config.shared_mem
    )
    return float(inst.block_counts[k]) / max(1, per_cu * inst.device.info.compute_units)


def cut_longest_kernels(
    inst: ModelInstance, compare: Compare, targets: int = 3, cuts: int = 3
) -> dict[str, Any]:
    """Cut each of the ``targets`` kernels with the most waves ``cuts`` times in a row: the
    flag is raised (write_value32 on a side stream) once some of its blocks finished, so
    blocks still to start leave and the slot holds what finished. Each re-launch zeroes the
    slot first (prepare_resume); a count that added up across cuts would read as complete
    (or exceed the block count: CompletionCountError) and restore would skip blocks that
    never ran. Ends at the CPU reference. Returns how many cuts left the kernel partial."""
    dev, n, ref = inst.device, inst.num_kernels, inst.package.reference_outputs()[0]
    s, side = dev.create_stream(), dev.create_stream()
    probe = np.zeros(1, np.uint32)
    poison(inst, s)
    inst.begin(s)
    chosen = sorted(sorted(range(n), key=lambda k: -waves(inst, k))[:targets])
    partial = 0
    done = 0  # kernels 0..done-1 ran completely
    for k in chosen:
        inst.resume(s, done, k)  # everything before the target, complete
        s.synchronize()
        slot = inst.completion_slots.offset(4 * k)
        for _ in range(cuts):
            inst.prepare_resume(s, k)
            s.synchronize()  # the probe below reads on another stream: the reset landed first
            inst.launch(k, s)
            while True:  # until some blocks finished (or the whole kernel did)
                dev.copy_to_host(probe, slot, side)
                side.synchronize()
                if probe[0] > 0 or s.query():
                    break
            side.write_value32(inst.preempt_flag, 1)
            s.synchronize()
            counts = inst.read_slots(s)
            assert 0 < counts[k] <= inst.block_counts[k]
            partial += int(counts[k] < inst.block_counts[k])
            side.write_value32(inst.preempt_flag, 0)
            side.synchronize()
        inst.read_slots_async(s)
        done = inst.first_incomplete()
        assert done in (k, k + 1) and not inst.completed()[k + 1 :].any()
    inst.resume(s, done)
    inst.read_slots_async(s)
    assert inst.first_incomplete() == n
    compare(inst.get_output(0, s), ref, f"{inst.package.name} after cuts of kernels {chosen}")
    s.close()
    side.close()
    return {
        "targets": chosen,
        "cuts": cuts * len(chosen),
        "partial": partial,
        "max_waves": max(waves(inst, k) for k in chosen),
    }


def preempt_whole_inference(
    inst: ModelInstance, compare: Compare, clock_us: Callable[[], float],
    wait_us: Callable[[float], None], points: int = 8,
) -> list[int]:  # fmt: skip
    """Preempt one inference at ``points`` moments (fractions 0.1..0.8 of its run time after
    each resume), resuming from first_incomplete() each time; ends at the CPU reference.
    Returns the resume points."""
    dev, n, ref = inst.device, inst.num_kernels, inst.package.reference_outputs()[0]
    s, side = dev.create_stream(), dev.create_stream()
    t0 = clock_us()
    inst.run(inst.package.reference_inputs(), s)
    total_us = clock_us() - t0
    poison(inst, s)
    inst.begin(s)
    start, starts = 0, []
    for frac in np.linspace(0.1, 0.8, points):
        inst.resume(s, start)
        wait_us(float(frac) * total_us)
        side.write_value32(inst.preempt_flag, 1)
        s.synchronize()
        inst.read_slots_async(s)
        nxt = inst.first_incomplete()
        assert nxt >= start and inst.completed()[:nxt].all()
        start = nxt
        starts.append(start)
        side.write_value32(inst.preempt_flag, 0)
        side.synchronize()
    inst.resume(s, start)
    inst.read_slots_async(s)
    assert inst.first_incomplete() == n
    compare(inst.get_output(0, s), ref, f"{inst.package.name} after {points} preemptions")
    s.close()
    side.close()
    return starts
