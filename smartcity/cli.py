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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
