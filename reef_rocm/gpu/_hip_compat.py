"""What differs between the hip-python release lines, in one place (the seam tests replace).

hip-python is versioned after the ROCm release it was generated from. The lines users
install differ in ways the backend meets (read off the 6.4.4, 7.2.2 and 10.0.0 wheels):

============================  ===============================  ================================
                              6.x / 7.x (package ``hip``)      10.x (package ``rocm.bindings``)
============================  ===============================  ================================
function module               ``hip.hip``                      ``rocm.bindings.hip`` (also as
                                                               ``hip.hip``)
wrapper types                 ``hip._util.types``,             ``rocm.bindings.util.types``,
                              ``hip._hip_helpers``             ``rocm.bindings._hip_helpers``
``kernelParams`` converts     ``Pointer``                      ``ListOfPointer``
through
``hipGetDeviceProperties``    ``(prop, deviceId)`` -> (err,)   ``(deviceId)`` -> (err, prop)
``hipUUID_t.bytes``           C-string read (stops at NUL)     the 16 bytes
============================  ===============================  ================================

Everything else the backend calls has the same Python signature on all three lines. The line
is told from the function module's own package (``hip.hip.__name__``), never from which
packages happen to be importable: a 10.x ``rocm`` namespace can sit next to a 6.4 ``hip``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import BackendUnavailable

#: function-module package -> (release line, types module, helpers module, kernelParams type)
_LINES = {
    "hip": ("6.x/7.x", "hip._util.types", "hip._hip_helpers", "Pointer"),
    "rocm.bindings": ("10.x", "rocm.bindings.util.types", "rocm.bindings._hip_helpers",
                      "ListOfPointer"),
}  # fmt: skip


@dataclass(frozen=True)
class HipBindings:
    """hip-python as the backend uses it; ``hip`` is the function module (``hip.hip``)."""

    hip: Any
    line: str  # "6.x/7.x" or "10.x"
    types: Any  # the module holding Pointer, ListOfPointer, DeviceArray, CStr
    kernel_params_type: Any  # wrapper hipModuleLaunchKernel converts kernelParams through
    launch_extra_type: Any  # HipModuleLaunchKernel_extra
    props_out_param: bool  # hipGetDeviceProperties(prop, id) rather than (id)
    version: str  # "hip-python 6.4.4.555.40"
    hip_version: str  # HIP release the bindings were generated from, "6.4.43484-123eb5128"

    def device_properties(self, ordinal: int) -> tuple[Any, Any]:
        """``(hipError_t, hipDeviceProp_t)`` for device ``ordinal`` in either convention."""
        if self.props_out_param:
            props = self.hip.hipDeviceProp_t()
            return self.hip.hipGetDeviceProperties(props, ordinal)[0], props
        err, props = self.hip.hipGetDeviceProperties(ordinal)
        return err, props

    def with_function_module(self, hip: Any) -> HipBindings:
        """The same bindings with another function module (tests: a recording stand-in)."""
        return dataclasses.replace(self, hip=hip)


def uuid_bytes(uuid: Any) -> bytes:
    """The 16 bytes of a ``hipUUID_t``, read from its memory (6.x/7.x's ``.bytes`` stops at
    the first NUL)."""
    return ctypes.string_at(uuid.as_c_void_p().value, 16)


def load() -> HipBindings:
    """Import hip-python and describe its release line; BackendUnavailable if it is missing
    or laid out in a way this module does not know."""
    try:
        package = importlib.import_module("hip")
        hip = package.hip
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(
            "hip-python is not installed (pip install 'reef_rocm[rocm]'; pick the "
            "hip-python release matching your ROCm, see docs/hip_backend.md)"
        ) from e
    root = hip.__name__.rpartition(".")[0]
    if root not in _LINES:
        raise BackendUnavailable(
            f"hip-python's function module is {hip.__name__!r}: not a release line this "
            "backend knows (6.x/7.x 'hip.hip', 10.x 'rocm.bindings.hip')"
        )
    line, types_name, helpers_name, params_type = _LINES[root]
    try:
        types = importlib.import_module(types_name)
        helpers = importlib.import_module(helpers_name)
        kernel_params = getattr(types, params_type)
        launch_extra = helpers.HipModuleLaunchKernel_extra
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(
            f"hip-python {line} lacks a wrapper type the backend uses: {e}"
        ) from e
    return HipBindings(
        hip=hip,
        line=line,
        types=types,
        kernel_params_type=kernel_params,
        launch_extra_type=launch_extra,
        props_out_param=line != "10.x",
        version=_distribution_version(),
        hip_version=str(getattr(package, "HIP_VERSION_NAME", "")),
    )


def _distribution_version() -> str:
    try:
        from importlib.metadata import version

        return "hip-python " + version("hip-python")
    except Exception:  # metadata missing in odd installs: version is informational only
        return "hip-python (unknown version)"


_loaded: HipBindings | None = None


def bindings() -> HipBindings:
    """The hip-python bindings, loaded on first use (tests set ``_loaded``)."""
    global _loaded
    if _loaded is None:
        _loaded = load()
    return _loaded
