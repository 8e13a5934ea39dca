"""Chrome-trace (Trace Event Format) recording of what the scheduler did.

``sched.trace.write(path)`` writes JSON that chrome://tracing and Perfetto open: one process
per scheduler, one track per client (requests as spans), a "preemption" track (flag raised to
RT start, BE drained) and instants (flag raise/clear, kill, queue reset). Times are the
scheduler clock in microseconds (virtual on the sim, marked so in ``otherData``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ChromeTrace:
    def __init__(self, enabled: bool, meta: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.meta = dict(meta or {})
        self.events: list[dict[str, Any]] = []
        self._tids: dict[str, int] = {}

    def _tid(self, track: str) -> int:
        tid = self._tids.get(track)
        if tid is None:
            tid = self._tids[track] = len(self._tids) + 1
            self.events.append(
                {"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": track}}
            )
        return tid

    def span(self, track: str, name: str, start_us: float, end_us: float, **args: Any) -> None:
        if not self.enabled:
            return
        self.events.append({
            "ph": "X", "name": name, "cat": track, "pid": 1, "tid": self._tid(track),
            "ts": start_us, "dur": max(0.0, end_us - start_us), "args": args,
        })  # fmt: skip

    def instant(self, track: str, name: str, t_us: float, **args: Any) -> None:
        if not self.enabled:
            return
        self.events.append({
            "ph": "i", "s": "t", "name": name, "cat": track, "pid": 1, "tid": self._tid(track),
            "ts": t_us, "args": args,
        })  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "traceEvents": [
                {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "reef scheduler"}},
                *self.events,
            ],
            "displayTimeUnit": "ns",
            "otherData": self.meta,
        }

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.as_dict()) + "\n")
        return p

    def clear(self) -> None:
        self.events.clear()
        self._tids.clear()
