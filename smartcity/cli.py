"""`smartcity ...`: the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from smartcity import _core

DEFAULT_CLIP = Path(__file__).resolve().parent.parent / "tests" / "media" / "vtest-h264.mp4"


def _cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(_core.build_info(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.appliance:
        from smartcity import demo_appliance

        return demo_appliance.main(args)
    from smartcity.engine.demo import run_demo

    clip = Path(args.clip)
    if not clip.is_file():
        print(f"smartcity demo: clip not found: {clip}", file=sys.stderr)
        return 2
    return run_demo(
        clip=clip,
        streams=args.streams,
        seconds=30.0 if args.seconds is None else args.seconds,
        analyze_fps=args.analyze_fps,
        max_batch=args.max_batch,
    )


def _cmd_scenarios_list(args: argparse.Namespace) -> int:
    from smartcity import scenarios

    for name in scenarios.library_names():
        sc = scenarios.load(name)
        print(f"{name:34} {sc.preset:18} {sc.seconds:5.0f} s  {sc.description}")
    return 0


def _cmd_scenarios_render(args: argparse.Namespace) -> int:
    from smartcity import scenarios

    try:
        sc = scenarios.load(args.name)
        out = scenarios.render_to_dir(
            sc, args.out, seconds=args.seconds, seed=args.seed, resolution=args.resolution
        )
    except scenarios.ScenarioError as e:
        print(f"smartcity scenarios: {e}", file=sys.stderr)
        return 2
    print(f"{out.video}  ({out.frames} frames)")
    print(out.truth)
    print(out.scenario)
    for inc in out.incidents:
        ids = ",".join(str(i) for i in inc["object_ids"])
        when = f"{inc['start_s']:7.2f}-{inc['end_s']:.2f} s"
        print(f"  expected {inc['type']:26} objects {ids:12} {when}")
    return 0


def _cmd_scenarios_serve(args: argparse.Namespace) -> int:
    import signal
    import time

    from smartcity import scenarios
    from smartcity.scenarios import serve

    reason = serve.gst_rtsp_missing()
    if reason:
        print(f"smartcity scenarios serve: {reason}", file=sys.stderr)
        return 3
    try:
        if args.name.endswith(".mp4") and Path(args.name).is_file():
            video, how = Path(args.name), "as given"
            mount = args.mount or "/" + Path(args.name).stem
        else:
            sc = scenarios.load(args.name)
            video, reused = serve.render_cached(
                sc, args.cache, seconds=args.seconds, seed=args.seed, resolution=args.resolution
            )
            how = "reused" if reused else "rendered"
            mount = args.mount or "/" + sc.name
    except scenarios.ScenarioError as e:
        print(f"smartcity scenarios: {e}", file=sys.stderr)
        return 2
    server = serve.RtspServerProcess(args.port, video, mount=mount, loop=args.loop)
    stop = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
        print(f"{video}  ({how})")
        print(f"serving {server.url()}{'  (looping)' if args.loop else ''}", flush=True)
        deadline = time.monotonic() + args.stop_after if args.stop_after else None
        while not stop and server.running:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not server.running:
            print(
                f"smartcity scenarios serve: the server exited\n{server.log_tail()}",
                file=sys.stderr,
            )
            return 1
    except serve.ServeError as e:
        print(f"smartcity scenarios serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        server.close()
        signal.signal(signal.SIGTERM, old)
    return 0


def _cmd_scenarios_dataset(args: argparse.Namespace) -> int:
    from smartcity import scenarios
    from smartcity.scenarios import dataset

    try:
        if args.scenarios == "all":
            names = scenarios.library_names()
        else:
            names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
        scens = [scenarios.load(n) for n in names]
        seeds = dataset.parse_seeds(args.seeds)
        rules = dataset.LabelRules(
            min_box_px=args.min_box_px,
            min_visible_px=args.min_visible_px,
            max_occlusion=args.max_occlusion,
            max_truncation=args.max_truncation,
        )
        summary = dataset.write_dataset(
            args.out,
            scens,
            seeds,
            frames_per_scene=args.frames_per_scene,
            resolution=args.resolution,
            image_format=args.format,
            rules=rules,
            val=args.val,
            test=args.test,
            progress=None if args.quiet else lambda m: print(m, flush=True),
        )
    except scenarios.ScenarioError as e:
        print(f"smartcity scenarios: {e}", file=sys.stderr)
        return 2
    for split in dataset.SPLITS:
        seeds_in = [s for s, sp in summary.seeds.items() if sp == split]
        print(
            f"{split:5} {summary.images[split]:6} images {summary.labels[split]:7} labels"
            f"  seeds {seeds_in}"
        )
    print(f"left out (too small or hidden): {summary.skipped}")
    print(summary.out / "data.yaml")
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading
    import time

    from smartcity.bus import Broker, publisher_endpoint
    from smartcity.engine.process import Engine, EngineConfigError, load_engine_config
    from smartcity.engine.reload import ReloadRequests

    logging.basicConfig(level=logging.INFO, format="%(levelname)s - smartcity engine: %(message)s")
    try:
        settings = load_engine_config(args.config)
    except EngineConfigError as e:
        print(f"smartcity engine: {e}", file=sys.stderr)
        return 2
    # Handlers first: a SIGHUP or SIGTERM that comes while the engine starts is not lost.
    stop = threading.Event()
    stopping_since: list[float] = []
    requests = ReloadRequests()

    def on_stop(sig: int, _frame: object) -> None:
        if not stopping_since:
            stopping_since.append(time.monotonic())
        stop.set()

    def on_reload(_sig: int, _frame: object) -> None:
        requests.request("SIGHUP")

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    broker = Broker(args.run_dir).start() if args.with_broker else None
    try:
        try:
            evidence: str | None = "auto"
            if args.evidence_name is not None:
                from smartcity.bus.evidence import named_evidence_endpoint

                evidence = named_evidence_endpoint(args.run_dir, args.evidence_name)
            engine = Engine(
                settings,
                publisher_endpoint(args.run_dir),
                config_path=args.config,
                requests=requests,
                evidence_endpoint=evidence,
            )
        except (EngineConfigError, ValueError, OSError) as e:
            print(f"smartcity engine: {e}", file=sys.stderr)
            return 2
        cams = engine.settings.cameras
        names = ", ".join(c.camera_id for c in cams)
        stored = sum(c.from_store for c in cams)
        from_store = f" ({stored} from the store)" if settings.cameras_from_store else ""
        model = settings.model
        print(f"smartcity engine: {len(cams)} cameras ({names}){from_store}, model {model}")
        sys.stdout.flush()
        try:
            counters = engine.run(stop, seconds=args.seconds)
        finally:
            engine.close()
        print(
            f"smartcity engine: {counters.batches} batches, {counters.frames} frames, "
            f"{counters.tracks_published} tracks messages ({counters.tracks_dropped} dropped), "
            f"reloads: {counters.reloads} applied, {counters.reloads_refused} refused"
        )
    finally:
        if broker is not None:
            broker.stop()
    if stopping_since:
        print(
            f"smartcity engine: stopped {time.monotonic() - stopping_since[0]:.2f} s "
            "after the signal"
        )
    return 0


def _cmd_incidents(args: argparse.Namespace) -> int:
    import signal
    import threading

    from smartcity.bus import Broker
    from smartcity.engine.reload import ReloadRequests
    from smartcity.incidents.config import IncidentsConfigError, load_incidents_config
    from smartcity.incidents.service import IncidentsService
    from smartcity.store import StoreError

    try:
        settings = load_incidents_config(args.config)
    except IncidentsConfigError as e:
        print(f"smartcity incidents: {e}", file=sys.stderr)
        return 2
    # Handlers first: a SIGHUP that comes while the service starts is not lost.
    stop = threading.Event()
    requests = ReloadRequests()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: requests.request("SIGHUP"))
    broker = Broker(args.run_dir).start() if args.with_broker else None
    try:
        try:
            service = IncidentsService(
                settings, args.run_dir, config_path=args.config, requests=requests
            )
        except (StoreError, ValueError, OSError) as e:
            print(f"smartcity incidents: {e}", file=sys.stderr)
            return 2
        cams = service.settings.cameras
        names = ", ".join(c.cam for c in cams)
        stored = sum(c.from_store for c in cams)
        from_store = f" ({stored} from the store)" if settings.cameras_from_store else ""
        print(f"smartcity incidents: {len(cams)} cameras ({names}){from_store}, {service.store!r}")
        sys.stdout.flush()
        try:
            c = service.run(stop, seconds=args.seconds)
        finally:
            service.close()
        opened = ", ".join(f"{k} {v}" for k, v in sorted(c.by_rule.items())) or "none"
        print(
            f"smartcity incidents: {c.tracks_messages} tracks messages, incidents opened: "
            f"{opened}; {c.buckets_written} traffic buckets; {c.store_errors} store errors"
        )
    finally:
        if broker is not None:
            broker.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartcity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print what this build holds (versions, CUDA, compiler)")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser("demo", help="run the core on looping copies of the bundled clip")
    demo.add_argument("--clip", default=str(DEFAULT_CLIP), help="video file to loop")
    demo.add_argument("--streams", type=int, default=8, help="number of looping streams")
    demo.add_argument(
        "--seconds", type=float, default=None, help="how long to run (30; --appliance: until ^C)"
    )
    demo.add_argument("--analyze-fps", type=float, default=5.0, help="frames sampled per stream")
    demo.add_argument("--max-batch", type=int, default=8, help="frames per batch")
    demo.add_argument(
        "--appliance",
        action="store_true",
        help="the whole appliance: 8 cameras, incidents, api and console (docs/operations.md)",
    )
    demo.add_argument("--dir", default="demo-data", help="--appliance: configuration and data")
    demo.add_argument("--port", type=int, default=8080, help="--appliance: the api's port")
    demo.add_argument("--rtsp-port", type=int, default=8554, help="--appliance: first RTSP port")
    demo.add_argument("--cache", default=None, help="--appliance: where scene renders are kept")
    demo.set_defaults(func=_cmd_demo)

    scen = sub.add_parser("scenarios", help="synthetic traffic scenes with ground truth")
    scen_sub = scen.add_subparsers(dest="scenarios_command", required=True)
    scen_list = scen_sub.add_parser("list", help="the named scenarios of the library")
    scen_list.set_defaults(func=_cmd_scenarios_list)
    render = scen_sub.add_parser(
        "render", help="render NAME (or a .yaml file) to NAME.mp4 + truth files in --out"
    )
    render.add_argument("name", help="library scenario name or path to a scenario .yaml")
    render.add_argument("--out", required=True, help="output directory")
    render.add_argument("--seconds", type=float, default=None, help="render only this long")
    render.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    render.add_argument("--resolution", choices=["640x360", "1280x720", "1920x1080"], default=None)
    render.set_defaults(func=_cmd_scenarios_render)
    srv = scen_sub.add_parser(
        "serve",
        help="render NAME (or reuse the render) and stream it over RTSP on loopback",
        description="Streams a scenario's H.264 over RTSP (gst-rtsp-server through Debian's "
        "/usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0) until Ctrl-C.",
    )
    srv.add_argument("name", help="library scenario, scenario .yaml, or a rendered .mp4")
    srv.add_argument("--port", type=int, default=8554, help="RTSP port (default 8554)")
    srv.add_argument("--mount", default=None, help="mount point (default /NAME)")
    srv.add_argument("--seconds", type=float, default=None, help="render only this long")
    srv.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    srv.add_argument("--resolution", choices=["640x360", "1280x720", "1920x1080"], default=None)
    srv.add_argument("--loop", action="store_true", help="play the scene forever")
    srv.add_argument(
        "--cache", default=None, help="where renders are kept (default ~/.cache/smartcity/...)"
    )
    srv.add_argument("--stop-after", type=float, default=None, help="exit after this many s")
    srv.set_defaults(func=_cmd_scenarios_serve)
    ds = scen_sub.add_parser(
        "dataset", help="images + YOLO labels for detector training, split by seed"
    )
    ds.add_argument("--out", required=True, help="output directory")
    ds.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    ds.add_argument("--frames-per-scene", type=int, default=20, help="frames per scene and seed")
    ds.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 1,4,7 (default 0-9)")
    ds.add_argument("--resolution", choices=["640x360", "1280x720", "1920x1080"], default="640x360")
    ds.add_argument("--format", choices=["jpg", "png"], default="jpg")
    ds.add_argument("--val", type=float, default=0.1, help="fraction of the seeds for val")
    ds.add_argument("--test", type=float, default=0.1, help="fraction of the seeds for test")
    ds.add_argument("--min-box-px", type=float, default=6.0, help="shorter box side, pixels")
    ds.add_argument("--min-visible-px", type=int, default=40, help="visible silhouette pixels")
    ds.add_argument("--max-occlusion", type=float, default=0.7)
    ds.add_argument("--max-truncation", type=float, default=0.7)
    ds.add_argument("--quiet", action="store_true")
    ds.set_defaults(func=_cmd_scenarios_dataset)
    engine = sub.add_parser(
        "engine", help="run a camera set: decode, detect, track, publish on the bus"
    )
    engine.add_argument("--config", required=True, help="engine YAML (docs/events.md)")
    engine.add_argument("--run-dir", default=None, help="bus run directory (0700)")
    engine.add_argument("--seconds", type=float, default=None, help="stop after this long")
    engine.add_argument(
        "--with-broker", action="store_true", help="also run the bus broker in this process"
    )
    engine.add_argument(
        "--evidence-name",
        default=None,
        help="a second engine in the same run dir: its evidence server binds "
        "ipc://<run dir>/evidence.NAME (the API and the incidents service ask every engine)",
    )
    engine.set_defaults(func=_cmd_engine)

    inc = sub.add_parser(
        "incidents", help="run the incident rules, evidence and traffic statistics on the bus"
    )
    inc.add_argument("--config", required=True, help="incidents YAML (docs/incidents.md)")
    inc.add_argument("--run-dir", default=None, help="bus run directory (0700)")
    inc.add_argument("--seconds", type=float, default=None, help="stop after this long")
    inc.add_argument(
        "--with-broker", action="store_true", help="run the bus broker in this process"
    )
    inc.set_defaults(func=_cmd_incidents)

    from smartcity.engine.models_cli import add_models_parser

    add_models_parser(sub)

    from smartcity.api.cli import add_api_parsers
    from smartcity.doctor import add_parser as add_doctor_parser
    from smartcity.supervisor import add_parser as add_run_parser

    add_api_parsers(sub)
    add_doctor_parser(sub)
    add_run_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
