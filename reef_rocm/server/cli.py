"""``reef serve``: the inference server (docs/server.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over gRPC + shared memory, one REEF scheduler per GPU",
        description=(
            "Serve RT and BE models of several client processes through one scheduler per GPU. "
            "Listens on a Unix socket in a private directory unless --listen says otherwise "
            "(docs/server.md)."
        ),
    )
    p.add_argument("--packages", required=True, help="directory of model packages clients may load")
    p.add_argument("--policy", default="reset+poll", help="scheduling policy (default reset+poll)")
    p.add_argument("--gpus", default="0", help="comma list of GPU ordinals, one scheduler each")
    p.add_argument(
        "--listen",
        default=None,
        metavar="unix:PATH|PORT|HOST:PORT",
        help="default: unix:$XDG_RUNTIME_DIR/reef/reef.sock (or /tmp/reef-UID/reef.sock); "
        "PORT alone listens on 127.0.0.1",
    )
    p.add_argument("--backend", default="auto", help="auto|cuda|hip|sim (sim: the simulated GPU)")
    p.add_argument(
        "--sim-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the simulated GPU (e.g. compute_units=8), repeatable; --backend sim",
    )
    p.add_argument(
        "--max-inline-bytes",
        type=int,
        default=1 << 20,
        help="largest total of inline tensor bytes per request (default 1 MiB); larger "
        "tensors go through shared memory",
    )
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds in-flight work may take to finish at shutdown")  # fmt: skip
    p.add_argument("--max-sessions", type=int, default=256,
                   help="most client sessions at once (each holds a server thread)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.set_defaults(func=cmd_serve)


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_gpus(text: str) -> tuple[int, ...]:
    try:
        gpus = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--gpus {text!r}: expected a comma list of GPU ordinals") from None
    if not gpus or min(gpus) < 0:
        raise ValueError(f"--gpus {text!r}: expected a comma list of GPU ordinals >= 0")
    return gpus


def cmd_serve(args: argparse.Namespace) -> int:
    from reef_rocm.errors import ReefError
    from reef_rocm.server.app import ReefServer, ServeOptions

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    opts: dict[str, object] = {}
    for kv in args.sim_option:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ReefError(f"--sim-option {kv!r}: expected KEY=VALUE")
        opts[k] = _value(v)
    if opts and args.backend != "sim":
        raise ReefError("--sim-option needs --backend sim")
    try:
        options = ServeOptions(
            packages=Path(args.packages), policy=args.policy, gpus=parse_gpus(args.gpus),
            listen=args.listen, backend=args.backend, device_options=opts,
            max_inline_bytes=args.max_inline_bytes, grace_s=args.grace,
            max_sessions=args.max_sessions,
        )  # fmt: skip
    except ValueError as e:
        raise ReefError(str(e)) from None
    try:
        ReefServer(options).run()
    except OSError as e:
        raise ReefError(f"cannot serve: {e}") from e
    return 0
