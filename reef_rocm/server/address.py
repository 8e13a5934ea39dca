"""Where `reef serve` listens: a Unix socket in a private directory by default, TCP only when
asked (loopback unless another address is named explicitly)."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from reef_rocm.errors import ReefError

SOCKET_NAME = "reef.sock"


class AddressError(ReefError):
    """A --listen address that is malformed, unsafe or already in use."""


def default_socket_dir() -> Path:
    """``$XDG_RUNTIME_DIR/reef`` when the session has one, else ``/tmp/reef-<uid>``."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run and Path(run).is_dir():
        return Path(run) / "reef"
    return Path(f"/tmp/reef-{os.getuid()}")


@dataclass(frozen=True)
class ListenAddress:
    kind: str  # "unix" | "tcp"
    path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def loopback(self) -> bool:
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def grpc_target(self) -> str:
        """The address in gRPC's syntax (server bind and client channel alike)."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def with_port(self, port: int) -> ListenAddress:
        return ListenAddress(self.kind, self.path, self.host, port)

    def __str__(self) -> str:
        return self.grpc_target()


def parse_listen(text: str | None) -> ListenAddress:
    """``None`` -> the default Unix socket; ``unix:PATH``; ``PORT`` or ``:PORT`` -> TCP on
    127.0.0.1; ``HOST:PORT`` / ``[V6]:PORT`` -> TCP on exactly that host (an explicit
    non-loopback host is the user's choice)."""
    if text is None or text == "":
        return ListenAddress("unix", default_socket_dir() / SOCKET_NAME)
    if text.startswith("unix:"):
        p = text[len("unix:") :]
        if p.startswith("//"):  # unix:///abs/path
            p = p[2:]
        if not p:
            raise AddressError("unix: address without a path (use unix:/path/to/reef.sock)")
        return ListenAddress("unix", Path(p).expanduser().absolute())
    if text.startswith("tcp:"):
        text = text[len("tcp:") :]
    host, sep, port_s = text.rpartition(":")
    if not sep:
        host, port_s = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_s)
    except ValueError:
        raise AddressError(
            f"--listen {text!r}: expected unix:PATH, PORT, HOST:PORT or [V6]:PORT"
        ) from None
    if not 0 <= port <= 65535:
        raise AddressError(f"--listen {text!r}: port {port} out of range")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise AddressError(
                f"--listen {text!r}: {host!r} is not an IP address (or localhost)"
            ) from None
    return ListenAddress("tcp", host=host, port=port)


def prepare_unix_socket(addr: ListenAddress) -> bool:
    """Make sure the socket's directory is private (created 0700 when missing; an existing
    one must be ours and closed to group and others) and remove a stale socket file left by a
    server that died. Returns whether the directory was created (the server removes it on
    shutdown then)."""
    assert addr.kind == "unix" and addr.path is not None
    d = addr.path.parent
    created = False
    if not d.exists():
        d.mkdir(mode=0o700, parents=True)
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
        created = True
    st = d.stat()
    if st.st_uid != os.getuid():
        raise AddressError(f"socket directory {d} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        raise AddressError(
            f"socket directory {d} is open to other users (mode {stat.filemode(st.st_mode)}); "
            "reef serve listens only in a private directory (chmod 700, or pick another path)"
        )
    if addr.path.exists() or addr.path.is_symlink():
        if not stat.S_ISSOCK(addr.path.lstat().st_mode):
            raise AddressError(f"{addr.path} exists and is not a socket; refusing to replace it")
        if _socket_answers(addr.path):
            raise AddressError(f"another server is already listening on {addr.path}")
        addr.path.unlink()  # stale: its server is gone
    return created


def _socket_answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def secure_unix_socket(addr: ListenAddress) -> None:
    """Socket file mode 0600 once gRPC has bound it (the directory already keeps others out)."""
    assert addr.path is not None
    os.chmod(addr.path, 0o600)


def remove_unix_socket(addr: ListenAddress, remove_dir: bool) -> None:
    assert addr.path is not None
    try:
        addr.path.unlink()
    except FileNotFoundError:
        pass
    if remove_dir:
        try:
            addr.path.parent.rmdir()
        except OSError:
            pass  # something else lives there now: leave it
