"""Client shared-memory regions as the server maps them.

A client creates a POSIX shared-memory object (mode 0600), asks the server to register it and
may then unlink its name (the client in reef_rocm.client does, so a killed client leaves
nothing in /dev/shm: the memory goes when the last mapping does). The server maps it only after
checking that it is a regular object of this user at least as large as the client says, and
hands out numpy views of slices that are bounds-checked against that size.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
from pathlib import Path

import numpy as np

from reef_rocm.errors import ReefError

SHM_DIR = Path("/dev/shm")  # where Linux's shm_open keeps its objects
_NAME = re.compile(r"^/?[A-Za-z0-9][A-Za-z0-9_.\-]{0,200}$")


class ShmError(ReefError):
    """A region that cannot be mapped or a slice outside its region. ``code`` names the gRPC
    status it maps to."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.code = code


class ShmRegion:
    """One mapped client region. ``view`` hands out bounds-checked numpy views."""

    def __init__(self, region_id: int, name: str, size: int) -> None:
        if not _NAME.match(name):
            raise ShmError(
                f"shm name {name!r} is not a plain POSIX shm name (letters, digits, '_.-', "
                "one optional leading '/')"
            )
        if size <= 0:
            raise ShmError(f"shm region {name!r}: size must be > 0, got {size}")
        path = SHM_DIR / name.lstrip("/")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ShmError(f"shm region {name!r} does not exist", "NOT_FOUND") from None
        except OSError as e:
            raise ShmError(f"shm region {name!r} cannot be opened: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ShmError(f"shm region {name!r} is not a shared-memory object")
            if st.st_uid != os.getuid():
                raise ShmError(
                    f"shm region {name!r} belongs to uid {st.st_uid}, not to the server's user",
                    "PERMISSION_DENIED",
                )
            if st.st_size < size:
                raise ShmError(
                    f"shm region {name!r} is {st.st_size} bytes, smaller than the {size} "
                    "bytes registered"
                )
            self._mm: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.id = region_id
        self.name = name
        self.size = size

    def view(self, offset: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A writable view of ``nbytes`` at ``offset`` as ``dtype[shape]``."""
        if self._mm is None:
            raise ShmError(f"shm region {self.id} is unregistered", "NOT_FOUND")
        if offset + nbytes > self.size:
            raise ShmError(
                f"slice [{offset}, {offset + nbytes}) runs past the end of shm region {self.id} "
                f"({self.size} bytes)",
                "OUT_OF_RANGE",
            )
        if offset % dtype.itemsize:
            raise ShmError(
                f"slice offset {offset} in shm region {self.id} is not aligned to {dtype} "
                f"({dtype.itemsize} bytes)"
            )
        count = nbytes // dtype.itemsize
        return np.frombuffer(self._mm, dtype=dtype, count=count, offset=offset).reshape(shape)

    @property
    def mapped(self) -> bool:
        return self._mm is not None

    def close(self) -> bool:
        """Unmap. False while views of it are still alive somewhere (the caller retries; the
        region refuses new views meanwhile)."""
        mm = self._mm
        if mm is None:
            return True
        try:
            mm.close()
        except BufferError:
            self._mm = None
            self._pending = mm  # closed by a later close() once the views are gone
            return False
        self._mm = None
        return True

    def retry_close(self) -> bool:
        mm = getattr(self, "_pending", None)
        if mm is None:
            return True
        try:
            mm.close()
        except BufferError:
            return False
        self._pending = None
        return True

    def __repr__(self) -> str:
        return f"<ShmRegion {self.id} {self.name} {self.size} B{'' if self.mapped else ' closed'}>"
