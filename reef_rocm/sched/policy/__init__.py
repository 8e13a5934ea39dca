"""Scheduling policies, one module each, found by module name.

A policy module defines ``POLICY`` (one :class:`~reef_rocm.sched.policy.base.Policy`) or
``POLICIES`` (name -> policy, for one module with a level parameter, like ``reset``). Adding a
policy is adding one module here; nothing else changes.

    from reef_rocm.sched.policy import available_policies, get_policy
    available_policies(device.capabilities)   # the names this device can run
    get_policy("reset+kill", device.capabilities)   # UnsupportedError without wave_kill
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu.api import Capabilities
from reef_rocm.sched.policy.base import Policy, PreemptPlan, View

__all__ = ["Policy", "PreemptPlan", "View", "all_policies", "available_policies", "get_policy",
           "missing_capabilities"]  # fmt: skip

_NOT_POLICIES = {"base"}


@cache
def all_policies() -> dict[str, Policy]:
    """Every registered policy by name, in module order."""
    out: dict[str, Policy] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_POLICIES or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found = dict(getattr(mod, "POLICIES", {}))
        if hasattr(mod, "POLICY"):
            found[mod.POLICY.name] = mod.POLICY
        if not found:
            raise ImportError(f"policy module {mod.__name__} defines neither POLICY nor POLICIES")
        for name, p in found.items():
            if name in out:
                raise ImportError(f"policy name {name!r} registered twice ({mod.__name__})")
            out[name] = p
    return out


def missing_capabilities(policy: Policy, capabilities: Capabilities | None) -> list[str]:
    if capabilities is None:
        return []
    return [c for c in policy.required_capabilities if not getattr(capabilities, c, False)]


def available_policies(capabilities: Capabilities | None = None) -> list[str]:
    """Names of the policies a device with ``capabilities`` can run (all when None)."""
    return [n for n, p in all_policies().items() if not missing_capabilities(p, capabilities)]


def get_policy(name: str, capabilities: Capabilities | None = None) -> Policy:
    """The policy ``name``; with ``capabilities``, refuse one the device cannot run."""
    policies = all_policies()
    if name not in policies:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(policies)}")
    p = policies[name]
    missing = missing_capabilities(p, capabilities)
    if missing:
        raise UnsupportedError(
            f"policy {name!r} needs device capability {', '.join(missing)}, which this device "
            f"lacks (level {capabilities.level.name}); it can run: "  # type: ignore[union-attr]
            f"{', '.join(available_policies(capabilities))}"
        )
    return p
