"""The record of what happened on a simulated device (``trace=True``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reef_rocm.gpu.sim.labels import MODEL_NAME, MODEL_VERSION, SIM_TAG

#: how a block ended
OUTCOMES = ("completed", "skipped", "polled_out", "killed")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One interval on the virtual timeline. ``kind``: block, kernel, write_value32,
    event_record, wait_event, copy, kill, queue_reset. Block ``outcome``: completed, skipped
    (saw the flag at start), polled_out (saw it at a poll point), killed."""

    kind: str
    name: str
    start_us: float
    end_us: float
    stream: int | None = None
    launch: int | None = None  # launch sequence number (tells two launches of a kernel apart)
    cu: int | None = None
    block: int | None = None
    outcome: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["simulated"] = True
        return d


class SimTrace:
    """Everything that happened on a simulated device, in the order it ended."""

    simulated = True

    def __init__(self, device_name: str) -> None:
        self.device = device_name
        self.records: list[TraceRecord] = []

    def blocks(self, kernel: str | None = None, launch: int | None = None) -> list[TraceRecord]:
        return [
            r
            for r in self.records
            if r.kind == "block"
            and (kernel is None or r.name == kernel)
            and (launch is None or r.launch == launch)
        ]

    def kernels(self, name: str | None = None) -> list[TraceRecord]:
        return [r for r in self.records if r.kind == "kernel" and (name is None or r.name == name)]

    def of_kind(self, kind: str) -> list[TraceRecord]:
        return [r for r in self.records if r.kind == kind]

    def clear(self) -> None:
        self.records.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "model": f"{MODEL_NAME} {MODEL_VERSION}",
            "device": self.device,
            "time_unit": "us (virtual)",
            "records": [r.as_dict() for r in self.records],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<SimTrace of {self.device}: {len(self.records)} records {SIM_TAG}>"
