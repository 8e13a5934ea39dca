"""The preemptible DKP variant (``make_preemptible_dkp``, packaged as ``dkp_be``): DKP-ready
kernels that check the flag, poll and count per virtual block, so best-effort work
launched through DKP can be preempted."""

from __future__ import annotations

import tvm

from reef_rocm.compiler.transform.dkp import dkp_pass
from reef_rocm.compiler.transform.preemptible import preemptible_pass


def make_preemptible_dkp(mod: tvm.IRModule, poll_interval: int | None = None) -> tvm.IRModule:
    """The preemptible DKP variant: DKP-ready kernels that take the flag, the completion
    slot and (with polls) ``reef_poll_every``; the flag is checked, polled and the slot
    counted per *virtual* block, so BE work launched through DKP can be preempted."""
    return preemptible_dkp_pass(poll_interval)(mod)


def preemptible_dkp_pass(poll_interval: int | None = None) -> tvm.transform.Pass:
    """The two rewrites in the one order that works: preemptible first (flag check, polls
    and count inside each block's body), then DKP (that body per virtual block). The other
    order is refused by the preemptible pass."""
    return tvm.transform.Sequential(
        [preemptible_pass(poll_interval), dkp_pass()], opt_level=0, name="reef.MakePreemptibleDkp"
    )
