"""The `reef` command: subcommands are registered, doctor reports this machine, errors are
reported as one line naming the problem."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from reef_rocm import cli, doctor


def run_reef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reef_rocm.cli", *args], capture_output=True, text=True
    )


def test_help_lists_subcommands():
    out = run_reef("--help")
    assert out.returncode == 0
    for name in ("doctor", "compile", "inspect"):
        assert name in out.stdout


def test_no_subcommand_prints_help_and_fails():
    out = run_reef()
    assert out.returncode == 2 and "usage: reef" in out.stdout


def test_doctor_json_reports_backends_and_kfd():
    out = run_reef("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = [b["backend"] for b in report["backends"]]
    assert names == ["cuda", "hip"]
    for b in report["backends"]:
        assert isinstance(b["available"], bool)
        if not b["available"]:
            assert b["reason"]  # every unavailable backend says why
    assert "kfd_patch" in report and "packages" in report
    assert report["gpu_found"] == any(b["available"] for b in report["backends"])


def test_doctor_human_output_without_gpu(capsys):
    report = doctor.collect()
    if report["gpu_found"]:
        pytest.skip("this machine has a GPU")
    doctor._print_human(report)
    text = capsys.readouterr().out
    assert "backend cuda: unavailable" in text and "no GPU found" in text


def test_reef_errors_are_one_line(monkeypatch, capsys):
    from reef_rocm.errors import ModelError

    def boom(args):
        raise ModelError("unknown model 'resnet9000'")

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["doctor"].set_defaults(func=boom)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["doctor"]) == 1
    assert "error: unknown model 'resnet9000'" in capsys.readouterr().err
