"""Scheduler options: one small dataclass, one field per CLI flag / gRPC field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedOptions:
    """How a :class:`~reef_rocm.sched.Scheduler` runs.

    ``policy``: a name from ``reef_rocm.sched.policy.available_policies()``.
    ``device_queue_cap_us``: profiled microseconds of BE work a BE client may have handed to
    the GPU at once (the device queue); the rest waits in the client's virtual host queue,
    where dropping it costs nothing. ``device_queue_cap_kernels``: the cap in kernels when a
    model has no profile (REEF's 2). ``poll_target_us``: how soon after the flag a BE kernel
    with poll points should leave (sets each kernel's poll interval). ``trace``: record a
    Chrome trace (``sched.trace``). ``profile_on_load``: measure per-kernel times at load when
    no stored profile exists. ``threaded``: run the engine on a scheduler thread (None: yes on
    real GPUs, no on the sim, where ``run_load`` and ``Future.result()`` drive it in-process).
    ``device_timestamps``: launch a one-thread timestamp kernel ahead of each RT request so
    its start is measured on the device clock. ``dkp_build``: directory of a DKP build
    (``reef_rocm.dkp.build``) of the loaded models, for the ``+dkp`` policies (its
    ``dkp_profile-<arch>.json`` says which RT kernels may be padded). ``dkp_tolerance``: pad
    an RT kernel only where the profile's padded time is within this fraction of its plain
    time (0.02: 2 %). ``rt_graphs``: capture each RT model's kernels
    into one launch graph at load (devices with ``capabilities.graphs``; RT is never
    preempted, so replaying it whole is safe) and launch an RT request with one call.
    """

    policy: str = "reset+poll"
    device_queue_cap_us: float = 100.0
    device_queue_cap_kernels: int = 2
    poll_target_us: float = 10.0
    trace: bool = False
    profile_on_load: bool = True
    threaded: bool | None = None
    device_timestamps: bool = True
    dkp_build: str | None = None
    dkp_tolerance: float = 0.02
    rt_graphs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.policy, str) or not self.policy:
            raise ValueError(f"SchedOptions.policy must be a policy name, got {self.policy!r}")
        if not self.device_queue_cap_us > 0:
            raise ValueError(
                f"SchedOptions.device_queue_cap_us must be > 0, got {self.device_queue_cap_us}"
            )
        if not (
            isinstance(self.device_queue_cap_kernels, int) and self.device_queue_cap_kernels >= 1
        ):
            raise ValueError(
                "SchedOptions.device_queue_cap_kernels must be an int >= 1, got "
                f"{self.device_queue_cap_kernels!r}"
            )
        if not self.dkp_tolerance >= 0:
            raise ValueError(f"SchedOptions.dkp_tolerance must be >= 0, got {self.dkp_tolerance}")
        if not self.poll_target_us > 0:
            raise ValueError(f"SchedOptions.poll_target_us must be > 0, got {self.poll_target_us}")
