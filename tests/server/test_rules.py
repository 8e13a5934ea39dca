"""Listen addresses and the placement rule (pure functions: no server, no GPU)."""

from __future__ import annotations

import os
import socket

import pytest

from reef_rocm.server.address import AddressError, parse_listen, prepare_unix_socket
from reef_rocm.server.placement import GpuLoad, PlacementError, place


def test_default_is_a_unix_socket_in_a_private_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    a = parse_listen(None)
    assert a.kind == "unix" and str(a.path) == f"/tmp/reef-{os.getuid()}/reef.sock"
    run = tmp_path / "xdg"
    run.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert parse_listen(None).path == run / "reef" / "reef.sock"


@pytest.mark.parametrize(
    "text,host,port,loopback",
    [("8500", "127.0.0.1", 8500, True), (":8500", "127.0.0.1", 8500, True),
     ("127.0.0.1:0", "127.0.0.1", 0, True), ("[::1]:9", "::1", 9, True),
     ("localhost:7", "localhost", 7, True), ("0.0.0.0:8500", "0.0.0.0", 8500, False),
     ("tcp:10.1.2.3:1", "10.1.2.3", 1, False)],
)  # fmt: skip
def test_tcp_is_loopback_unless_another_host_is_named(text, host, port, loopback):
    a = parse_listen(text)
    assert (a.kind, a.host, a.port, a.loopback) == ("tcp", host, port, loopback)


@pytest.mark.parametrize("text", ["unix:", "host.example:80", "1.2.3.4:99999", "abc"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(AddressError):
        parse_listen(text)


def test_socket_directory_must_be_private(tmp_path):
    fresh = parse_listen(f"unix:{tmp_path}/new/reef.sock")
    assert prepare_unix_socket(fresh) is True
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    with pytest.raises(AddressError, match="open to other users"):
        prepare_unix_socket(parse_listen(f"unix:{open_dir}/reef.sock"))


def test_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(tmp_path):
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    path = d / "reef.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(1)
    with pytest.raises(AddressError, match="already listening"):
        prepare_unix_socket(parse_listen(f"unix:{path}"))
    s.close()  # the file stays: a stale socket
    assert path.exists()
    prepare_unix_socket(parse_listen(f"unix:{path}"))
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(AddressError, match="not a socket"):
        prepare_unix_socket(parse_listen(f"unix:{path}"))


def G(i, workloads=(), models=0, healthy=True):  # noqa: N802
    return GpuLoad(i, healthy, frozenset(workloads), models, "" if healthy else "fault")


def test_placement_keeps_a_workload_together_and_spreads_the_rest():
    gpus = [G(0, {"a"}, 2), G(1)]
    assert place(gpus, "a") == 0  # RT and BE of workload a stay together
    assert place(gpus, "b") == 1  # least loaded
    assert place([G(0, {"a"}, 1), G(1, {"b"}, 3)], "c") == 0  # fewest workloads first
    assert place([G(0, {"a"}, 3), G(1, {"b"}, 1)], "c") == 1  # then fewest models
    assert place([G(0), G(1)], "c") == 0  # then lowest index


def test_placement_override_and_failed_gpus():
    gpus = [G(0, {"a"}, 1), G(1, healthy=False), G(2)]
    assert place(gpus, "a", pinned=2) == 2
    with pytest.raises(PlacementError) as e:
        place(gpus, "a", pinned=1)
    assert e.value.code == "UNAVAILABLE"
    with pytest.raises(PlacementError) as e:
        place(gpus, "a", pinned=7)
    assert e.value.code == "INVALID_ARGUMENT"
    assert place([G(0, {"a"}, healthy=False), G(1, {"b"})], "a") == 1  # its GPU failed
    with pytest.raises(PlacementError):
        place([G(0, healthy=False)], "a")


@pytest.mark.parametrize(
    "args,text",
    [(["--gpus", "a"], "--gpus 'a'"), (["--gpus", "0,0"], "distinct"),
     (["--sim-option", "x"], "KEY=VALUE"), (["--sim-option", "a=1"], "needs --backend sim"),
     (["--listen", "nohost:1"], "not an IP address")],
)  # fmt: skip
def test_serve_refuses_bad_flags_before_opening_anything(tmp_path, capsys, args, text):
    from reef_rocm.cli import main

    assert main(["serve", "--packages", str(tmp_path), *args]) == 1
    assert text in capsys.readouterr().err
