"""Exception types. Every error a user can cause names the thing that was wrong."""


class ReefError(Exception):
    """Base class for reef_rocm errors."""


class BackendUnavailable(ReefError):
    """A device backend cannot be used here (no GPU, no driver, package missing)."""


class GpuError(ReefError):
    """A driver/runtime call failed. ``call`` is the API function, ``code`` its status."""

    def __init__(self, call: str, code: int, message: str = "") -> None:
        self.call = call
        self.code = code
        super().__init__(f"{call} failed with {code}" + (f": {message}" if message else ""))


class UnsupportedError(ReefError):
    """The request is well formed but this device/backend/target cannot do it."""


class ToolchainError(UnsupportedError):
    """A compiler tool (nvcc, ld.lld, the ROCm device libraries) is missing or failed."""


class CodeObjectError(ReefError):
    """A code object (HSACO, cubin) is corrupt, truncated or of an unknown kind."""


class ModelError(ReefError):
    """Unknown model, unreadable model file, or a model the compiler cannot handle."""


class PackageError(ReefError):
    """A model package is missing files or its manifest is malformed."""
