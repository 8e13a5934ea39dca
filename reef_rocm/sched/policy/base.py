"""What a policy sees and what it may ask for. A policy decides; it never touches a device.

The engine fills one :class:`View` in place every iteration (no allocation) and calls
``policy.decide(view)``, which returns a bitwise OR of the action flags below. The engine and
the preemption module (``reef_rocm.sched.preempt``) carry the actions out.
"""

from __future__ import annotations

from dataclasses import dataclass

# action flags (ints, so a decision allocates nothing)
LAUNCH_RT = 1  # hand waiting RT requests to the RT stream
PREEMPT = 2  # preempt BE work with the policy's PreemptPlan
START_BE = 4  # start new BE inferences on every idle BE client
START_ONE_BE = 8  # start at most one BE inference device-wide (the oldest waiting)
CONTINUE_BE = 16  # keep feeding BE inferences already started (up to the device-queue cap)
RESUME_BE = 32  # clear the flag and restore preempted BE inferences


@dataclass(frozen=True)
class PreemptPlan:
    """The mechanisms one preemption uses, each backed by a capability.

    flag: raise the preempt flag (device-queue eviction at block start; stream_write_value).
    poll: BE kernels poll the flag while running (in_kernel_polling).
    queue_reset: drop BE device-queue packets where the device can (queue_reset, reef KFD
        patch); not required - without it the flag evicts the queued packets lazily.
    kill: kill running waves before RT launches (wave_kill, reef KFD patch).
    wait_drain: launch RT only after every BE device queue is empty.
    """

    flag: bool = True
    poll: bool = False
    queue_reset: bool = False
    kill: bool = False
    wait_drain: bool = False

    @property
    def required_capabilities(self) -> tuple[str, ...]:
        need = []
        if self.flag:
            need.append("stream_write_value")
        if self.poll:
            need.append("in_kernel_polling")
        if self.kill:
            need.append("wave_kill")
        return tuple(need)

    @property
    def mechanisms(self) -> tuple[str, ...]:
        names = ["host_queue"]
        for f in ("flag", "poll", "queue_reset", "kill", "wait_drain"):
            if getattr(self, f):
                names.append(f)
        return tuple(names)


class View:
    """The engine's state as a policy sees it; refreshed in place, never reallocated."""

    __slots__ = (
        "rt_waiting",  # RT requests not yet handed to the GPU
        "rt_running",  # RT requests on the GPU
        "be_waiting",  # BE requests not yet started
        "be_active",  # BE inferences started and not finished (incl. preempted ones)
        "be_on_device",  # BE kernels handed to the GPU and not known to be finished
        "preempted",  # the flag is up / BE is held for RT
        "be_drained",  # since the last preemption every BE device queue drained
        "resuming",  # the flag is down, some BE clients still wait to be restored
    )

    def __init__(self) -> None:
        self.rt_waiting = 0
        self.rt_running = 0
        self.be_waiting = 0
        self.be_active = 0
        self.be_on_device = 0
        self.preempted = False
        self.be_drained = True
        self.resuming = False

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


class Policy:
    """Base class. Subclasses set the class attributes and implement ``decide``.

    ``plan``: what a preemption does (None: this policy never preempts). ``rt_urgent``: the RT
    stream gets the most urgent stream priority. ``runs_be``: False for rt-only.
    ``be_variant``: the package variant BE clients run ("preemptible" when the policy raises
    the flag). ``pads``: the seam for dynamic kernel padding (``+dkp``, a later issue): a
    policy that pads would choose BE kernels to fuse into RT launches.
    """

    name: str = ""
    plan: PreemptPlan | None = None
    rt_urgent: bool = True
    runs_be: bool = True
    pads: bool = False
    requires: tuple[str, ...] = ()  # capabilities beyond the plan's

    @property
    def be_variant(self) -> str:
        return "preemptible" if self.plan is not None and self.plan.flag else "plain"

    @property
    def required_capabilities(self) -> tuple[str, ...]:
        need = list(self.requires)
        if self.plan is not None:
            need += [c for c in self.plan.required_capabilities if c not in need]
        return tuple(need)

    def decide(self, v: View) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<policy {self.name}>"
