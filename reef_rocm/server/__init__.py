"""`reef serve`: a GPU inference server over the scheduler (docs/server.md).

gRPC + POSIX shared memory (contract: reef_rocm/proto/reef.proto), one scheduler per GPU,
client sessions that own their models and regions. The client is reef_rocm.client.
Imports grpc only when a server class is used, so ``reef --help`` works without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReefServer", "ServeOptions", "ServerThread"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reef_rocm.server import app

        return getattr(app, name)
    raise AttributeError(name)
