"""The bus broker: XSUB (publishers) ⇄ XPUB (subscribers) on ipc:// endpoints in a 0700 run
directory, and optionally a CURVE-secured TCP endpoint for integrators.

Each proxy is zmq.proxy_steerable in a thread of its own (C code, GIL released); stop() sends
TERMINATE on its control socket, so the broker stops cleanly. The TCP endpoint is a second proxy
fed from the local XPUB over inproc://: integrators never share a socket with local services.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from smartcity.bus import defaults as d
from smartcity.bus.sockets import (
    BusSecurityError,
    ensure_run_dir,
    ipc_endpoint,
    set_reader_options,
    set_tcp_options,
)

_ids = itertools.count()


@dataclass(frozen=True)
class TcpEndpoint:
    """The integrator endpoint. server_secret_key: a zmq.auth secret certificate file
    (…key_secret); allowed_clients_dir: the public certificates (…key) of the clients let in."""

    server_secret_key: Path | None
    allowed_clients_dir: Path | None
    bind: str = d.TCP_BIND_DEFAULT


class _Proxy:
    """One steerable proxy in a thread; owns its two sockets once started."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        frontend: zmq.Socket[bytes],
        backend: zmq.Socket[bytes],
        name: str,
    ) -> None:
        self._frontend = frontend
        self._backend = backend
        addr = f"inproc://smartcity-bus-ctl-{os.getpid()}-{next(_ids)}"
        self._control_in = context.socket(zmq.PAIR)
        self._control_in.bind(addr)
        self._control = context.socket(zmq.PAIR)
        self._control.connect(addr)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control_in)
        except zmq.ContextTerminated:
            pass
        except BaseException as e:  # kept for stop() to report
            self.error = e
        finally:
            for s in (self._frontend, self._backend, self._control_in):
                s.close(linger=0)

    def stop(self, timeout_s: float) -> None:
        if self._thread.is_alive():
            self._control.send(b"TERMINATE")
            self._thread.join(timeout_s)
        self._control.close(linger=0)
        if self._thread.is_alive():
            raise RuntimeError(f"bus proxy {self._thread.name} did not stop within {timeout_s} s")


class Broker:
    """Broker(run_dir).start(): publishers connect to xsub_endpoint, subscribers to
    xpub_endpoint (and integrators to tcp_endpoint when `tcp` is given)."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        tcp: TcpEndpoint | None = None,
        hwm: int = d.BROKER_HWM,
    ) -> None:
        self.hwm = hwm
        self.run_dir = ensure_run_dir(run_dir)
        self.xsub_endpoint = ipc_endpoint(self.run_dir, d.XSUB_NAME)
        self.xpub_endpoint = ipc_endpoint(self.run_dir, d.XPUB_NAME)
        self.tcp = tcp
        self.tcp_endpoint: str | None = None
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._proxies: list[_Proxy] = []

    @staticmethod
    def _tcp_keys(tcp: TcpEndpoint) -> tuple[bytes, bytes, Path]:
        """Refuses to go on without a server secret key and a non-empty allow-list."""
        if tcp.server_secret_key is None or not Path(tcp.server_secret_key).is_file():
            raise BusSecurityError(
                f"TCP endpoint {tcp.bind}: server_secret_key {tcp.server_secret_key} is missing; "
                "the TCP endpoint never starts without CURVE keys"
            )
        public, secret = zmq.auth.load_certificate(os.fspath(tcp.server_secret_key))
        if not secret:
            raise BusSecurityError(f"{tcp.server_secret_key} holds no secret key")
        clients = tcp.allowed_clients_dir
        if clients is None or not Path(clients).is_dir():
            raise BusSecurityError(
                f"TCP endpoint {tcp.bind}: allowed_clients_dir {clients} is missing"
            )
        if not any(Path(clients).glob("*.key")):
            raise BusSecurityError(f"allowed_clients_dir {clients} holds no public keys (*.key)")
        return public, secret, Path(clients)

    def start(self) -> Broker:
        if self._context is not None:
            raise RuntimeError("broker already started")
        keys = self._tcp_keys(self.tcp) if self.tcp is not None else None
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._context = ctx
        made: list[zmq.Socket[bytes]] = []
        try:
            xsub = ctx.socket(zmq.XSUB)
            made.append(xsub)
            set_reader_options(xsub, rcvhwm=self.hwm)
            xsub.setsockopt(zmq.SNDHWM, self.hwm)
            xsub.bind(self.xsub_endpoint)
            xpub = ctx.socket(zmq.XPUB)
            made.append(xpub)
            xpub.setsockopt(zmq.SNDHWM, self.hwm)
            xpub.setsockopt(zmq.LINGER, d.READER_LINGER_MS)
            xpub.setsockopt(zmq.MAXMSGSIZE, d.MAX_SUBSCRIPTION_SIZE)
            xpub.bind(self.xpub_endpoint)
            inproc = f"inproc://smartcity-bus-out-{os.getpid()}-{next(_ids)}"
            if keys is not None:
                xpub.bind(inproc)
            self._proxies.append(_Proxy(ctx, xsub, xpub, "bus-broker"))
            made.clear()
            if keys is not None and self.tcp is not None:
                self._start_tcp(ctx, keys, inproc)
        except BaseException:
            for s in made:
                s.close(linger=0)
            self.stop()
            raise
        return self

    def _start_tcp(
        self, ctx: zmq.Context[zmq.Socket[bytes]], keys: tuple[bytes, bytes, Path], inproc: str
    ) -> None:
        assert self.tcp is not None
        public, secret, clients = keys
        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        self._auth.configure_curve(domain=d.ZAP_DOMAIN, location=os.fspath(clients))
        relay_in = ctx.socket(zmq.XSUB)
        relay_out = ctx.socket(zmq.XPUB)
        try:
            set_reader_options(relay_in, rcvhwm=self.hwm)
            relay_in.connect(inproc)
            relay_out.setsockopt(zmq.SNDHWM, self.hwm)
            relay_out.setsockopt(zmq.LINGER, d.READER_LINGER_MS)
            relay_out.setsockopt(zmq.MAXMSGSIZE, d.MAX_SUBSCRIPTION_SIZE)
            set_tcp_options(relay_out)
            relay_out.curve_server = True
            relay_out.curve_publickey = public
            relay_out.curve_secretkey = secret
            relay_out.setsockopt(zmq.ZAP_DOMAIN, d.ZAP_DOMAIN.encode())
            relay_out.bind(self.tcp.bind)
            self.tcp_endpoint = relay_out.getsockopt(zmq.LAST_ENDPOINT).decode()  # type: ignore[union-attr]
        except BaseException:
            relay_in.close(linger=0)
            relay_out.close(linger=0)
            raise
        self._proxies.append(_Proxy(ctx, relay_in, relay_out, "bus-tcp-relay"))

    def stop(self) -> None:
        errors: list[BaseException] = []
        for p in reversed(self._proxies):
            try:
                p.stop(d.BROKER_STOP_TIMEOUT_S)
            except RuntimeError as e:
                errors.append(e)
            if p.error is not None:
                errors.append(p.error)
        self._proxies.clear()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            if not errors:
                self._context.term()
            self._context = None
        self.tcp_endpoint = None
        if errors:
            raise RuntimeError(f"bus broker stopped with errors: {errors}")

    @property
    def running(self) -> bool:
        return self._context is not None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
