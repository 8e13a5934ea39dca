"""wait: wait-based preemption. On RT arrival stop feeding BE and raise the flag (queued BE
kernels leave at block start), then wait until every BE device queue is empty - running
kernels finish - before RT launches."""

from __future__ import annotations

from reef_rocm.sched.policy.base import (
    CONTINUE_BE,
    LAUNCH_RT,
    PREEMPT,
    RESUME_BE,
    START_BE,
    Policy,
    PreemptPlan,
    View,
)  # fmt: skip


class Wait(Policy):
    name = "wait"
    plan = PreemptPlan(flag=True, wait_drain=True)

    def decide(self, v: View) -> int:
        if v.rt_waiting or v.rt_running:
            a = 0
            if v.rt_waiting:
                if v.be_on_device and not v.preempted:
                    a |= PREEMPT
                elif v.be_drained or not v.be_on_device:
                    a |= LAUNCH_RT
            return a
        return START_BE | CONTINUE_BE | (RESUME_BE if v.preempted or v.resuming else 0)


POLICY = Wait()
