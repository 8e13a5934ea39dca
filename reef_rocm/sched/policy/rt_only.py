"""rt-only: the RT clients alone on the GPU (the latency baseline); BE work never runs."""

from __future__ import annotations

from reef_rocm.sched.policy.base import LAUNCH_RT, Policy, View


class RtOnly(Policy):
    name = "rt-only"
    runs_be = False

    def decide(self, v: View) -> int:
        return LAUNCH_RT if v.rt_waiting else 0


POLICY = RtOnly()
