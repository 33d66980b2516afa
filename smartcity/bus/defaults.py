"""Every bus default in one place (DESIGN.md §6): endpoints, queue sizes, time-outs, limits.

The C++ publisher (core_cpp/include/smartcity/publisher.hpp, PublisherOptions) mirrors
PUB_SNDHWM and PUB_LINGER_MS; tests/unit/test_bus_defaults.py checks that they agree.
docs/events.md lists these values for integrators.
"""

from __future__ import annotations

import os
from pathlib import Path

# ---------------------------------------------------------------- schema
#: Version written into every payload's "v" field. Adding a field keeps the version; removing or
#: changing the meaning or type of a field raises it (docs/events.md, "Versioning").
SCHEMA_VERSION = 1

# ---------------------------------------------------------------- endpoints
#: Environment variable naming the run directory (ipc:// sockets live there).
RUN_DIR_ENV = "SMARTCITY_RUN_DIR"
#: Mode of the run directory: only its owner may connect to the sockets inside.
RUN_DIR_MODE = 0o700
#: Socket file names inside the run directory.
XSUB_NAME = "bus-in"  # publishers connect here
XPUB_NAME = "bus-out"  # subscribers connect here
EVIDENCE_NAME = "evidence"  # the engine's evidence server (ROUTER) binds here
#: Longest ipc:// path (sun_path is 108 bytes with the terminating NUL on Linux).
MAX_IPC_PATH = 107
#: The optional integrator endpoint: off unless asked for. Port 0 picks a free port.
TCP_BIND_DEFAULT = "tcp://0.0.0.0:5570"
#: ZAP domain of the TCP endpoint.
ZAP_DOMAIN = "smartcity"


def default_run_dir() -> Path:
    """$SMARTCITY_RUN_DIR, else $XDG_RUNTIME_DIR/smartcity, else /tmp/smartcity-<uid>."""
    env = os.environ.get(RUN_DIR_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "smartcity"
    return Path(f"/tmp/smartcity-{os.getuid()}")


# ---------------------------------------------------------------- queues and time-outs
#: Messages the core's publisher queues towards the broker before a send fails (drop counted).
PUB_SNDHWM = 10000
#: How long closing a publisher may wait to flush what is queued, ms.
PUB_LINGER_MS = 200
#: Broker queues, per peer, in messages (both directions of the proxy).
BROKER_HWM = 100000
#: Subscriber receive queue, messages. Beyond it the broker drops for this subscriber: gaps.
SUB_RCVHWM = 100000
#: Linger of sockets that only read (subscribers, broker), ms.
READER_LINGER_MS = 0
#: Default time-out of Subscriber.recv and of iteration, seconds.
RECV_TIMEOUT_S = 1.0
#: How long the broker's stop waits for its proxy threads, seconds.
BROKER_STOP_TIMEOUT_S = 5.0
#: Interval of health.<camera> messages, seconds.
HEALTH_INTERVAL_S = 1.0
#: ZMTP heartbeats on TCP connections (dead integrators are noticed and their queues freed), ms.
HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
HEARTBEAT_TTL_MS = 6000

# ---------------------------------------------------------------- limits on untrusted input
#: ZMQ_MAXMSGSIZE on every socket that reads messages: larger frames close the connection.
MAX_MSG_SIZE = 1 << 20
#: ZMQ_MAXMSGSIZE on the broker's XPUB sockets, which read only subscription frames.
MAX_SUBSCRIPTION_SIZE = 1024
#: Longest topic, bytes.
MAX_TOPIC_BYTES = 256
#: msgpack unpacker limits.
MAX_BUFFER_SIZE = MAX_MSG_SIZE  # whole payload, bytes
MAX_STR_LEN = 64 * 1024  # one string, bytes
MAX_BIN_LEN = 0  # no binary fields in schema 1
MAX_EXT_LEN = 0  # no extension types in schema 1
MAX_ARRAY_LEN = 65536  # one array (the tracks of a frame, ids of an incident)
MAX_MAP_LEN = 256  # one map (health has 28 keys)
#: Most tracks in one tracks message, and most ids in one incident.
MAX_TRACKS = 10000
#: Longest camera id, bytes (the C++ publisher refuses longer ids as well).
MAX_CAMERA_BYTES = 200
#: Most topics a subscriber keeps separate gap statistics for; more are counted under "*".
MAX_TOPICS_TRACKED = 4096

# ---------------------------------------------------------------- evidence server (engine)
#: Schema version of evidence requests and replies ("v").
EVIDENCE_VERSION = 1
#: ZMQ_MAXMSGSIZE of the evidence server's ROUTER: larger frames close the connection (the
#: client sees a time-out). Requests up to this size get an error reply when they are too big.
EVIDENCE_MAX_MSG_SIZE = 1 << 20
#: Largest request payload the server reads, bytes (a request is a small map).
EVIDENCE_MAX_REQUEST_BYTES = 4096
#: Most envelope frames (routing ids) in front of a request.
EVIDENCE_MAX_FRAMES = 4
#: msgpack limits on requests: strings, arrays, maps; no bin or ext.
EVIDENCE_MAX_STR_LEN = 256
EVIDENCE_MAX_ARRAY_LEN = 16
EVIDENCE_MAX_MAP_LEN = 16
#: Longest request id (when a string), bytes.
EVIDENCE_MAX_ID_BYTES = 128
#: Largest reply (JPEG or MP4 included), bytes; a bigger clip is refused (ask for less).
EVIDENCE_MAX_REPLY_BYTES = 64 << 20
#: Longest a clip request may wait for its t1 to reach the packet ring, seconds.
EVIDENCE_MAX_WAIT_S = 30.0
#: Most clip requests waiting at once; more are refused.
EVIDENCE_MAX_PENDING = 64
#: How often the server looks at waiting requests and its stop flag, seconds.
EVIDENCE_POLL_S = 0.05
#: Longest clip, seconds of stream time (the ring holds pre_event_s, at most 600 s).
EVIDENCE_MAX_CLIP_S = 600.0
#: JPEG quality of snapshots (cv2.IMWRITE_JPEG_QUALITY).
EVIDENCE_JPEG_QUALITY = 90
#: Default time-out of EvidenceClient.snapshot; clip waits wait_s plus this.
EVIDENCE_TIMEOUT_S = 10.0
