"""What a kernel model's functional effect sees when one of its blocks completes."""

from __future__ import annotations

from dataclasses import dataclass

from reef_rocm.gpu.sim.memory import SimMemory
from reef_rocm.gpu.sim.params import SimParam


@dataclass(frozen=True, slots=True)
class SimBlockContext:
    """One completed block: its index, the launch's decoded arguments and device memory."""

    kernel: str
    block_id: int  # linear block index, x fastest
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    params: tuple[SimParam, ...]
    args: tuple[int | float, ...]  # decoded from the launch's packed argument bytes
    memory: SimMemory
    now_us: float
    simulated: bool = True

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def block_idx(self) -> tuple[int, int, int]:
        gx, gy, _ = self.grid
        b = self.block_id
        return (b % gx, (b // gx) % gy, b // (gx * gy))

    def arg(self, name: str) -> int | float:
        for p, v in zip(self.params, self.args, strict=True):
            if p.name == name:
                return v
        raise KeyError(f"kernel {self.kernel} has no parameter {name!r}")
