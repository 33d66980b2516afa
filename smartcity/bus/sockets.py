"""Socket set-up shared by the broker, subscribers and publishers: options from defaults.py,
the 0700 run directory, endpoint names, CURVE keys."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import zmq
import zmq.auth

from smartcity.bus import defaults as d


class Closing:
    """``with obj: ...`` closes obj at the end of the block: the bus's clients (Publisher,
    Subscriber, the evidence clients) are context managers this way."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RunDirError(PermissionError):
    """The run directory is not a private directory of this user."""


class BusSecurityError(RuntimeError):
    """The TCP endpoint's keys are missing or unusable."""


def ensure_run_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The run directory, created with mode 0700 if missing. Refuses a directory that is a
    symlink, is not owned by this user, or is accessible by group or others."""
    p = Path(path) if path is not None else d.default_run_dir()
    try:
        os.mkdir(p, d.RUN_DIR_MODE)
    except FileExistsError:
        pass
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"run dir {p} is not a directory (or is a symlink)")
    if st.st_uid != os.getuid():
        raise RunDirError(
            f"run dir {p} is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise RunDirError(
            f"run dir {p} has mode {mode:04o}: group or others may reach the bus; "
            f"chmod 700 {p} or pick another directory"
        )
    return p


def ipc_endpoint(run_dir: Path, name: str) -> str:
    path = str(run_dir / name)
    if len(path.encode()) > d.MAX_IPC_PATH:
        raise ValueError(
            f"ipc path {path} is {len(path.encode())} bytes, more than {d.MAX_IPC_PATH}: "
            "use a shorter run dir"
        )
    return "ipc://" + path


def publisher_endpoint(run_dir: str | os.PathLike[str] | None = None) -> str:
    """Where publishers connect (the broker's XSUB)."""
    return ipc_endpoint(ensure_run_dir(run_dir), d.XSUB_NAME)


def subscriber_endpoint(run_dir: str | os.PathLike[str] | None = None) -> str:
    """Where local subscribers connect (the broker's XPUB)."""
    return ipc_endpoint(ensure_run_dir(run_dir), d.XPUB_NAME)


def set_reader_options(sock: zmq.Socket[bytes], *, rcvhwm: int) -> None:
    """Options of every socket that reads untrusted input."""
    sock.setsockopt(zmq.MAXMSGSIZE, d.MAX_MSG_SIZE)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.LINGER, d.READER_LINGER_MS)


def set_tcp_options(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.HEARTBEAT_IVL, d.HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, d.HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, d.HEARTBEAT_TTL_MS)


@dataclass(frozen=True)
class CurveClient:
    """Keys of an integrator's subscriber: the server's public key and the client's key pair
    (Z85 bytes, as zmq.auth.create_certificates writes them)."""

    server_public_key: bytes
    public_key: bytes
    secret_key: bytes

    @classmethod
    def from_files(
        cls, server_public_file: str | os.PathLike[str], client_secret_file: str | os.PathLike[str]
    ) -> CurveClient:
        server_public, _ = zmq.auth.load_certificate(os.fspath(server_public_file))
        public, secret = zmq.auth.load_certificate(os.fspath(client_secret_file))
        if secret is None:
            raise BusSecurityError(f"{client_secret_file} holds no secret key")
        return cls(server_public, public, secret)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        sock.curve_serverkey = self.server_public_key
        sock.curve_publickey = self.public_key
        sock.curve_secretkey = self.secret_key
