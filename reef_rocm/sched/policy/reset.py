"""reset, reset+poll, reset+kill: REEF's reset-based preemption at three mechanism levels.

On RT arrival: drop every BE virtual host queue, raise the preempt flag (queued BE kernels
leave at block start) and launch RT at once, without waiting for BE to leave.
level "reset" (REEF-N): that alone; running BE kernels finish their running blocks.
level "poll": BE kernels also poll the flag while running (poll interval per kernel from its
profile), so they leave within ~poll_target_us.
level "kill" (REEF on AMD with the KFD patch): BE device queues are reset and running waves
are killed before RT launches (the kill is process-wide); no poll points needed.
``reset+poll+dkp``: reset+poll's decisions, and RT kernels are padded with BE virtual blocks
(dynamic kernel padding: ``pads``; the engine's ``sched.padder.Padder`` does it, from the DKP
build named by ``SchedOptions.dkp_build``; the device must make indirect calls).
One module, registered under four names (see ``POLICIES``).
"""

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

LEVELS = {
    "reset": PreemptPlan(flag=True),
    "poll": PreemptPlan(flag=True, poll=True),
    "kill": PreemptPlan(flag=True, queue_reset=True, kill=True),
}


class Reset(Policy):
    def __init__(self, level: str = "reset", pads: bool = False) -> None:
        if level not in LEVELS:
            raise ValueError(f"reset level {level!r}; choose one of {', '.join(LEVELS)}")
        self.level = level
        self.plan = LEVELS[level]
        self.name = ("reset" if level == "reset" else f"reset+{level}") + ("+dkp" if pads else "")
        self.pads = pads
        # the DKP dispatcher calls kernel bodies through device function pointers
        self.requires = ("indirect_calls",) if pads else ()

    def decide(self, v: View) -> int:
        if v.rt_waiting or v.rt_running:
            a = LAUNCH_RT if v.rt_waiting else 0
            if v.be_active and not v.preempted:
                a |= PREEMPT
            return a
        return START_BE | CONTINUE_BE | (RESUME_BE if v.preempted or v.resuming else 0)


POLICIES = {
    p.name: p for p in (Reset("reset"), Reset("poll"), Reset("kill"), Reset("poll", pads=True))
}
