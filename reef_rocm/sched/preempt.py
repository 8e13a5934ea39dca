"""The preemption mechanisms, in one place, composed from the device's Capabilities (never
from the vendor). A policy's PreemptPlan says which to use; ``get_policy`` already refused a
plan whose required capabilities are missing.

Sequence on RT arrival (the engine drops every BE virtual host queue first - it stops handing
kernels over and rewinds at resume, O(1)):

1. ``evict``: raise the one preempt flag with a 32-bit write on the side stream (queued BE
   kernels leave at block start; with poll points, running ones within ~poll_target_us);
   queue_reset: drop the packets still waiting in every BE device queue; wave_kill: wait until
   the flag is visible, then kill running waves (process-wide, so RT launches only after the
   kill returned, and blocks dispatched after it see the flag and leave).
2. (the engine launches RT)
3. ``mark_drained``: behind the evicted work on each BE stream, a timestamp (when the queue
   was empty), an asynchronous copy of the completion slots (off the RT critical path) and an
   event that says both landed.
4. when RT drained, ``clear``: write 0 to the flag on the side stream and record an event;
   ``gate`` makes each BE stream wait for it before its restored kernels, so a resumed kernel
   never sees the old flag.
"""

from __future__ import annotations

from typing import Any

from reef_rocm.sched.policy.base import PreemptPlan


class Preemptor:
    def __init__(self, device: Any, plan: PreemptPlan | None, side_stream: Any) -> None:
        caps = device.capabilities
        self.device = device
        self.plan = plan
        self.side = side_stream
        self.uses_flag = bool(plan and plan.flag)
        self.uses_poll = bool(plan and plan.poll and caps.in_kernel_polling)
        self.uses_reset = bool(plan and plan.queue_reset and caps.queue_reset)
        self.uses_kill = bool(plan and plan.kill and caps.wave_kill)
        self.waits_drain = bool(plan and plan.wait_drain)
        self.flag_up = False
        self.flag = device.alloc(4)
        device.memset32(self.flag, 0, 1, side_stream)
        self.clear_event = device.create_event(timing=False)
        self._cleared_once = False
        side_stream.synchronize()

    @property
    def mechanisms(self) -> tuple[str, ...]:
        m = ["host_queue"]
        for name, on in (("flag", self.uses_flag), ("poll", self.uses_poll),
                         ("queue_reset", self.uses_reset), ("kill", self.uses_kill),
                         ("wait_drain", self.waits_drain)):  # fmt: skip
            if on:
                m.append(name)
        return tuple(m)

    def evict(self, streams: list[Any]) -> tuple[int, int]:
        """Evict the BE work queued on ``streams``; returns (killed, dropped kernels)."""
        dev = self.device
        killed = dropped = 0
        if self.uses_flag:
            self.side.write_value32(self.flag, 1)
            self.flag_up = True
        if self.uses_reset:
            for s in streams:
                dropped += dev.clear_queue(s)
        if self.uses_kill:
            self.side.synchronize()  # flag visible: blocks dispatched after the kill leave
            killed = dev.kill_running_waves()
        return killed, dropped

    def clear(self) -> None:
        """Lower the flag in side-stream order; ``gate`` orders BE streams behind it."""
        if self.flag_up:
            self.side.write_value32(self.flag, 0)
            self.clear_event.record(self.side)
            self._cleared_once = True
            self.flag_up = False

    def gate(self, stream: Any) -> None:
        if self._cleared_once:
            stream.wait_event(self.clear_event)

    def close(self) -> None:
        self.side.synchronize()
        self.clear_event.close()
        self.flag.close()
