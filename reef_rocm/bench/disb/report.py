"""The printed DISB table (from a results document, so `reef bench plot` can print it again)."""

from __future__ import annotations

from typing import Any


def _f(v: float | None, fmt: str = "{:.0f}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def _ms(us: float | None) -> str:
    return _f(None if us is None else us / 1e3, "{:.2f}")


def _worst(values: dict[str, Any], key: str) -> float | None:
    xs = [v.get(key) if isinstance(v, dict) else v for v in values.values()]
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


COLUMNS = (
    ("policy", 17, "<"),
    ("RT p50 ms", 9, ">"),
    ("RT p99 ms", 9, ">"),
    ("p99/rt-only", 11, ">"),
    ("preempt p50/p99 us", 18, ">"),
    ("BE inf/s", 9, ">"),
    ("overall inf/s", 13, ">"),
    ("/rt-only", 8, ">"),
    ("/ideal", 6, ">"),
    ("BE kept", 7, ">"),
    ("busy", 5, ">"),
)


def _row(cells: list[str]) -> str:
    return "  ".join(f"{c:{a}{w}}" for c, (_, w, a) in zip(cells, COLUMNS, strict=True))


def policy_row(name: str, m: dict[str, Any]) -> str:
    cmp = m.get("compare", {})
    pre = m["preemption"]
    preempt = (
        "-" if not pre.get("count") else f"{_f(pre['p50_us'])}/{_f(pre['p99_us'])}"
    )  # fmt: skip
    return _row(
        [
            name,
            _ms(_worst(m["rt"], "p50_us")),
            _ms(_worst(m["rt"], "p99_us")),
            _f(_worst(cmp.get("rt_p99_vs_rt_only", {}), "x"), "{:.2f}x"),
            preempt,
            _f(m["be_throughput_per_s"], "{:.1f}"),
            _f(m["overall_throughput_per_s"], "{:.1f}"),
            _f(cmp.get("overall_vs_rt_only"), "{:.2f}x"),
            _f(cmp.get("overall_vs_ideal"), "{:.2f}"),
            _f(cmp.get("be_share_kept"), "{:.2f}"),
            _f(m.get("busy_fraction"), "{:.2f}"),
        ]
    )


def workload_table(res: dict[str, Any]) -> str:
    w = res["workload"]
    refs = res["references"]
    lines = [
        f"DISB {w['name']}: {w['description'] or ', '.join(c['model'] for c in w['clients'])}"
        f" ({w['duration_s']:g} s measured after {w['warmup_s']:g} s warm-up, seed {w['seed']})",
        _row([c for c, _, _ in COLUMNS]),
    ]
    for name, m in res["policies"].items():
        lines.append(policy_row(name, m))
    if res.get("be_alone"):
        lines.append(policy_row(res["be_alone"]["policy"], res["be_alone"]))
    rts = sorted({m for p in res["policies"].values() for m in p["rt"]})
    if len(rts) > 1:  # D, E: one RT p99 per model
        lines.append("RT p99 ms per model: " + "  ".join(f"{m:>12}" for m in rts))
        for name, m in res["policies"].items():
            lines.append(
                f"  {name:17s}    "
                + "  ".join(f"{_ms(m['rt'].get(r, {}).get('p99_us')):>12}" for r in rts)
            )
    lines.append(
        f"ideal overall {refs['ideal_overall_per_s']:.1f} inf/s = RT {refs['rt_rate_per_s']:.1f}"
        f" + BE alone {_f(refs['be_alone_per_s'], '{:.1f}')} x (1 - RT-alone busy "
        f"{refs['rt_busy_fraction']:.2f}); offered RT load {res['offered_rt_load']:.0%}"
        + ("  ** RT alone overloads the GPU **" if res.get("overloaded") else "")
    )
    for p, why in res.get("skipped_policies", {}).items():
        lines.append(f"not run: {p}: {why}")
    for m in res.get("cap_sweep", []):
        if m is res["cap_sweep"][0]:
            lines.append("device-queue cap sweep:")
        lines.append(policy_row(f"{m['policy']} {m['device_queue_cap_us']:g}us", m))
    for m in res.get("kernel_length_sweep", []):
        if m is res["kernel_length_sweep"][0]:
            lines.append("RT clients vs one synthetic BE model, by BE kernel length:")
        lines.append(policy_row(f"{m['policy']} {m['be_kernel_us']:g}us", m))
    return "\n".join(lines)


def results_table(doc: dict[str, Any]) -> str:
    head = f"{doc['device']['name']} ({doc['device']['backend']})"
    if doc.get("simulated"):
        head += " - SIMULATED GPU, not a measurement"
    return "\n\n".join([head, *(workload_table(r) for r in doc["workloads"])])
