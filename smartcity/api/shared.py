"""What the API's processes on one machine share (`api.workers` > 1, or several `smartcity api`
on one data directory): small files in a directory they all see (the data directory).

- `Leader`: an fcntl lock file. The process holding it runs the webhook dispatcher and queues
  the webhook deliveries of bus events; the kernel drops the lock when its process ends, however
  it ends, and another process takes it within its poll interval.
- `SharedRateLimiter`: token buckets (login attempts per address, API key rates) in a
  memory-mapped file, each take() under an exclusive flock, so a limit holds for the appliance
  and not once per process.
- `SharedCounter`: a number in a memory-mapped file; the authenticator bumps it when a logout,
  password change, user change or key revocation must end cached credentials, and every process
  empties its cache when it sees the number change (on its next request).
- `PeerLink`: a Unix datagram socket per process in one folder; an operator's action (a live
  event made by one process) is sent to every other process's socket, so that every process's
  live feed (WebSocket, SSE) carries it.

The files hold no secrets (keys are hashed); they are made 0600.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import Any

LEADER_FILE = "api-leader.lock"
PEERS_DIR = "api-peers"
LIMITS_FILE = "api-limits.bin"
AUTH_GENERATION_FILE = "api-auth.gen"

_MAGIC = b"SCAPIRL1"
_HEADER = struct.Struct("<8sI")  # magic, slot count
_HEADER_SIZE = 64
_SLOT = struct.Struct("<16sdd")  # key digest, bucket level, last update (Unix time)
#: slots probed for a key before the least recently used of them is taken over
_PROBES = 8


def _open_shared(path: Path, size: int) -> tuple[int, mmap.mmap]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, 0)  # another layout (or a new file): start from zeros
                os.ftruncate(fd, size)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class Leader:
    """An exclusive, non-blocking flock on `path`; the holder writes its pid into the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_take(self) -> bool:
        """True when this process holds the lock (now or already)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """The pid the current holder wrote (None: none yet, or unreadable)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the lock


class SharedRateLimiter:
    """Token buckets per key, as policy.RateLimiter (`rate` events per minute, bursts up to
    `rate`), kept in a memory-mapped file shared by every process that opens it.

    A fixed table of `slots`: a key is looked for in `_PROBES` slots after its hash; a slot idle
    for two minutes counts as free (its bucket is full again by then); when all are busy the
    least recently used is taken over (that key starts again with a full bucket: the limit errs
    towards letting a request through, never towards refusing one). Unix time, so that the file
    outlives restarts; a clock step back only pauses the refill."""

    def __init__(self, path: str | os.PathLike[str], slots: int = 4096) -> None:
        if slots < _PROBES:
            raise ValueError(f"slots: at least {_PROBES}, got {slots}")
        self.path = Path(path)
        self.slots = slots
        self._fd, self._mm = _open_shared(self.path, _HEADER_SIZE + slots * _SLOT.size)
        with self._locked():
            magic, n = _HEADER.unpack_from(self._mm, 0)
            if magic != _MAGIC or n != slots:
                self._mm[:] = bytes(len(self._mm))
                _HEADER.pack_into(self._mm, 0, _MAGIC, slots)

    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    def take(self, key: Any, rate_per_min: float, now: float | None = None) -> float:
        """0.0 when allowed, else the seconds to wait."""
        now = time.time() if now is None else now
        cap = float(rate_per_min)
        rate = cap / 60.0
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % self.slots
        mm = self._mm
        with self._locked():
            found: int | None = None
            free: int | None = None
            oldest, oldest_t = _HEADER_SIZE, float("inf")
            for i in range(_PROBES):
                off = _HEADER_SIZE + ((start + i) % self.slots) * _SLOT.size
                d, level, last = _SLOT.unpack_from(mm, off)
                if d == digest:
                    found = off
                    break
                if free is None and (d == bytes(16) or now - last > 120.0):
                    free = off
                if last < oldest_t:
                    oldest, oldest_t = off, last
            if found is not None:
                off = found
                level = min(cap, level + max(0.0, now - last) * rate)
            else:
                off = free if free is not None else oldest
                level = cap
            if level >= 1.0:
                _SLOT.pack_into(mm, off, digest, level - 1.0, now)
                return 0.0
            _SLOT.pack_into(mm, off, digest, level, now)
            return (1.0 - level) / rate

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)


class SharedCounter:
    """A 64-bit number in a memory-mapped file: bump() under a lock, value() without one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd, self._mm = _open_shared(self.path, 8)

    def value(self) -> int:
        v: int = struct.unpack_from("<Q", self._mm, 0)[0]
        return v

    def bump(self) -> int:
        with _Flock(self._fd):
            v = (self.value() + 1) & 0xFFFF_FFFF_FFFF_FFFF
            struct.pack_into("<Q", self._mm, 0, v)
            return v

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)


class _Flock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class PeerLink:
    """Datagrams between the API processes of one machine: each binds `<folder>/<pid>-<n>.sock`
    (the folder 0700, the socket 0600); `send` writes to every other socket there without
    blocking. A socket whose process is gone (connection refused) is removed; a peer whose queue
    is full misses the datagram (counted in `dropped`). What arrives is the peers' to check:
    `receive` only bounds its size (`MAX_BYTES`)."""

    MAX_BYTES = 65536

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.setblocking(False)
            self.sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except BaseException:
            self.sock.close()
            raise
        self.sent = self.dropped = self.received = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes) -> None:
        if len(data) > self.MAX_BYTES:
            raise ValueError(f"a peer datagram holds at most {self.MAX_BYTES} bytes")
        for peer in self.folder.glob("*.sock"):
            if peer == self.path:
                continue
            try:
                self.sock.sendto(data, str(peer))
                self.sent += 1
            except (ConnectionRefusedError, FileNotFoundError):
                peer.unlink(missing_ok=True)  # its process is gone
            except OSError:  # its queue is full (EAGAIN), or it is going away
                self.dropped += 1

    def receive(self) -> list[bytes]:
        """The datagrams waiting, without blocking."""
        out: list[bytes] = []
        while True:
            try:
                data = self.sock.recv(self.MAX_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                return out
            if len(data) <= self.MAX_BYTES:
                out.append(data)
                self.received += 1

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
