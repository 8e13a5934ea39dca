"""The ``reef`` command. Each subcommand lives beside the code it drives and registers itself
through a ``register(subparsers)`` function; those modules import heavy packages (TVM, GPU
bindings) only inside their handlers so ``reef --help`` stays instant."""

from __future__ import annotations

import argparse
import importlib
import sys

from reef_rocm import __version__
from reef_rocm.errors import ReefError

# (module, what it adds). Adding a subcommand touches this list and its own module only.
SUBCOMMAND_MODULES = (
    "reef_rocm.doctor",  # reef doctor
    "reef_rocm.compiler.cli",  # reef compile
    "reef_rocm.compiler.tune.cli",  # reef tune
    "reef_rocm.runtime.cli",  # reef profile, reef bench
    "reef_rocm.codeobj.cli",  # reef inspect
    "reef_rocm.server.cli",  # reef serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reef", description="REEF-style real-time/best-effort GPU inference (AMD and NVIDIA)"
    )
    parser.add_argument("--version", action="version", version=f"reef_rocm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ReefError as e:
        print(f"reef {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `reef inspect ... | head`: the reader left, not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
