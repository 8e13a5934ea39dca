"""Client-side POSIX shared memory: a region this process creates (mode 0600), the server
maps once registered, and whose name is unlinked right after registration, so a client killed
later leaves nothing behind in /dev/shm (the memory goes with the last mapping)."""

from __future__ import annotations

import mmap
import os
import secrets
from pathlib import Path

import numpy as np

SHM_DIR = Path("/dev/shm")  # where Linux's shm_open keeps its objects
ALIGN = 64  # slices start on cache lines


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class SharedRegion:
    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"shared region size must be > 0, got {size}")
        self.name = f"/reef-{os.getpid()}-{secrets.token_hex(8)}"
        self.size = size
        self._path = SHM_DIR / self.name[1:]
        fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            os.ftruncate(fd, size)
            self._mm: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            self.unlink()
            raise
        os.close(fd)
        self.region_id: int | None = None  # set once the server mapped it

    def view(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        assert self._mm is not None, "region closed"
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self._mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    def unlink(self) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.unlink()
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views still alive: the mapping goes with them
