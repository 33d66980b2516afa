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
    from smartcity.engine.demo import run_demo

    clip = Path(args.clip)
    if not clip.is_file():
        print(f"smartcity demo: clip not found: {clip}", file=sys.stderr)
        return 2
    return run_demo(
        clip=clip,
        streams=args.streams,
        seconds=args.seconds,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartcity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print what this build holds (versions, CUDA, compiler)")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser("demo", help="run the core on looping copies of the bundled clip")
    demo.add_argument("--clip", default=str(DEFAULT_CLIP), help="video file to loop")
    demo.add_argument("--streams", type=int, default=8, help="number of looping streams")
    demo.add_argument("--seconds", type=float, default=30.0, help="how long to run")
    demo.add_argument("--analyze-fps", type=float, default=5.0, help="frames sampled per stream")
    demo.add_argument("--max-batch", type=int, default=8, help="frames per batch")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
