"""streams: every client on its own stream, all of equal priority; the GPU interleaves."""

from __future__ import annotations

from reef_rocm.sched.policy.base import CONTINUE_BE, LAUNCH_RT, START_BE, Policy, View


class Streams(Policy):
    name = "streams"
    rt_urgent = False

    def decide(self, v: View) -> int:
        return (LAUNCH_RT if v.rt_waiting else 0) | START_BE | CONTINUE_BE


POLICY = Streams()
