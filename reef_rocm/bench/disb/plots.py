"""Figures of a DISB results document, after the paper's evaluation (PNG, matplotlib):

- fig10: RT latency (p99 bars, mean and p50 markers) and overall throughput (with the GPU's
  ideal) per policy, one column per workload;
- fig11: preemption latency (p50, p99) per policy by workload, and by RT model;
- fig13: preemption latency against the number of queued BE kernels the preemption dropped;
- fig14: preemption latency and BE throughput against the device-queue cap (``--sweep-cap``).

- fig12: preemption latency against the BE kernel length (``--sweep-be-kernel-us``, sim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        from reef_rocm.errors import UnsupportedError

        raise UnsupportedError(
            "plots need matplotlib (pip install matplotlib); the results JSON is written "
            "without them and `reef bench plot RESULTS.json` draws them later"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(policies: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {p: cmap(i % 10) for i, p in enumerate(policies)}


def _policies(doc: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in doc["workloads"]:
        for p in r["policies"]:
            if p not in seen:
                seen.append(p)
    return seen


def _suffix(doc: dict[str, Any]) -> str:
    dev = doc["device"]["name"]
    if doc.get("simulated"):
        return f"{dev}, not a GPU measurement" if "simulated" in dev else f"{dev} - SIMULATED"
    return dev


def _log(ax: Any, *series: Any) -> None:
    """Log y axis when there is something positive to draw (an empty panel stays linear)."""
    vals = np.asarray([v for s in series for v in s], dtype=float)
    if np.any(np.isfinite(vals) & (vals > 0)):
        ax.set_yscale("log")


def _pre(res: dict[str, Any], policy: str) -> dict[str, Any]:
    return res["policies"].get(policy, {}).get("preemption", {})


def _worst(rt: dict[str, Any], key: str) -> float:
    xs = [v[key] for v in rt.values() if v.get(key) is not None]
    return max(xs) if xs else np.nan


def fig10(doc: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    pols = _policies(doc)
    col = _colors(pols)
    wls = doc["workloads"]
    fig, axes = plt.subplots(2, len(wls), figsize=(max(4.0, 3.2 * len(wls)), 7), squeeze=False)
    x = np.arange(len(pols))
    for j, r in enumerate(wls):
        ax_l, ax_t = axes[0][j], axes[1][j]
        ps = r["policies"]
        p99 = [_worst(ps[p]["rt"], "p99_us") / 1e3 if p in ps else np.nan for p in pols]
        mean = [_worst(ps[p]["rt"], "mean_us") / 1e3 if p in ps else np.nan for p in pols]
        p50 = [_worst(ps[p]["rt"], "p50_us") / 1e3 if p in ps else np.nan for p in pols]
        ax_l.bar(x, p99, color=[col[p] for p in pols])
        ax_l.plot(x, mean, "k_", markersize=14, label="mean")
        ax_l.plot(x, p50, "kx", label="p50")
        ax_l.set_title(f"DISB {r['workload']['name']}")
        ax_l.set_xticks(x, pols, rotation=60, ha="right", fontsize=7)
        _log(ax_l, p99, mean, p50)
        tp = [ps[p]["overall_throughput_per_s"] if p in ps else np.nan for p in pols]
        ax_t.bar(x, tp, color=[col[p] for p in pols])
        ideal = r["references"]["ideal_overall_per_s"]
        ax_t.axhline(ideal, color="k", linestyle="--", linewidth=1, label="ideal")
        ax_t.set_xticks(x, pols, rotation=60, ha="right", fontsize=7)
        if j == 0:
            ax_l.set_ylabel("RT latency (ms): bar p99 (worst RT model)")
            ax_t.set_ylabel("overall throughput (inferences/s)")
            ax_l.legend(fontsize=7)
            ax_t.legend(fontsize=7)
    fig.suptitle(f"RT latency and overall throughput per policy\n({_suffix(doc)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig11(doc: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    pols = [p for p in _policies(doc) if any(_pre(r, p).get("count") for r in doc["workloads"])]
    col = _colors(_policies(doc))
    wls = doc["workloads"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(1, len(pols))
    drawn: list[float] = []
    for i, p in enumerate(pols):
        xs = np.arange(len(wls)) + i * width
        pre = [_pre(r, p) for r in wls]
        ys = [q.get("p99_us") or np.nan for q in pre]
        drawn += ys
        a.bar(xs, ys, width, color=col[p], label=p)
        a.plot(xs, [q.get("p50_us") or np.nan for q in pre], "k_", markersize=8)
    a.set_xticks(np.arange(len(wls)) + width * (len(pols) - 1) / 2,
                 [r["workload"]["name"] for r in wls])  # fmt: skip
    a.set_xlabel("workload")
    a.set_ylabel("preemption latency (us): bar p99, dash p50")
    _log(a, drawn)
    a.legend(fontsize=7)
    a.set_title("by workload")
    models = sorted({m for r in wls for p in pols for m in _pre(r, p).get("by_rt_model", {})})
    for i, p in enumerate(pols):
        xs = np.arange(len(models)) + i * width
        vals = []
        for m in models:  # the worst p99 of this RT model over the workloads it is RT in
            v = [_pre(r, p).get("by_rt_model", {}).get(m, {}).get("p99_us") for r in wls]
            v = [x for x in v if x is not None]
            vals.append(max(v) if v else np.nan)
        drawn += vals
        b.bar(xs, vals, width, color=col[p], label=p)
    b.set_xticks(np.arange(len(models)) + width * (len(pols) - 1) / 2, models, fontsize=8)
    b.set_xlabel("RT model")
    b.set_ylabel("preemption latency p99 (us)")
    _log(b, drawn)
    b.set_title("by RT model (worst workload)")
    fig.suptitle(f"Preemption latency: RT arrival to first RT block\n({_suffix(doc)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig13(doc: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    col = _colors(_policies(doc))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn: list[float] = []
    for p in _policies(doc):
        pts = [s for r in doc["workloads"] for s in _pre(r, p).get("samples", [])]
        if not pts:
            continue
        arr = np.asarray(pts, dtype=float)
        drawn += list(arr[:, 0])
        ax.scatter(arr[:, 1], arr[:, 0], s=6, alpha=0.3, color=col[p])
        ks = np.unique(arr[:, 1])
        ax.plot(ks, [np.median(arr[arr[:, 1] == k, 0]) for k in ks], "-o", color=col[p],
                markersize=3, label=f"{p} (median)")  # fmt: skip
    ax.set_xlabel("queued BE kernels dropped by the preemption (kernels)")
    ax.set_ylabel("preemption latency (us)")
    _log(ax, drawn)
    ax.legend(fontsize=7)
    ax.set_title(f"Preemption latency vs queued BE kernels\n({_suffix(doc)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig14(doc: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    wls = [r for r in doc["workloads"] if r.get("cap_sweep")]
    fig, axes = plt.subplots(1, len(wls), figsize=(5.5 * len(wls), 4.2), squeeze=False)
    for ax, r in zip(axes[0], wls, strict=True):
        for p in sorted({m["policy"] for m in r["cap_sweep"]}):
            pts = sorted((m["device_queue_cap_us"], m) for m in r["cap_sweep"] if m["policy"] == p)
            caps = [c for c, _ in pts]
            ax.plot(caps, [m["preemption"]["p99_us"] or np.nan for _, m in pts], "-o",
                    label=f"{p} preemption p99")  # fmt: skip
            ax.plot(caps, [m["preemption"]["p50_us"] or np.nan for _, m in pts], "--o",
                    label=f"{p} preemption p50")  # fmt: skip
            ax2 = ax.twinx()
            ax2.plot(caps, [m["be_throughput_per_s"] for _, m in pts], "-s", color="tab:green",
                     label=f"{p} BE throughput")  # fmt: skip
            ax2.set_ylabel("BE throughput (inferences/s)", color="tab:green")
        ax.set_xlabel("BE device-queue cap (us of queued work)")
        ax.set_ylabel("preemption latency (us)")
        ax.set_title(f"DISB {r['workload']['name']}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Device-queue cap trade-off\n({_suffix(doc)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig12(doc: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    wls = [r for r in doc["workloads"] if r.get("kernel_length_sweep")]
    col = _colors(_policies(doc))
    fig, axes = plt.subplots(1, len(wls), figsize=(5.5 * len(wls), 4.2), squeeze=False)
    for ax, r in zip(axes[0], wls, strict=True):
        drawn: list[float] = []
        sweep = r["kernel_length_sweep"]
        for p in sorted({m["policy"] for m in sweep}):
            pts = sorted((m["be_kernel_us"], m) for m in sweep if m["policy"] == p)
            xs = [k for k, _ in pts]
            p99 = [m["preemption"]["p99_us"] or np.nan for _, m in pts]
            p50 = [m["preemption"]["p50_us"] or np.nan for _, m in pts]
            drawn += p99 + p50
            c = col.get(p)
            ax.plot(xs, p99, "-o", color=c, label=f"{p} p99")
            ax.plot(xs, p50, "--o", color=c, label=f"{p} p50", alpha=0.7)
        ax.set_xscale("log")
        ks = sorted({m["be_kernel_us"] for m in sweep})
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.minorticks_off()
        _log(ax, drawn)
        ax.set_xlabel("BE kernel length (us, each kernel alone)")
        ax.set_ylabel("preemption latency (us)")
        ax.set_title(f"RT of DISB {r['workload']['name']} vs one synthetic BE model")
        ax.legend(fontsize=7)
    fig.suptitle(f"Preemption latency vs BE kernel length\n({_suffix(doc)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_results(doc: dict[str, Any], out_dir: str | Path, stem: str) -> list[Path]:
    """Every figure the document has data for; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [fig10(doc, out / f"{stem}_fig10.png")]
    if any(p.get("preemption", {}).get("count") for r in doc["workloads"]
           for p in r["policies"].values()):  # fmt: skip
        files += [fig11(doc, out / f"{stem}_fig11.png"), fig13(doc, out / f"{stem}_fig13.png")]
    if any(r.get("kernel_length_sweep") for r in doc["workloads"]):
        files.append(fig12(doc, out / f"{stem}_fig12.png"))
    if any(r.get("cap_sweep") for r in doc["workloads"]):
        files.append(fig14(doc, out / f"{stem}_fig14.png"))
    return files
