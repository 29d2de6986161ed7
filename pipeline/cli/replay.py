"""``orsight replay``: analyse recorded videos, every frame."""
from __future__ import annotations

import dataclasses
import sys

from pipeline.cli.common import EXIT_BAD_INPUT, MODEL_HELP, UsageError, positive_int, resolve_device, writable
from pipeline.cli.live import add_privacy_option


def add_commands(commands) -> None:
    replay = commands.add_parser("replay", help="analyse recorded videos, every frame")
    replay.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files, folders of videos, or folders of images (one recording each)")
    replay.add_argument("--out", required=True, help="one folder per video is written here")
    replay.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="distribute over Ray (a cluster ADDRESS, or a local Ray without one)")
    replay.add_argument("--model", default=None, help=MODEL_HELP)
    replay.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the AI runs")
    replay.add_argument("--batch", type=positive_int, default=None, help="frames per forward pass (default: 1 CPU, 8 CUDA)")
    replay.add_argument("--chunk-frames", type=positive_int, default=None, help="analyse in chunks of about N frames")
    replay.add_argument("--config", default=None, help="YAML file of pipeline settings (see README)")
    replay.add_argument("--calibration", default=None, help="camera calibration YAML: undistort before analysis")
    replay.add_argument("--working-distance", type=float, default=None,
                        help="mm from scope to tissue: with --calibration, distances in mm")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_privacy_option(replay)
    replay.add_argument("--pseudonym-key", default=None, metavar="FILE",
                        help="key naming videos in summaries and reports (default ~/.config/orsight/pseudonym.key, "
                             "made on first use); with --privacy off, videos keep their paths")
    replay.set_defaults(handler=command_replay)


def command_replay(args) -> int:
    from pipeline.cli.live import load_camera, privacy_mode
    from pipeline.stages.privacy import MODEL as PRIVACY_MODEL
    from pipeline.runtime.config import load_config
    from pipeline.runtime.replay import ReplayOptions, replay_videos
    from pipeline.stages.infer import load_model

    writable(args.out, "--out", folder=True)
    config = load_config(args.config)
    config = dataclasses.replace(config, privacy=privacy_mode(args, config))
    device = resolve_device(args.device)
    load_model(args.model, device="cpu")  # a wrong model file fails here, before any work
    options = ReplayOptions(batch=args.batch or (8 if device == "cuda" else 1), chunk_frames=args.chunk_frames,
                            device=device, progress=not args.no_progress, config=config,
                            camera=load_camera(args.calibration, args.working_distance),
                            privacy_model=PRIVACY_MODEL,
                            pseudonym_key=load_key(args.pseudonym_key) if config.privacy != "off" else None)
    use_ray = args.ray is not None
    summaries, errors = replay_videos(args.videos, args.out, args.model, options, use_ray=use_ray,
                                      ray_address=None if args.ray in (None, "local") else args.ray)
    for summary in summaries:
        flag = " PARTIAL" if summary["partial"] else ""
        print(f"{summary['video']}: {summary['frames_analysed']} frames at {summary['throughput_fps']} frames/s, "
              f"alerts {summary['alerts_raised']}{flag}")
    for video, error in errors.items():
        print(f"orsight: error: {video}: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else 0


def load_key(path: str | None) -> bytes:
    """The pseudonym key (made on first use); a key that cannot be read or made is one line, exit 2."""
    from pipeline.core.privacy import pseudonym_key

    try:
        return pseudonym_key(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"pseudonym key: {getattr(error, 'strerror', None) or error}") from None
