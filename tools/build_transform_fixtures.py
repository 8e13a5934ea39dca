#!/usr/bin/env python3
"""Build the kernel-transformer GPU fixtures (needs apache-tvm and nvcc):
cubins of plain / preemptible / DKP-ready variants, inputs, references and manifest.json.

    tools/build_transform_fixtures.py [OUTDIR=.carry/transform] [--no-bench] [--only NAME ...]

Same as ``python -m reef_rocm.compiler.transform_fixtures``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reef_rocm.compiler.transform_fixtures import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
