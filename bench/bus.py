"""The event bus: a tracks message of 40 tracks from the core's C++ publisher through the broker to
a Python Subscriber that decodes it, against a pyzmq + msgpack publisher in Python and a plain
pyzmq SUB + msgpack.unpackb receiver (the peer), measured in one run.

Three processes: this one runs the broker (smartcity.bus.Broker, its proxy thread in C); a sender
and a receiver run in worker processes of their own (spawned once, given one job after the other
over a pipe), so neither shares a GIL with the other or with the broker. Contenders:

- ours:  smartcity._core.Publisher.publish_tracks -> broker -> smartcity.bus.Subscriber.recv
         (TracksEvent: every field checked, numpy arrays);
- peer:  pyzmq PUB + msgpack.Packer (same keys and row layout, floats as float32) -> broker ->
         pyzmq SUB + msgpack.unpackb;
- mixed: the core's publisher -> broker -> pyzmq SUB + msgpack.unpackb: isolates the publisher
         and broker from the Python decode;
- direct: the peer's PUB bound on an ipc:// endpoint, the peer's SUB connected to it, no broker:
         peer / direct is what the broker hop costs (printed as (b'));
- proxy: the peer through a plain zmq.proxy thread in this process with the Broker's socket
         options (the Broker runs zmq.proxy_steerable); --proxy-io-threads and
         --proxy-immediate vary it, so a broker setting is measured against the Broker in one run.

Figures: (a) messages received and decoded per second with the sender sending as fast as it can
(best of --reps, contenders alternating); (b) p50/p99/max latency from publish to the decoded
message in the receiver's hand at a paced --rate messages/s; the sender stamps
time.perf_counter_ns() (CLOCK_MONOTONIC, shared by the processes of one machine) into the
message's t_ns field just before the publish call, the receiver reads the clock once the message
is decoded; (c) loss at --loss-rate messages/s sustained for --loss-seconds: received, sent,
gaps from Subscriber.stats, the publisher's own drop counter, and how long the receiver took to
drain what was queued after the sender stopped.

Run: .venv/bin/python bench/bus.py [--quick] [--phases abc] [--contenders ...] [--loss-seconds S]
[--json-out PATH]. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_TRACKS = 40
CAM = "bench"  # measured messages: topic tracks.bench
WARM_CAM = "warm"  # warm-up messages (until the subscription has reached the publisher)
SNDHWM = 10000  # both publishers (the core's default, smartcity.bus.defaults.PUB_SNDHWM)
IDLE_END_S = 0.5  # the receiver ends a job when nothing arrived for this long after the sender
#: name: (sender, receiver, route, description). Routes: "broker" (smartcity.bus.Broker),
#: "proxy" (a plain zmq.proxy thread with the Broker's socket options, --proxy-* vary it),
#: "direct" (the sender's PUB binds, the receiver's SUB connects to it: no broker).
CONTENDERS = {
    "ours": ("core", "sub", "broker", "core Publisher -> broker -> smartcity Subscriber"),
    "peer": ("pyzmq", "raw", "broker", "pyzmq PUB + msgpack -> broker -> SUB + unpackb"),
    "mixed": ("core", "raw", "broker", "core Publisher -> broker -> SUB + unpackb"),
    "direct": ("pyzmq", "raw", "direct", "pyzmq PUB (bind) + msgpack -> SUB + unpackb"),
    "proxy": ("pyzmq", "raw", "proxy", "pyzmq PUB + msgpack -> zmq.proxy -> SUB + unpackb"),
}


# --------------------------------------------------------------------------- the message


def make_tracks(n: int = N_TRACKS, seed: int = 5) -> dict[str, np.ndarray]:
    """40 plausible tracks of a calibrated 768x576 camera (ground position and speed known)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 700, (n, 2)).astype(np.float32)
    wh = rng.uniform(10, 120, (n, 2)).astype(np.float32)
    return {
        "track_id": (np.arange(n) + 1000).astype(np.int64),
        "xyxy": np.concatenate([xy, xy + wh], axis=1),
        "score": rng.uniform(0.3, 1.0, n).astype(np.float32),
        "class_id": rng.integers(0, 6, n).astype(np.int32),
        "ground_xy": rng.uniform(0, 80, (n, 2)).astype(np.float32),
        "speed_kmh": rng.uniform(0, 60, n).astype(np.float32),
    }


class CoreSender:
    """smartcity._core.Publisher: packs in C++, XPUB with XPUB_NODROP, non-blocking."""

    def __init__(self, endpoint: str) -> None:
        from smartcity import _core

        self.pub = _core.Publisher(endpoint, sndhwm=SNDHWM)
        t = make_tracks()
        self.args = (t["track_id"], t["xyxy"], t["score"], t["class_id"])
        self.extra = (t["ground_xy"], t["speed_kmh"])

    def send(self, cam: str, frame: int, t_ns: int) -> bool:
        a, e = self.args, self.extra
        return self.pub.publish_tracks(
            cam, frame, frame * 0.2, t_ns, 768, 576, a[0], a[1], a[2], a[3], e[0], e[1]
        )

    def counters(self) -> dict[str, int]:
        return {"sent": self.pub.sent, "dropped": self.pub.dropped}

    def close(self) -> None:
        self.pub.close()


class PyzmqSender:
    """The peer: a pyzmq PUB socket and msgpack.Packer; the same map, keys in the same order,
    rows [id, cls, score, x1, y1, x2, y2, gx, gy, kmh] with float32 floats, sequence numbers per
    topic. A PUB socket drops silently when its queue is full; sends never block."""

    def __init__(self, endpoint: str, bind: bool = False) -> None:
        import msgpack
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, SNDHWM)
        self.sock.setsockopt(zmq.LINGER, 200)
        if bind:  # route "direct": subscribers connect straight to this socket
            self.sock.bind(endpoint)
        else:
            self.sock.connect(endpoint)
        self.packer = msgpack.Packer(use_bin_type=True, use_single_float=True)
        self.rows = peer_rows()
        self.seq: dict[str, int] = {}
        self.sent = 0

    def send(self, cam: str, frame: int, t_ns: int) -> bool:
        seq = self.seq.get(cam, 0)
        self.seq[cam] = seq + 1
        payload = peer_payload(self.packer, self.rows, cam, seq, frame, t_ns)
        self.sock.send_multipart([b"tracks." + cam.encode(), payload], self.zmq.NOBLOCK)
        self.sent += 1
        return True

    def counters(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": 0}  # PUB drops are silent

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


def peer_rows() -> list[list[Any]]:
    """The tracks of make_tracks() as msgpack rows [id, cls, score, x1, y1, x2, y2, gx, gy, kmh]."""
    t = make_tracks()
    return [
        [i, c, s, *b, *g, k]
        for i, c, s, b, g, k in zip(
            t["track_id"].tolist(),
            t["class_id"].tolist(),
            t["score"].tolist(),
            t["xyxy"].tolist(),
            t["ground_xy"].tolist(),
            t["speed_kmh"].tolist(),
            strict=True,
        )
    ]


def peer_payload(
    packer: Any, rows: list[list[Any]], cam: str, seq: int, frame: int, t_ns: int
) -> bytes:
    """The peer's payload: the core's map, keys in the same order."""
    return packer.pack(  # type: ignore[no-any-return]
        {
            "v": 1,
            "cam": cam,
            "seq": seq,
            "frame": frame,
            "pts": frame * 0.2,
            "t_ns": t_ns,
            "w": 768,
            "h": 576,
            "tracks": rows,
        }
    )


def decode_cost(n: int = 2000) -> dict[str, float]:
    """µs to decode one measured payload in this process: smartcity.bus.decode (the
    Subscriber's decoder) and msgpack.unpackb (the peer's), best of 3 batches of n."""
    import msgpack

    from smartcity.bus.codec import decode, encode_tracks

    topic, payload = encode_tracks(
        CAM, 1, frame=1, pts=0.2, t_ns=time.perf_counter_ns(), w=768, h=576, **make_tracks()
    )
    out = {}
    for name, fn in (
        ("smartcity.bus.decode", lambda: decode(topic, payload)),
        ("msgpack.unpackb", lambda: msgpack.unpackb(payload)),
    ):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        out[name] = best
    return out


def payload_sizes() -> dict[str, int]:
    """Bytes of one measured message's payload, both encoders (the same layout)."""
    import msgpack

    from smartcity.bus.codec import encode_tracks

    t = make_tracks()
    now = time.perf_counter_ns()
    _, ours = encode_tracks(CAM, 12345, frame=12345, pts=2469.0, t_ns=now, w=768, h=576, **t)
    packer = msgpack.Packer(use_bin_type=True, use_single_float=True)
    peer = peer_payload(packer, peer_rows(), CAM, 12345, 12345, now)
    return {"ours": len(ours), "peer": len(peer)}


# --------------------------------------------------------------------------- workers


def sender_main(conn: Connection) -> None:
    """Sender worker: one job per command. Warms up (a message on tracks.warm every 5 ms) until
    the parent says go, then sends tracks.bench: as fast as it can (rate 0) or paced. The job
    names the endpoint and whether to bind it (route "direct") or connect to it."""
    while True:
        job = conn.recv()
        if job is None:
            return
        endpoint = job["endpoint"]
        s: CoreSender | PyzmqSender
        if job["sender"] == "core":
            if job["bind"]:
                raise ValueError("the core's Publisher only connects: no direct route")
            s = CoreSender(endpoint)
        else:
            s = PyzmqSender(endpoint, bind=job["bind"])
        try:
            k = 0
            while not conn.poll(0.005):
                s.send(WARM_CAM, k, time.perf_counter_ns())
                k += 1
            conn.recv()  # "go"
            base = s.counters()
            rate, seconds = job["rate"], job["seconds"]
            clock = time.perf_counter_ns
            t0 = time.perf_counter()
            end = t0 + seconds
            n = 0
            if rate <= 0:
                while True:
                    for _ in range(256):
                        s.send(CAM, n, clock())
                        n += 1
                    if time.perf_counter() >= end:
                        break
            else:
                # Paced: send what is due, sleep in between; at high rates this sends small
                # bursts every half millisecond, at 1,000/s one message at a time.
                period = 1.0 / rate
                total = int(rate * seconds)
                while n < total:
                    now = time.perf_counter()
                    due = min(total, int((now - t0) / period) + 1)
                    while n < due:
                        s.send(CAM, n, clock())
                        n += 1
                    nxt = t0 + n * period
                    delay = nxt - time.perf_counter()
                    if delay > 0:
                        time.sleep(min(delay, 0.0005) if rate > 2000 else delay)
            wall = time.perf_counter() - t0
            c = s.counters()
            conn.send(
                {
                    "attempted": n,
                    "sent": c["sent"] - base["sent"],
                    "dropped": c["dropped"] - base["dropped"],
                    "wall_s": wall,
                }
            )
        finally:
            s.close()


def receiver_main(conn: Connection) -> None:
    """Receiver worker: one job per command, with a smartcity Subscriber ("sub") or a plain
    pyzmq SUB + msgpack.unpackb ("raw"). Reports counts, first/last receipt times, latencies
    (perf_counter_ns at decode minus the t_ns stamped at publish) and the gap statistics."""
    import msgpack
    import zmq

    from smartcity.bus import Subscriber

    while True:
        job = conn.recv()
        if job is None:
            return
        mode = job["receiver"]
        endpoint = job["endpoint"]
        lat = np.zeros(job["max_latencies"], np.int64)
        nlat = 0
        count = 0
        t_first = t_last = 0
        seq_first = seq_last = -1
        warm_seen = False
        sender_done_at: float | None = None
        drain_limit = job["drain_limit_s"]
        clock = time.perf_counter_ns
        stats: dict[str, Any] = {}
        if mode == "sub":
            sub = Subscriber(endpoint, ["tracks."])
            conn.send("ready")
            while True:
                ev = sub.recv(timeout_s=0.05)
                if ev is None:
                    pass
                elif ev.cam == CAM:  # type: ignore[union-attr]
                    now = clock()
                    if count == 0:
                        t_first = now
                        seq_first = ev.seq
                    t_last = now
                    seq_last = ev.seq
                    if nlat < len(lat):
                        lat[nlat] = now - ev.t_ns  # type: ignore[union-attr]
                        nlat += 1
                    count += 1
                    if count & 1023:
                        continue  # look at the pipe once in 1,024 messages while busy
                elif not warm_seen:
                    warm_seen = True
                    conn.send("warm")
                if conn.poll(0):
                    conn.recv()  # "sender done"
                    sender_done_at = time.perf_counter()
                if sender_done_at is not None:
                    idle = (clock() - max(t_last, 0)) / 1e9
                    waited = time.perf_counter() - sender_done_at
                    if (ev is None and idle > IDLE_END_S) or waited > drain_limit:
                        break
            st = sub.stats.get(f"tracks.{CAM}")
            if st is not None:
                stats = {
                    "received": st.received,
                    "gaps": st.gaps,
                    "restarts": st.restarts,
                    "decode_errors": st.decode_errors,
                    "first_seq": st.first_seq,
                    "last_seq": st.last_seq,
                }
            sub.close()
        else:
            ctx = zmq.Context()
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 100000)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SUBSCRIBE, b"tracks.")
            sock.connect(endpoint)
            topic_bench = b"tracks." + CAM.encode()
            unpackb = msgpack.unpackb
            conn.send("ready")
            gaps = 0
            while True:
                got = sock.poll(50)
                if got:
                    topic, payload = sock.recv_multipart()
                    m = unpackb(payload)
                    if topic == topic_bench:
                        now = clock()
                        seq = m["seq"]
                        if count == 0:
                            t_first = now
                            seq_first = seq
                        elif seq > seq_last:
                            gaps += seq - seq_last - 1
                        t_last = now
                        seq_last = seq
                        if nlat < len(lat):
                            lat[nlat] = now - m["t_ns"]
                            nlat += 1
                        count += 1
                        if count & 1023:
                            continue
                    elif not warm_seen:
                        warm_seen = True
                        conn.send("warm")
                if conn.poll(0):
                    conn.recv()
                    sender_done_at = time.perf_counter()
                if sender_done_at is not None:
                    idle = (clock() - max(t_last, 0)) / 1e9
                    waited = time.perf_counter() - sender_done_at
                    if (not got and idle > IDLE_END_S) or waited > drain_limit:
                        break
            stats = {"received": count, "gaps": gaps, "first_seq": seq_first}
            sock.close()
            ctx.term()
        conn.send(
            {
                "count": count,
                "t_first_ns": t_first,
                "t_last_ns": t_last,
                "seq_first": seq_first,
                "seq_last": seq_last,
                "latencies_ns": lat[:nlat],
                "stats": stats,
                "drain_s": 0.0
                if sender_done_at is None
                else max(0.0, t_last / 1e9 - sender_done_at),
            }
        )


class PlainProxy:
    """Route "proxy": zmq.proxy (not steerable) between an XSUB and an XPUB in a thread of this
    process, with the Broker's socket options, on ipc:// endpoints in run_dir. io_threads and
    immediate (ZMQ_IMMEDIATE on both sockets) are the knobs measured against the Broker."""

    def __init__(self, run_dir: str, hwm: int, io_threads: int = 1, immediate: bool = False):
        import threading

        import zmq

        from smartcity.bus import defaults as d
        from smartcity.bus.sockets import set_reader_options

        self.zmq = zmq
        self.ctx = zmq.Context(io_threads=io_threads)
        self.xsub_endpoint = f"ipc://{run_dir}/proxy-in"
        self.xpub_endpoint = f"ipc://{run_dir}/proxy-out"
        xsub = self.ctx.socket(zmq.XSUB)
        set_reader_options(xsub, rcvhwm=hwm)
        xsub.setsockopt(zmq.SNDHWM, hwm)
        xpub = self.ctx.socket(zmq.XPUB)
        xpub.setsockopt(zmq.SNDHWM, hwm)
        xpub.setsockopt(zmq.LINGER, d.READER_LINGER_MS)
        xpub.setsockopt(zmq.MAXMSGSIZE, d.MAX_SUBSCRIPTION_SIZE)
        if immediate:
            xsub.setsockopt(zmq.IMMEDIATE, 1)
            xpub.setsockopt(zmq.IMMEDIATE, 1)
        xsub.bind(self.xsub_endpoint)
        xpub.bind(self.xpub_endpoint)
        self.thread = threading.Thread(target=self._run, args=(xsub, xpub), daemon=True)
        self.thread.start()

    def _run(self, xsub: Any, xpub: Any) -> None:
        try:
            self.zmq.proxy(xsub, xpub)
        except self.zmq.ContextTerminated:
            pass
        finally:
            xsub.close(linger=0)
            xpub.close(linger=0)

    def stop(self) -> None:
        self.ctx.term()  # the proxy returns with ETERM and closes its sockets
        self.thread.join(5)


class Routes:
    """Where the sender and the receiver of a contender meet: (sender endpoint, bind?, receiver
    endpoint) for each route."""

    def __init__(self, run_dir: str, broker: Any, proxy: PlainProxy | None) -> None:
        self.run_dir = run_dir
        self.broker = broker
        self.proxy = proxy
        self.n_direct = 0

    def endpoints(self, route: str) -> tuple[str, bool, str]:
        if route == "broker":
            return self.broker.xsub_endpoint, False, self.broker.xpub_endpoint
        if route == "proxy":
            assert self.proxy is not None
            return self.proxy.xsub_endpoint, False, self.proxy.xpub_endpoint
        if route == "direct":  # a fresh socket file per job: the last job's sender unbound
            self.n_direct += 1
            ep = f"ipc://{self.run_dir}/direct-{self.n_direct}"
            return ep, True, ep
        raise ValueError(f"unknown route {route!r}")


class Workers:
    def __init__(self, routes: Routes) -> None:
        ctx = mp.get_context("spawn")
        self.routes = routes
        self.s_conn, s_child = ctx.Pipe()
        self.r_conn, r_child = ctx.Pipe()
        self.sender = ctx.Process(target=sender_main, args=(s_child,), daemon=True)
        self.receiver = ctx.Process(target=receiver_main, args=(r_child,), daemon=True)
        self.sender.start()
        self.receiver.start()

    def job(
        self,
        contender: str,
        rate: float,
        seconds: float,
        max_latencies: int = 0,
        drain_limit_s: float = 10.0,
    ) -> dict[str, Any]:
        sender, receiver, route, _ = CONTENDERS[contender]
        s_ep, bind, r_ep = self.routes.endpoints(route)
        self.r_conn.send(
            {
                "receiver": receiver,
                "endpoint": r_ep,
                "max_latencies": max_latencies,
                "drain_limit_s": drain_limit_s,
            }
        )
        if self.r_conn.recv() != "ready":
            raise RuntimeError("receiver worker failed")
        self.s_conn.send(
            {"sender": sender, "endpoint": s_ep, "bind": bind, "rate": rate, "seconds": seconds}
        )
        if not self.r_conn.poll(30):
            raise RuntimeError("no warm-up message reached the receiver in 30 s")
        self.r_conn.recv()  # "warm"
        time.sleep(0.2)  # let the warm-up messages in flight drain
        self.s_conn.send("go")
        if not self.s_conn.poll(seconds + 60):
            raise RuntimeError("sender worker did not finish")
        sent = self.s_conn.recv()
        self.r_conn.send("done")
        if not self.r_conn.poll(drain_limit_s + 60):
            raise RuntimeError("receiver worker did not finish")
        got = self.r_conn.recv()
        return {"contender": contender, "rate": rate, "seconds": seconds, **sent, **got}

    def close(self) -> None:
        for c in (self.s_conn, self.r_conn):
            try:
                c.send(None)
            except OSError:
                pass
        for p in (self.sender, self.receiver):
            p.join(5)
            if p.is_alive():
                p.terminate()


# --------------------------------------------------------------------------- figures


def throughput(r: dict[str, Any]) -> float:
    """Received and decoded messages per second, first to last receipt."""
    dt = (r["t_last_ns"] - r["t_first_ns"]) / 1e9
    return (r["count"] - 1) / dt if dt > 0 and r["count"] > 1 else 0.0


def percentiles(lat_ns: np.ndarray) -> dict[str, float]:
    if len(lat_ns) == 0:
        return {"n": 0, "p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan")}
    us = lat_ns / 1e3
    return {
        "n": int(len(us)),
        "p50_us": float(np.percentile(us, 50)),
        "p90_us": float(np.percentile(us, 90)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
    }


def broker_hop(best_lat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the broker costs at the paced rate: the peer (pyzmq PUB -> our Broker -> SUB) over
    direct (the same PUB bound, the same SUB connected to it), and the plain zmq.proxy over our
    Broker; p50 and p99 of the runs with the lowest p99. "lines" is the printed form."""
    out: dict[str, Any] = {}
    lines: list[str] = []
    pairs = (
        ("peer", "direct", "broker hop: peer (through the Broker) / direct (no broker)"),
        ("proxy", "peer", "zmq.proxy / the Broker (zmq.proxy_steerable)"),
    )
    for a, b, what in pairs:
        if a in best_lat and b in best_lat:
            la, lb = best_lat[a]["lat"], best_lat[b]["lat"]
            r50, r99 = la["p50_us"] / lb["p50_us"], la["p99_us"] / lb["p99_us"]
            out[f"{a}/{b}"] = {"p50_ratio": r50, "p99_ratio": r99}
            lines.append(
                f"   {what}: p50 {la['p50_us']:.0f} / {lb['p50_us']:.0f} µs = {r50:.2f}x, "
                f"p99 {la['p99_us']:.0f} / {lb['p99_us']:.0f} µs = {r99:.2f}x"
            )
    if lines:
        lines.insert(0, "")
        lines.insert(1, "(b') what the broker costs, same sender and receiver")
    out["lines"] = lines
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, short phases, 10 s loss")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of (a) and (b) (best counts)")
    ap.add_argument("--flood-seconds", type=float, default=3.0, help="length of one (a) run")
    ap.add_argument("--rate", type=float, default=1000.0, help="(b) paced rate, messages/s")
    ap.add_argument("--latency-seconds", type=float, default=5.0, help="length of one (b) run")
    ap.add_argument("--loss-rate", type=float, default=10000.0, help="(c) rate, messages/s")
    ap.add_argument("--loss-seconds", type=float, default=60.0, help="(c) duration, s")
    ap.add_argument(
        "--loss-contenders",
        default="ours",
        help="comma-separated contenders of (c): any of --contenders' names (default: ours)",
    )
    ap.add_argument(
        "--contenders",
        default="ours,peer,mixed,direct,proxy",
        help="contenders of (a) and (b): " + ", ".join(CONTENDERS),
    )
    ap.add_argument("--phases", default="abc", help="which of (a), (b), (c) to run (default abc)")
    ap.add_argument(
        "--proxy-io-threads", type=int, default=1, help="route proxy: zmq io_threads (default 1)"
    )
    ap.add_argument(
        "--proxy-immediate", action="store_true", help="route proxy: ZMQ_IMMEDIATE on both sockets"
    )
    ap.add_argument("--json-out", type=Path, help="also write the JSON figures to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.flood_seconds, args.latency_seconds = 1, 2.0, 3.0
        args.loss_seconds = min(args.loss_seconds, 10.0)
    contenders = [c for c in args.contenders.split(",") if c]
    loss_contenders = [c for c in args.loss_contenders.split(",") if c]
    if "c" not in args.phases:
        loss_contenders = []
    if "a" not in args.phases and "b" not in args.phases:
        contenders = []
    for c in contenders + loss_contenders:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c!r} (known: {', '.join(CONTENDERS)})")

    from smartcity.bus import Broker

    ncpu = os.cpu_count()
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ncpu
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    sizes = payload_sizes()
    print(
        f"bench/bus.py  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {platform.node()}  "
        f"CPUs: {ncpu} ({allowed} allowed, nothing pinned), load average {load[0]:.2f}"
    )
    print(
        f"message: tracks.{CAM} with {N_TRACKS} tracks of 10 columns; payload {sizes['ours']} B "
        f"(core publisher's layout, as smartcity.bus.encode_tracks), {sizes['peer']} B (peer)"
    )
    print("latency clock: time.perf_counter_ns (CLOCK_MONOTONIC) stamped into t_ns at publish")
    cost = decode_cost()
    print(
        "decode of one payload in one process: "
        + ", ".join(f"{k} {v:.1f} µs" for k, v in cost.items())
        + f" ({cost['smartcity.bus.decode'] / cost['msgpack.unpackb']:.0f}x)"
    )
    sys.stdout.flush()

    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": ncpu,
        "cpus_allowed": allowed,
        "loadavg": load,
        "payload_bytes": sizes,
        "decode_us": cost,
        "options": vars(args) | {"json_out": str(args.json_out) if args.json_out else None},
    }
    best_tp: dict[str, dict[str, Any]] = {}
    best_lat: dict[str, dict[str, Any]] = {}
    all_p99: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sc-bus-") as run_dir:
        os.chmod(run_dir, 0o700)
        broker = Broker(run_dir).start()
        proxy = None
        if any(CONTENDERS[c][2] == "proxy" for c in contenders + loss_contenders):
            proxy = PlainProxy(
                run_dir, broker.hwm, args.proxy_io_threads, immediate=args.proxy_immediate
            )
        workers = Workers(Routes(run_dir, broker, proxy))
        try:
            # (a) throughput: contenders alternate, order rotating; best rate counts.
            for rep in range(args.reps if "a" in args.phases else 0):
                order = contenders[rep % len(contenders) :] + contenders[: rep % len(contenders)]
                for c in order:
                    r = workers.job(c, 0, args.flood_seconds, drain_limit_s=2.0)
                    r["rate_rx"] = throughput(r)
                    r.pop("latencies_ns")
                    if c not in best_tp or r["rate_rx"] > best_tp[c]["rate_rx"]:
                        best_tp[c] = r
                print(f"  (a) repetition {rep + 1}/{args.reps} done", flush=True)
            # (b) latency at a paced rate: the run with the lowest p99 counts.
            n_lat = int(args.rate * args.latency_seconds) + 10
            for rep in range(args.reps if "b" in args.phases else 0):
                order = contenders[rep % len(contenders) :] + contenders[: rep % len(contenders)]
                for c in order:
                    r = workers.job(c, args.rate, args.latency_seconds, max_latencies=n_lat)
                    r["lat"] = percentiles(r.pop("latencies_ns"))
                    all_p99.setdefault(c, []).append(r["lat"]["p99_us"])
                    if c not in best_lat or r["lat"]["p99_us"] < best_lat[c]["lat"]["p99_us"]:
                        best_lat[c] = r
                print(f"  (b) repetition {rep + 1}/{args.reps} done", flush=True)
            # (c) loss at a sustained rate.
            loss: dict[str, dict[str, Any]] = {}
            for c in loss_contenders:
                print(
                    f"  (c) {c}: {args.loss_rate:g} messages/s for {args.loss_seconds:g} s ...",
                    flush=True,
                )
                r = workers.job(
                    c,
                    args.loss_rate,
                    args.loss_seconds,
                    max_latencies=int(args.loss_rate * args.loss_seconds) + 10,
                    drain_limit_s=max(30.0, 2 * args.loss_seconds),
                )
                r["lat"] = percentiles(r.pop("latencies_ns"))
                loss[c] = r
        finally:
            workers.close()
            if proxy is not None:
                proxy.stop()
            broker.stop()

    # ---------------------------------------------------------------- print
    def label(c: str) -> str:
        text = f"{c}: {CONTENDERS[c][3]}"
        if CONTENDERS[c][2] == "proxy" and (args.proxy_io_threads != 1 or args.proxy_immediate):
            knobs = [f"io_threads {args.proxy_io_threads}"] + ["IMMEDIATE"] * args.proxy_immediate
            text += f" ({', '.join(knobs)})"
        return text

    width = max([50] + [len(label(c)) for c in contenders])
    peer_rx = best_tp.get("peer", {}).get("rate_rx", 0.0)
    if best_tp:
        print()
        print(f"(a) throughput, sender as fast as it can for {args.flood_seconds:g} s, best of "
              f"{args.reps}")  # fmt: skip
        print(
            f"   {'contender':<{width}} {'sent/s':>9} {'recv+dec/s':>11} {'received':>9} "
            f"{'vs peer':>8}"
        )
        for c in contenders:
            r = best_tp[c]
            vs = r["rate_rx"] / peer_rx if peer_rx else float("nan")
            print(
                f"   {label(c):<{width}} {r['sent'] / r['wall_s']:>9.0f} "
                f"{r['rate_rx']:>11.0f} {r['count']:>9} {vs:>7.2f}x"
            )
    if best_lat:
        print()
        print(
            f"(b) latency publish -> decoded in the receiver, paced {args.rate:g} messages/s "
            f"for {args.latency_seconds:g} s, run with the lowest p99 of {args.reps}"
        )
        print(
            f"   {'contender':<{width}} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>9} "
            f"{'recv':>6} {'sent':>6}  p99 of every run, µs"
        )
        for c in contenders:
            r = best_lat[c]
            x = r["lat"]
            print(
                f"   {label(c):<{width}} {x['p50_us']:>8.0f} {x['p90_us']:>8.0f} "
                f"{x['p99_us']:>8.0f} {x['max_us']:>9.0f} {r['count']:>6} {r['sent']:>6}  "
                + " ".join(f"{v:.0f}" for v in all_p99[c])
            )
    broker_cost = broker_hop(best_lat)
    for line in broker_cost.pop("lines", []):
        print(line)
    if loss:
        print()
        print(f"(c) loss at {args.loss_rate:g} messages/s sustained for {args.loss_seconds:g} s")
    for c, r in loss.items():
        st = r["stats"]
        lost = r["sent"] - r["count"]
        achieved = r["sent"] / r["wall_s"] if r["wall_s"] else 0.0
        print(
            f"   {label(c)}\n"
            f"      sent {r['sent']} ({achieved:.0f}/s achieved), publisher dropped "
            f"{r['dropped']}, received {r['count']}, gaps {st.get('gaps')} (Subscriber.stats), "
            f"not received {lost}\n"
            f"      drained {r['drain_s']:.1f} s after the sender stopped; latency p50 "
            f"{r['lat']['p50_us'] / 1e3:.1f} ms, p99 {r['lat']['p99_us'] / 1e3:.1f} ms, max "
            f"{r['lat']['max_us'] / 1e3:.1f} ms"
        )

    goals: dict[str, Any] = {}
    print()
    print("goals")
    if "ours" in best_tp and peer_rx:
        ratio = best_tp["ours"]["rate_rx"] / peer_rx
        goals["throughput_ratio"] = {"value": ratio, "goal": 0.9, "met": ratio >= 0.9}
        print(f"   throughput ours / peer   {ratio:6.2f}x  (goal >= 0.9: {verdict(ratio >= 0.9)})")
    if "ours" in best_lat:
        p99 = best_lat["ours"]["lat"]["p99_us"]
        goals["p99_us"] = {"value": p99, "goal": 200, "met": p99 < 200}
        print(f"   p99 latency ours         {p99:6.0f} µs (goal < 200 µs: {verdict(p99 < 200)})")
    if "ours" in loss:
        r = loss["ours"]
        lost = r["sent"] - r["count"] + r["dropped"]
        ok = lost == 0 and r["stats"].get("gaps", 0) == 0 and r["dropped"] == 0
        goals["loss"] = {"lost": lost, "gaps": r["stats"].get("gaps"), "met": ok}
        print(
            f"   loss ours at {args.loss_rate:g}/s for {args.loss_seconds:g} s: {lost} lost, "
            f"{r['stats'].get('gaps')} gaps (goal: none: {verdict(ok)})"
        )
    report.update(
        {
            "throughput": {
                c: {k: v for k, v in r.items() if k != "stats"} for c, r in best_tp.items()
            },
            "latency": best_lat,
            "latency_p99_every_run_us": all_p99,
            "broker_hop": broker_cost,
            "loss": loss,
            "goals": goals,
        }
    )
    text = json.dumps(report, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
