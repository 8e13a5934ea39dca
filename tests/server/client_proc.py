"""Client processes for the server tests, run as ``python -m tests.server.client_proc MODE ...``.

``die ADDRESS PKG N``: N times, fork a child that connects, loads PKG as RT, maps its shared
memory, queues inferences and tells the parent (through a pipe) once they were accepted; the
parent SIGKILLs it there, mid-inference, and reaps it. The parent never opens a channel itself,
so every child starts with a clean gRPC. Prints JSON: {"killed": n, "ready": n}.

``load ADDRESS ROOT PKG PRIORITY SECONDS SEED``: one client in a closed loop for SECONDS, mixing
blocking and async inferences with distinct inputs; every output is checked against numpy;
prints JSON counts (sent, completed, errors, wrong, duplicates, lost).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np


def _child(address: str, pkg: str, wfd: int) -> None:
    from reef_rocm.client import Client

    c = Client(address, name=f"doomed-{os.getpid()}")
    m = c.load(pkg, priority="rt")  # RT: not profiled at load, so a death costs little
    x = np.ones(m.inputs[0].shape, m.inputs[0].dtype)
    futs = [m.infer_async(x) for _ in range(8)]  # queued and accepted by the server
    os.write(wfd, b"r")
    for f in futs:  # keeps the process busy until the kill
        f.result()
    while True:
        m.infer(x)


def die(address: str, pkg: str, n: int) -> dict[str, int]:
    import reef_rocm.client  # noqa: F401 - imported once here, not in every child (no channel yet)

    killed = ready = 0
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _child(address, pkg, w)
            finally:
                os._exit(1)
        os.close(w)
        got = os.read(r, 1)  # b"" if the child failed before it was ready
        os.close(r)
        ready += got == b"r"
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return {"killed": killed, "ready": ready}


def load(address: str, root: str, pkg: str, priority: str, seconds: float, seed: int) -> dict:
    from pathlib import Path

    from reef_rocm.client import Client
    from tests.server.simref import expected_output

    rng = np.random.default_rng(seed)
    counts = {"sent": 0, "completed": 0, "errors": 0, "wrong": 0, "duplicates": 0}
    errors: list[str] = []
    seen: set[int] = set()
    with Client(address, name=f"load-{seed}") as c, c.load(pkg, priority=priority) as m:
        spec = m.inputs[0]
        base = rng.standard_normal(spec.shape).astype(spec.dtype)
        ref0 = expected_output(Path(root) / pkg, base)
        slope = expected_output(Path(root) / pkg, base + 1) - ref0  # the chain is affine

        def shift(k: int) -> np.float32:
            return np.float32(k % 64)  # distinct among the requests in flight together

        def check(k: int, out: list[np.ndarray]) -> None:
            if k in seen:
                counts["duplicates"] += 1
                return
            seen.add(k)
            counts["completed"] += 1
            if not np.allclose(out[0], ref0 + slope * shift(k), rtol=1e-4, atol=1e-3):
                counts["wrong"] += 1

        def failed(e: Exception) -> None:
            counts["errors"] += 1
            errors.append(repr(e))

        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            batch = []
            for _ in range(3):  # three async, then one blocking
                k += 1
                counts["sent"] += 1
                batch.append((k, m.infer_async(base + shift(k))))
            k += 1
            counts["sent"] += 1
            try:
                check(k, m.infer(base + shift(k)))
            except Exception as e:  # noqa: BLE001 - counted and reported
                failed(e)
            for kk, f in batch:
                try:
                    check(kk, f.result(timeout=60))
                except Exception as e:  # noqa: BLE001
                    failed(e)
    counts["lost"] = counts["sent"] - counts["completed"] - counts["errors"]
    counts["first_errors"] = errors[:5]
    return counts


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "die":
        print(json.dumps(die(args[0], args[1], int(args[2]))))
    elif mode == "load":
        print(json.dumps(load(*args[:4], float(args[4]), int(args[5]))))
    else:
        raise SystemExit(f"unknown mode {mode}")
