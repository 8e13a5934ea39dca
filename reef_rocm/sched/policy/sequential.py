"""sequential: one inference at a time in arrival order; no preemption, so an RT request
waits behind the BE inference already submitted (REEF's SEQ baseline)."""

from __future__ import annotations

from reef_rocm.sched.policy.base import CONTINUE_BE, LAUNCH_RT, START_ONE_BE, Policy, View


class Sequential(Policy):
    name = "sequential"
    rt_urgent = False

    def decide(self, v: View) -> int:
        if v.be_active:
            return CONTINUE_BE  # the submitted BE inference finishes first
        if v.rt_waiting:
            return LAUNCH_RT if not v.rt_running else 0
        if v.rt_running:
            return 0
        return START_ONE_BE


POLICY = Sequential()
