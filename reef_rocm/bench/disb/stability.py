"""Do two DISB results agree? (`reef bench compare A.json B.json`): the stability check for the
chosen durations is two runs of the same command agreeing within 5% on the headline metrics."""

from __future__ import annotations

from typing import Any

# (label, getter) of the metrics compared per workload and policy
METRICS = (
    ("RT p99", lambda m: _worst(m["rt"], "p99_us")),
    ("RT mean", lambda m: _worst(m["rt"], "mean_us")),
    ("preemption p99", lambda m: m["preemption"].get("p99_us")),
    ("BE throughput", lambda m: m["be_throughput_per_s"] or None),
    ("overall throughput", lambda m: m["overall_throughput_per_s"] or None),
)


def _worst(d: dict[str, Any], key: str) -> float | None:
    xs = [v.get(key) for v in d.values() if v.get(key) is not None]
    return max(xs) if xs else None


def relative_difference(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude (0 when both are 0)."""
    big = max(abs(a), abs(b))
    return 0.0 if big == 0 else abs(a - b) / big


def compare_documents(
    a: dict[str, Any], b: dict[str, Any], tolerance: float = 0.05
) -> tuple[list[dict[str, Any]], bool]:
    """Rows of (workload, policy, metric, a, b, rel) for every metric both runs have; ok is
    False if any differs by more than ``tolerance``."""
    rows = []
    wb = {r["workload"]["name"]: r for r in b["workloads"]}
    for ra in a["workloads"]:
        name = ra["workload"]["name"]
        rb = wb.get(name)
        if rb is None:
            continue
        for pol, ma in ra["policies"].items():
            mb = rb["policies"].get(pol)
            if mb is None:
                continue
            for label, get in METRICS:
                va, vb = get(ma), get(mb)
                if va is None or vb is None:
                    continue
                rel = relative_difference(float(va), float(vb))
                rows.append({"workload": name, "policy": pol, "metric": label, "a": va,
                             "b": vb, "rel": rel, "ok": rel <= tolerance})  # fmt: skip
    return rows, all(r["ok"] for r in rows) and bool(rows)


def format_comparison(rows: list[dict[str, Any]], tolerance: float, simulated: bool) -> str:
    tag = "[simulated] " if simulated else ""
    out = [f"{tag}{'workload':10s} {'policy':17s} {'metric':19s} {'run 1':>11s} {'run 2':>11s}"
           f" {'diff':>7s}"]  # fmt: skip
    for r in rows:
        mark = "" if r["ok"] else f"  > {tolerance:.0%}"
        out.append(f"{tag}{r['workload']:10s} {r['policy']:17s} {r['metric']:19s} "
                   f"{r['a']:11.1f} {r['b']:11.1f} {r['rel']:7.1%}{mark}")  # fmt: skip
    bad = [r for r in rows if not r["ok"]]
    out.append(
        f"{tag}{len(rows)} values compared, {len(bad)} differ by more than {tolerance:.0%}"
        + (": not stable at these durations" if bad else ": stable")
    )
    return "\n".join(out)
