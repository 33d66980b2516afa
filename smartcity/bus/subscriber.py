"""Subscriber for Python services and integrators: typed events, time-outs, gap statistics.

Sequence numbers are per publisher and topic, starting at 0. For every topic the subscriber
counts the messages it never saw (gaps) and the times a publisher started again (restarts);
nothing is lost silently (docs/events.md, "Sequence numbers and gaps").
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import zmq

from smartcity.bus import defaults as d
from smartcity.bus.codec import DecodeError, decode, peek_seq
from smartcity.bus.events import Event
from smartcity.bus.sockets import Closing, CurveClient, set_reader_options, set_tcp_options


@dataclass
class TopicStats:
    """What one subscriber saw of one topic."""

    received: int = 0  # messages decoded and delivered
    gaps: int = 0  # messages missing between sequence numbers (dropped somewhere)
    restarts: int = 0  # sequence went back: the publisher started again
    decode_errors: int = 0  # messages refused by the codec (not delivered)
    first_seq: int | None = None  # first sequence number seen (joined late: earlier ones not gaps)
    last_seq: int | None = None
    last_error: str = ""

    def see(self, seq: int) -> None:
        """Account one sequence number."""
        last = self.last_seq
        if last is None:
            self.first_seq = seq
        elif seq > last:
            self.gaps += seq - last - 1
        else:
            # Back to 0 (or to n when 0..n-1 were lost too): a new publisher on this topic.
            self.restarts += 1
            self.gaps += seq
        self.last_seq = seq


class Subscriber(Closing):
    """SUB socket on the broker's XPUB endpoint (local ipc:// or the CURVE TCP endpoint).

    topics are prefixes, as in ZeroMQ: "tracks." is every camera's tracks, "" is everything.
    Malformed messages are counted in stats[topic].decode_errors and skipped.
    """

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str] = ("",),
        *,
        curve: CurveClient | None = None,
        rcvhwm: int = d.SUB_RCVHWM,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        try:
            set_reader_options(self._socket, rcvhwm=rcvhwm)
            if endpoint.startswith("tcp://"):
                set_tcp_options(self._socket)
            if curve is not None:
                curve.apply(self._socket)
            for t in topics:
                self.subscribe(t)
            self._socket.connect(endpoint)
        except Exception:
            self.close()
            raise
        self.endpoint = endpoint
        self.stats: dict[str, TopicStats] = {}
        self.closed = False

    def subscribe(self, topic: str) -> None:
        self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())

    def unsubscribe(self, topic: str) -> None:
        self._socket.setsockopt(zmq.UNSUBSCRIBE, topic.encode())

    def _topic_stats(self, topic: bytes) -> TopicStats:
        name = topic[: d.MAX_TOPIC_BYTES].decode("utf-8", "replace")
        s = self.stats.get(name)
        if s is None:
            if len(self.stats) >= d.MAX_TOPICS_TRACKED:
                name = "*"
                s = self.stats.get(name)
            if s is None:
                s = self.stats[name] = TopicStats()
        return s

    def _handle(self, parts: list[bytes]) -> Event | None:
        topic = parts[0] if parts else b""
        st = self._topic_stats(topic)
        if len(parts) != 2:
            st.decode_errors += 1
            st.last_error = f"message: {len(parts)} parts, expected 2 (topic, payload)"
            return None
        try:
            event = decode(topic, parts[1])
        except DecodeError as e:
            seq = peek_seq(parts[1])
            if seq is not None:
                st.see(seq)
            st.decode_errors += 1
            st.last_error = str(e)
            return None
        st.see(event.seq)
        st.received += 1
        return event

    def recv(self, timeout_s: float | None = d.RECV_TIMEOUT_S) -> Event | None:
        """The next event, or None when none arrives within timeout_s (None: wait forever)."""
        if self.closed:
            raise RuntimeError("subscriber is closed")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left_ms = (
                None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            )
            if not self._socket.poll(left_ms, zmq.POLLIN):
                return None
            event = self._handle(self._socket.recv_multipart(zmq.NOBLOCK))
            if event is not None:
                return event
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, timeout_s: float = d.RECV_TIMEOUT_S) -> Iterator[Event]:
        """Events until none arrives for timeout_s."""
        while (event := self.recv(timeout_s)) is not None:
            yield event

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def totals(self) -> TopicStats:
        """The sum over topics (first/last seq left empty)."""
        t = TopicStats()
        for s in self.stats.values():
            t.received += s.received
            t.gaps += s.gaps
            t.restarts += s.restarts
            t.decode_errors += s.decode_errors
        return t

    def close(self) -> None:
        if getattr(self, "closed", False):
            return
        self.closed = True
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()
