"""The event bus (docs/events.md): topics, msgpack codec, broker, publishers and subscribers."""

from smartcity.bus import defaults
from smartcity.bus.broker import Broker, TcpEndpoint
from smartcity.bus.codec import DecodeError, decode, encode, encode_tracks, parse_topic, topic_of
from smartcity.bus.events import (
    ConfigChangedEvent,
    Event,
    HealthEvent,
    IncidentEvent,
    StatsEvent,
    TracksEvent,
)
from smartcity.bus.evidence import EvidenceClient, EvidenceError
from smartcity.bus.publisher import Publisher
from smartcity.bus.sockets import (
    BusSecurityError,
    CurveClient,
    RunDirError,
    ensure_run_dir,
    publisher_endpoint,
    subscriber_endpoint,
)
from smartcity.bus.subscriber import Subscriber, TopicStats

__all__ = [
    "Broker",
    "BusSecurityError",
    "ConfigChangedEvent",
    "CurveClient",
    "DecodeError",
    "Event",
    "EvidenceClient",
    "EvidenceError",
    "HealthEvent",
    "IncidentEvent",
    "Publisher",
    "RunDirError",
    "StatsEvent",
    "Subscriber",
    "TcpEndpoint",
    "TopicStats",
    "TracksEvent",
    "decode",
    "defaults",
    "encode",
    "encode_tracks",
    "ensure_run_dir",
    "parse_topic",
    "publisher_endpoint",
    "subscriber_endpoint",
    "topic_of",
]
