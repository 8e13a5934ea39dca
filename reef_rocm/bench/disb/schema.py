"""The shape of a DISB results document (checked by `reef bench plot` before drawing, and by
the tests). Fields named here are the contract; anything else is extra information.

    {benchmark: "disb", simulated: bool, device: {name, backend, arch, capabilities},
     config: {..., policies_run: [..]}, definitions: str, notes: [..],
     + write_result's metadata (date, git_commit, card, driver, command, ...),
     workloads: [{workload: {name, clients, duration_s, warmup_s, seed, rt_scale, ...},
                  arrivals: {client: count | null}, offered_rt_load, overloaded,
                  references: {rt_rate_per_s, rt_busy_fraction, be_alone_per_s,
                               ideal_overall_per_s, ...},
                  be_alone: POLICY | null, skipped_policies: {policy: reason},
                  policies: {policy: POLICY}, cap_sweep: [POLICY + device_queue_cap_us],
                  kernel_length_sweep: [POLICY + be_kernel_us] (optional)}]}
    POLICY = {policy, rt: {model: {count, mean_us, p50_us, p95_us, p99_us, max_us,
              unfinished, throughput_per_s, service_mean_us}}, be: {model: {completed,
              throughput_per_s, preemptions_of_completed}}, preemption: {count, mean_us, p50_us,
              p95_us, p99_us, max_us, drain_p50_us, drain_p99_us, killed, dropped_kernels_mean,
              by_rt_model, samples}, rt_throughput_per_s, be_throughput_per_s,
              overall_throughput_per_s, busy_fraction, rt_service_busy_fraction,
              device_queue_cap_us, wall_s, compare: {overall_vs_rt_only, ideal_overall_per_s,
              overall_vs_ideal, be_share_kept, rt_p99_vs_rt_only: {model: ratio}}}
"""

from __future__ import annotations

from typing import Any

from reef_rocm.errors import ReefError

NUM = (int, float)
OPT_NUM = (int, float, type(None))

TOP = {"benchmark": str, "simulated": bool, "device": dict, "config": dict, "workloads": list,
       "date": str, "git_commit": str, "card": str, "command": str}  # fmt: skip
WORKLOAD = {"workload": dict, "arrivals": dict, "offered_rt_load": NUM, "overloaded": bool,
            "references": dict, "policies": dict, "skipped_policies": dict,
            "cap_sweep": list}  # fmt: skip
REFERENCES = {"rt_rate_per_s": NUM, "rt_busy_fraction": NUM, "be_alone_per_s": OPT_NUM,
              "ideal_overall_per_s": NUM}  # fmt: skip
POLICY = {"policy": str, "rt": dict, "be": dict, "preemption": dict,
          "rt_throughput_per_s": NUM, "be_throughput_per_s": NUM,
          "overall_throughput_per_s": NUM, "busy_fraction": OPT_NUM, "compare": dict}  # fmt: skip
RT = {"count": int, "mean_us": OPT_NUM, "p50_us": OPT_NUM, "p95_us": OPT_NUM, "p99_us": OPT_NUM,
      "unfinished": int, "throughput_per_s": NUM}  # fmt: skip
BE = {"completed": int, "throughput_per_s": NUM}
PREEMPTION = {"count": int, "p50_us": OPT_NUM, "p99_us": OPT_NUM, "by_rt_model": dict,
              "samples": list}  # fmt: skip
COMPARE = {"overall_vs_rt_only": OPT_NUM, "ideal_overall_per_s": NUM,
           "overall_vs_ideal": OPT_NUM, "be_share_kept": OPT_NUM,
           "rt_p99_vs_rt_only": dict}  # fmt: skip


class ResultsError(ReefError):
    """A results document lacks a field or has one of the wrong type (the message names it)."""


def _check(d: Any, spec: dict[str, Any], where: str) -> None:
    if not isinstance(d, dict):
        raise ResultsError(f"{where}: expected an object")
    for key, typ in spec.items():
        if key not in d:
            raise ResultsError(f"{where}.{key}: missing")
        v = d[key]
        if isinstance(v, bool) and typ is not bool:  # bool is an int to isinstance
            raise ResultsError(f"{where}.{key}: expected a number, got {v!r}")
        if not isinstance(v, typ):
            raise ResultsError(f"{where}.{key}: wrong type {type(v).__name__}")


def _policy(m: Any, where: str) -> None:
    _check(m, POLICY, where)
    for model, r in m["rt"].items():
        _check(r, RT, f"{where}.rt.{model}")
    for model, b in m["be"].items():
        _check(b, BE, f"{where}.be.{model}")
    _check(m["preemption"], PREEMPTION, f"{where}.preemption")
    _check(m["compare"], COMPARE, f"{where}.compare")


def validate_results(doc: Any) -> None:
    """Raise ResultsError naming the first missing or mistyped field."""
    _check(doc, TOP, "results")
    if doc["benchmark"] != "disb":
        raise ResultsError(f"results.benchmark: expected 'disb', got {doc['benchmark']!r}")
    for i, r in enumerate(doc["workloads"]):
        w = f"results.workloads[{i}]"
        _check(r, WORKLOAD, w)
        _check(r["references"], REFERENCES, f"{w}.references")
        if not r["policies"]:
            raise ResultsError(f"{w}.policies: empty")
        for name, m in r["policies"].items():
            _policy(m, f"{w}.policies.{name}")
        for j, m in enumerate(r["cap_sweep"]):
            _policy(m, f"{w}.cap_sweep[{j}]")
        for j, m in enumerate(r.get("kernel_length_sweep", [])):
            _policy(m, f"{w}.kernel_length_sweep[{j}]")
            if not isinstance(m.get("be_kernel_us"), NUM):
                raise ResultsError(f"{w}.kernel_length_sweep[{j}].be_kernel_us: missing")
