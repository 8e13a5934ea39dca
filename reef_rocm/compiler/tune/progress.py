"""Progress bars for tuning (tqdm when installed, else a line per step on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Lines:
    def __init__(self, total: int, what: str, enabled: bool) -> None:
        self.total, self.what, self.enabled, self.n, self.post = total, what, enabled, 0, ""

    def set_postfix_str(self, s: str) -> None:
        self.post = s

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.enabled:
            print(f"[{self.what}] {self.n}/{self.total} {self.post}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


@contextmanager
def bar(total: int, what: str, enabled: bool = True) -> Iterator[Any]:
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    b = tqdm(total=total, desc=what, disable=not enabled) if tqdm else _Lines(total, what, enabled)
    try:
        yield b
    finally:
        b.close()
