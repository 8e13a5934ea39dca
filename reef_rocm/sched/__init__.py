"""REEF's scheduler: real-time (RT) and best-effort (BE) inferences on one GPU, reset-based
preemption with exact restore, and every baseline policy (docs/scheduler.md).

    from reef_rocm.sched import Scheduler, SchedOptions, LoadSpec
    with Scheduler(device, SchedOptions(policy="reset+poll")) as sched:
        h = sched.load(package, priority="rt", client="cam0")
        result = sched.submit(h, inputs).result()
"""

from reef_rocm.sched.engine import SchedulerClosed
from reef_rocm.sched.model import ModelHandle
from reef_rocm.sched.options import SchedOptions
from reef_rocm.sched.records import (
    InferenceResult,
    LoadSpec,
    PreemptionRecord,
    RequestRecord,
    RunResult,
    SchedStatus,
    TensorSpec,
)  # fmt: skip
from reef_rocm.sched.scheduler import Scheduler, outputs_match

__all__ = [
    "InferenceResult", "LoadSpec", "ModelHandle", "PreemptionRecord", "RequestRecord",
    "RunResult", "SchedOptions", "SchedStatus", "Scheduler", "SchedulerClosed", "TensorSpec",
    "outputs_match",
]  # fmt: skip
