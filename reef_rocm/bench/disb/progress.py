"""Console output of a DISB run: a progress bar (tqdm, when installed and stderr is a terminal)
or one plain line per step; on the sim backend every line says it is simulated."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

SIM_TAG = "[simulated] "


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # the GPU host may lack it: plain lines then
        return None
    return tqdm


class Console:
    def __init__(self, simulated: bool, total: int, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:  # fmt: skip
        self.prefix = SIM_TAG if simulated else ""
        self.stream = stream or sys.stdout
        self.total = total
        self.done = 0
        self._t0 = time.monotonic()
        tqdm = _tqdm()
        use_bar = bar if bar is not None else sys.stderr.isatty()
        self._bar = None
        if tqdm is not None and use_bar and total > 0:
            self._bar = tqdm(total=total, desc=f"{self.prefix}disb", unit="run", leave=False,
                             file=sys.stderr)  # fmt: skip

    def say(self, msg: str = "") -> None:
        """Print lines (each one prefixed on sim), above the bar when there is one."""
        for line in msg.splitlines() or [""]:
            text = self.prefix + line
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def start(self, what: str) -> None:
        if self._bar is not None:
            self._bar.set_description(f"{self.prefix}{what}")
        else:
            self.say(f"[{self.done + 1}/{self.total}] {what} ...")

    def step(self, what: str, seconds: float) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        else:
            elapsed = time.monotonic() - self._t0
            self.say(f"[{self.done}/{self.total}] {what} done in {seconds:.1f} s "
                     f"(elapsed {elapsed:.0f} s)")  # fmt: skip

    def add(self, runs: int) -> None:
        """More runs than planned (a rate-scaled variant decided on the way)."""
        self.total += runs
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
