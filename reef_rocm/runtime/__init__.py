"""Run compiled model packages kernel by kernel on a reef_rocm.gpu Device (no TVM here)."""

from reef_rocm.runtime.executor import (
    CompletionCountError,
    ModelInstance,
    load_profile,
    profile_path,
    write_profile,
)

__all__ = ["CompletionCountError", "ModelInstance", "load_profile", "profile_path", "write_profile"]
