"""priority-streams: as streams, but the RT stream has the most urgent priority (orders
block dispatch only; running BE blocks are never preempted)."""

from __future__ import annotations

from reef_rocm.sched.policy.base import CONTINUE_BE, LAUNCH_RT, START_BE, Policy, View


class PriorityStreams(Policy):
    name = "priority-streams"
    rt_urgent = True
    requires = ("stream_priorities",)

    def decide(self, v: View) -> int:
        return (LAUNCH_RT if v.rt_waiting else 0) | START_BE | CONTINUE_BE


POLICY = PriorityStreams()
