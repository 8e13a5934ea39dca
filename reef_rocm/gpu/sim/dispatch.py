"""Block placement: which CU each next block of a kernel goes to. Swappable: the engine calls
the dispatcher named by ``SimConfig.dispatcher`` (``DISPATCHERS``; ``register_dispatcher`` adds
one), so DKP-style or other placements can be modelled without touching the engine.

A CU's capacity is ``CAPACITY`` integer units, divisible by every occupancy 1..64, so a block
of a kernel with occupancy k takes exactly ``CAPACITY // k`` and blocks of different kernels
add up without rounding.

The engine offers a dispatcher the CUs whose room changed since the last pass (all CUs when a
kernel became active), one active kernel at a time in (stream priority, activation) order, and
starts the blocks it returns at once. A dispatcher that leaves offered room unused is offered
it again only when that room changes or a kernel becomes active.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reef_rocm.gpu.sim.ops import KernelRun

MAX_OCCUPANCY = 64
CAPACITY = math.lcm(*range(1, MAX_OCCUPANCY + 1))


class BlockDispatcher(Protocol):
    name: str

    def place(self, run: KernelRun, cus: Sequence[int], used: Sequence[int]) -> list[int]:
        """CUs for the next blocks of ``run`` (``run.num_blocks - run.next_block`` are left,
        each takes ``run.units``), in start order, among ``cus`` (already limited to the
        stream's CU mask), given every CU's used units. Blocks must fit
        (``used[c] + k * run.units <= CAPACITY`` for k blocks on c); those that do not fit are
        left out."""
        ...


class LeastLoadedRoundRobin:
    """Least-loaded CU first, then round robin over the CUs that still have room: the
    spreading a GPU's workgroup dispatcher does for one kernel (default)."""

    name = "least-loaded"

    def place(self, run: KernelRun, cus: Sequence[int], used: Sequence[int]) -> list[int]:
        units, count = run.units, run.num_blocks - run.next_block
        cands = sorted((used[c], c, (CAPACITY - used[c]) // units) for c in cus)
        room = {c: r for _, c, r in cands if r > 0}
        order = [c for _, c, r in cands if r > 0]
        out: list[int] = []
        while count and order:
            nxt = []
            for c in order:
                if not count:
                    break
                out.append(c)
                count -= 1
                room[c] -= 1
                if room[c]:
                    nxt.append(c)
            order = nxt
        return out


class PackedFirstFit:
    """Fill the lowest-numbered CU with room before using the next: blocks packed onto as few
    CUs as possible (how a runtime that partitions CUs, e.g. for padding, might place)."""

    name = "packed"

    def place(self, run: KernelRun, cus: Sequence[int], used: Sequence[int]) -> list[int]:
        count = run.num_blocks - run.next_block
        out: list[int] = []
        for c in sorted(cus):
            if count <= 0:
                break
            k = min(count, (CAPACITY - used[c]) // run.units)
            out += [c] * k
            count -= k
        return out


#: name -> factory of a dispatcher
DISPATCHERS: dict[str, Callable[[], BlockDispatcher]] = {
    LeastLoadedRoundRobin.name: LeastLoadedRoundRobin,
    PackedFirstFit.name: PackedFirstFit,
}


def register_dispatcher(name: str, factory: Callable[[], BlockDispatcher]) -> None:
    """Make ``open_device("sim", dispatcher=name)`` use ``factory()``."""
    DISPATCHERS[name] = factory


def make_dispatcher(name: str) -> BlockDispatcher:
    try:
        return DISPATCHERS[name]()
    except KeyError:
        raise ValueError(
            f"sim: unknown dispatcher {name!r}; registered: {', '.join(DISPATCHERS)}"
        ) from None
