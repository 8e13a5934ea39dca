"""``reef doctor``: what this machine offers reef_rocm - packages, GPUs per backend, driver and
runtime versions, the KFD patch, and which preemption mechanisms are usable."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from importlib import metadata
from typing import Any

from reef_rocm import __version__

PACKAGES = ("numpy", "pyelftools", "msgpack", "cuda-bindings", "hip-python", "apache-tvm")


def _package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _kfd_report() -> dict[str, Any]:
    from reef_rocm.rocm import kfd

    status = kfd.kfd_status()
    report = dataclasses.asdict(status)
    report["gpus"] = {str(k): v for k, v in report["gpus"].items()}
    report["describe"] = status.describe()
    return report


def collect() -> dict[str, Any]:
    from reef_rocm.gpu import probe

    backends = []
    for name in ("cuda", "hip"):
        try:
            backends.append(probe(name).as_dict())
        except Exception as e:  # a broken install must not stop the report
            backends.append({"backend": name, "available": False, "reason": repr(e)})
    mechanisms = sorted(
        {cap["level"] for b in backends if b["available"] for cap in b.get("capabilities", [])}
    )
    return {
        "reef_rocm": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _package_versions(),
        "backends": backends,
        "kfd_patch": _kfd_report(),
        "preemption_levels": mechanisms,
        "gpu_found": any(b["available"] for b in backends),
    }


def _print_human(r: dict[str, Any]) -> None:
    print(f"reef_rocm {r['reef_rocm']}  Python {r['python']}  {r['platform']}")
    print("packages:")
    for name, v in r["packages"].items():
        print(f"  {name:14s} {v or 'not installed'}")
    for b in r["backends"]:
        state = "available" if b["available"] else "unavailable"
        print(f"backend {b['backend']}: {state}" + (f" ({b['reason']})" if b["reason"] else ""))
        for k, v in b.get("versions", {}).items():
            print(f"  {k}: {v}")
        for dev, cap in zip(b.get("devices", []), b.get("capabilities", []), strict=False):
            kfd_node = dev.get("kfd_gpu_id")
            print(
                f"  [{dev['ordinal']}] {dev['name']} {dev['arch']} {dev['compute_units']} CUs "
                f"{dev['memory_bytes'] / 2**30:.1f} GiB, driver {dev['driver_version']}"
                + (f", KFD gpu_id {kfd_node}" if kfd_node is not None else "")
            )
            flags = [k for k, v in cap.items() if v is True]
            print(f"      preemption level {cap['level']}: {', '.join(flags) or 'none'}")
    for line in r["kfd_patch"]["describe"]:
        print(line)
    if not r["gpu_found"]:
        print("no GPU found: GPU tests will skip; `--backend sim` runs the simulated GPU")


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_human(report)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="report GPUs, drivers, packages and preemption support")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
