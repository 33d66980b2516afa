"""Python publisher for the services (incidents, stats, config): per-topic sequence numbers,
non-blocking sends, drops counted. The engine publishes through the C++ core's Publisher."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import zmq

from smartcity.bus import defaults as d
from smartcity.bus.codec import encode
from smartcity.bus.events import Event
from smartcity.bus.sockets import Closing


class Publisher(Closing):
    """XPUB with ZMQ_XPUB_NODROP connected to the broker's XSUB: a send that cannot be queued
    fails at once and is counted in `dropped`; it still takes its sequence number."""

    def __init__(
        self,
        endpoint: str,
        *,
        sndhwm: int = d.PUB_SNDHWM,
        linger_ms: int = d.PUB_LINGER_MS,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, sndhwm)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, d.MAX_SUBSCRIPTION_SIZE)
        self._socket.connect(endpoint)
        self._next_seq: defaultdict[str, int] = defaultdict(int)
        self.sent = 0
        self.dropped = 0
        self.closed = False

    def next_seq(self, topic: str) -> int:
        return self._next_seq.get(topic, 0)

    def publish(self, event: Event) -> bool:
        """Send event with the next sequence number of its topic (event.seq is replaced).
        True when queued, False when dropped."""
        if self.closed:
            raise RuntimeError("publisher is closed")
        topic = event.topic
        seq = self._next_seq[topic]
        self._next_seq[topic] = seq + 1
        return self.send_raw(*encode(msgspec.structs.replace(event, seq=seq)))

    def send_raw(self, topic: bytes, payload: bytes) -> bool:
        """Send a message as is (tests, tools); no sequence number is taken."""
        if self.closed:
            raise RuntimeError("publisher is closed")
        try:
            while True:  # subscriptions forwarded by the broker: read only to keep the queue short
                self._socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass
        try:
            self._socket.send_multipart([topic, payload], zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._socket.close()
        if self._own_context:
            self._context.term()
