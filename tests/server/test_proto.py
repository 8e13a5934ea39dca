"""The checked-in generated code is what the documented protoc command writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reef_rocm.proto import GENERATED, PROTO_FILE, PROTOC_ARGS

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the code")
    src = tmp_path / "src"
    (src / Path(PROTO_FILE).parent).mkdir(parents=True)
    shutil.copy(REPO / PROTO_FILE, src / PROTO_FILE)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *PROTOC_ARGS, PROTO_FILE],
                   cwd=src, check=True)  # fmt: skip
    for name in GENERATED:
        fresh = (src / Path(PROTO_FILE).parent / name).read_text()
        kept = (REPO / Path(PROTO_FILE).parent / name).read_text()
        assert fresh == kept, (
            f"reef_rocm/proto/{name} is stale: regenerate it (see reef_rocm/proto/__init__.py)"
        )


def test_documented_command_is_the_one_tested():
    doc = (REPO / "reef_rocm/proto/__init__.py").read_text().replace("\\\n", " ")
    cmd = " ".join(["python -m grpc_tools.protoc", *PROTOC_ARGS])
    assert cmd in " ".join(doc.split()), "the regeneration command in the docstring drifted"
    assert cmd in (REPO / PROTO_FILE).read_text()
