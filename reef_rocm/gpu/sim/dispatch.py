"""Block placement: which CU each next block of a kernel goes to.

A CU's capacity is ``CAPACITY`` integer units, divisible by every occupancy 1..64, so a block
of a kernel with occupancy k takes exactly ``CAPACITY // k`` and blocks of different kernels
add up without rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_OCCUPANCY = 64
CAPACITY = math.lcm(*range(1, MAX_OCCUPANCY + 1))


class LeastLoadedRoundRobin:
    """Least-loaded CU first, then round robin over the CUs that still have room: the
    spreading a GPU's workgroup dispatcher does for one kernel (default)."""

    name = "least-loaded"

    def place(self, units: int, count: int, cus: Sequence[int], used: Sequence[int]) -> list[int]:
        """CUs for up to ``count`` blocks of ``units`` each, in start order, given the CUs a
        kernel may use and each CU's used units. Blocks that do not fit are left out."""
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
