"""``orsight run``, ``display`` and ``demo``: the live path and the OR display."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.cli.common import (
    MODEL_HELP,
    Parser,
    UsageError,
    input_size_arg,
    int_between,
    positive,
    positive_int,
    resolve_device,
    size_arg,
    stop_display,
    writable,
    write_json,
)
from pipeline.core.evidence import UNVALIDATED
from pipeline.core.privacy import MODES
from pipeline.runtime.live import AI_NICENESS, AI_PRIORITY
from pipeline.transport.zeromq import DEFAULT_ENDPOINT, ENCODINGS


def add_commands(commands) -> None:
    run = commands.add_parser("run", help="live pipeline: source -> AI -> ZeroMQ")
    _add_source_options(run)
    run.add_argument("--publish", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    run.add_argument("--secure", default=None, metavar="KEYS",
                     help="CurveZMQ with the keys of `orsight keys` (needed on endpoints other hosts can reach)")
    run.add_argument("--insecure", action="store_true",
                     help="allow an endpoint other hosts can reach without --secure (unencrypted patient video)")
    run.add_argument("--summary", default=None, help="write the run summary as JSON here")
    run.add_argument("--audit-log", default=None, help="append every alert transition to this JSONL file")
    run.add_argument("--record", default=None, metavar="DIR",
                     help="keep the case for replay: the raw input (H.264), each frame's capture time, alerts and "
                          "status (`orsight replay DIR` analyses it on its own times)")
    run.add_argument("--lossless", action="store_true", help="with --record: every pixel as captured (larger files)")
    run.set_defaults(handler=command_run)
    display = commands.add_parser("display", help="OR display: subscribe and show")
    display.add_argument("--connect", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint of `orsight run --publish`")
    display.add_argument("--headless", action="store_true", help="no window (record instead)")
    display.add_argument("--web", action="store_true", help="serve the display to a browser instead of a window")
    display.add_argument("--port", type=int_between(1, 65535), default=8080, help="with --web: the HTTP port")
    display.add_argument("--host", default="127.0.0.1",
                         help="with --web: the address to serve on (loopback: this computer only); every page "
                              "needs the token in the address printed at start")
    display.add_argument("--insecure", action="store_true",
                         help="with --web: allow a --host other computers can reach (plain HTTP, token needed)")
    display.add_argument("--record", default=None, help="write what is shown to this .mp4")
    display.add_argument("--frames", type=positive_int, default=None, help="stop after showing N frames (default: until "
                                                                  "the publisher ends)")
    display.add_argument("--stale-ms", type=float, default=120.0, help="hide masks older than this")
    display.add_argument("--summary", default=None, help="write delays and counts as JSON here")
    display.add_argument("--propagate", action="store_true",
                         help="move each mask with the picture (optical flow) to the frame shown, marked in the corner")
    display.add_argument("--secure", default=None, metavar="KEYS", help="this display's keys, for a --secure publisher")
    display.set_defaults(handler=command_display)
    demo = commands.add_parser("demo", help="phantom through the whole live path and a headless display")
    demo.add_argument("--frames", type=positive_int, default=300, help="frames to capture")
    demo.add_argument("--out", default="demo-out", help="folder for display.mp4, summary.json, audit.jsonl")
    demo.add_argument("--model", default=None, help=MODEL_HELP)
    demo.add_argument("--size", type=size_arg, default=(1280, 720), help="phantom frame size (WxH)")
    demo.add_argument("--source", default="phantom:approach", help="any `run --source` (paced at its own rate)")
    _add_ai_options(demo)
    add_privacy_option(demo)
    demo.set_defaults(handler=command_demo)
    bridge = commands.add_parser("bridge", help="re-send the stream to other tools")
    kinds = bridge.add_subparsers(dest="kind", required=True, parser_class=Parser)
    igtl = kinds.add_parser("igtl", help="OpenIGTLink for 3D Slicer: video and labels as IMAGE, alerts as STRING, "
                                         "the closest pair as POINT")
    igtl.add_argument("--connect", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint of `orsight run --publish`")
    igtl.add_argument("--port", type=int_between(1, 65535), default=18944, help="OpenIGTLink port (on loopback)")
    igtl.add_argument("--secure", default=None, metavar="KEYS", help="this client's keys, for a --secure publisher")
    igtl.set_defaults(handler=command_bridge_igtl)
    keys = commands.add_parser("keys", help="CurveZMQ key pairs for `run --secure` and `display --secure`")
    keys.add_argument("--out", required=True, help="folder to write (server and client keys, clients/ allow-list)")
    keys.add_argument("--force", action="store_true",
                      help="replace existing keys (every display and publisher holding the old ones is cut off)")
    keys.set_defaults(handler=command_keys)


def _add_source_options(parser) -> None:
    parser.add_argument("--source", default="phantom", help="phantom[:SCENARIO], file, folder, camera, rtsp://, gst:")
    parser.add_argument("--size", type=size_arg, default=(1280, 720), help="phantom size / camera request (WxH)")
    parser.add_argument("--fps", type=positive, default=30.0, help="phantom rate / camera request")
    parser.add_argument("--fourcc", default=None, help="camera pixel format to request, e.g. MJPG")
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the AI runs")
    parser.add_argument("--imgsz", type=input_size_arg, default=None,
                        help="model input size, N or WxH (default: the model's)")
    parser.add_argument("--frames", type=positive_int, default=None, help="stop after N frames")
    parser.add_argument("--realtime", action="store_true", help="pace files and the phantom at their native rate")
    parser.add_argument("--config", default=None, help="YAML file of pipeline settings (see README)")
    parser.add_argument("--calibration", default=None, help="camera calibration YAML: undistort before analysis")
    parser.add_argument("--working-distance", type=float, default=None,
                        help="mm from scope to tissue: with --calibration, distances in mm")
    parser.add_argument("--overlay-view", choices=("original", "undistorted"), default=None,
                        help="with --calibration: draw the overlay on this picture (default original)")
    parser.add_argument("--video-encoding", choices=("auto", *ENCODINGS), default="auto",
                        help="auto: shm-bgr8 (shared memory) on ipc:// and loopback, raw-bgr8 elsewhere")
    parser.add_argument("--overlay-encoding", choices=ENCODINGS, default="jpeg", help="encoding of `overlay` frames")
    _add_ai_options(parser)
    add_privacy_option(parser)


def add_privacy_option(parser) -> None:
    parser.add_argument("--privacy", choices=MODES, default=None,
                        help="out-of-body frames in recordings, streams and reports: blur (default), blank, or off "
                             "(unchanged: said at start and kept in the audit log)")


def privacy_mode(args, config) -> str:
    """``--privacy`` over the config's; ``off`` is said once on stderr."""
    mode = args.privacy or config.privacy
    if mode == "off":
        print("orsight: --privacy off: out-of-body video (the room, staff, the patient) goes unchanged into "
              "recordings and streams; this is on record in the audit log", file=sys.stderr)
    return mode


def _add_ai_options(parser) -> None:
    """How the AI thread shares the CPU and keeps its masks fresh (``run`` and ``demo``)."""
    parser.add_argument("--ai-priority", choices=("idle", "nice"), default=AI_PRIORITY,
                        help="nice: the AI thread --ai-niceness below the video path (a share of a busy host); idle: "
                             "only CPU time nothing else wants (SCHED_IDLE: starves when another process is busy)")
    parser.add_argument("--ai-niceness", type=int_between(0, 19), default=None,
                        help=f"with --ai-priority nice: how much nicer the AI thread is than the video path (default "
                             f"{AI_NICENESS} where they share CPUs, 0 when the AI has a CPU of its own)")
    parser.add_argument("--governor", action=argparse.BooleanOptionalAction, default=True,
                        help="lower the model's input size while masks would reach the display stale, raise it again "
                             "when there is room")
    parser.add_argument("--reserve-core", action=argparse.BooleanOptionalAction, default=True,
                        help="Linux, a model on one CPU thread: the AI thread on the last CPU, everything else "
                             "(and a display on this host) on the others")


def _ai_options(args, config) -> dict:
    return {"ai_priority": args.ai_priority, "ai_niceness": args.ai_niceness, "governor": args.governor,
            "reserve_core": args.reserve_core, "stale_ms": config.stale_ms}


def load_camera(calibration: str | None, working_distance: float | None):
    """The calibration named by ``--calibration``, with ``--working-distance`` turned into a scale."""
    from calibration.camera import CameraModel

    if not calibration:
        if working_distance:
            raise UsageError("--working-distance needs --calibration (the focal length gives the scale)")
        return None
    camera = CameraModel.load(calibration)
    if working_distance:
        camera.mm_per_px, camera.working_distance_mm = camera.scale_at(working_distance), working_distance
    return camera


def _session(source: str, model: str | None, device: str, config, camera=None, audit_path=None,
             size=(1280, 720), fps=30.0, fourcc=None):
    from pipeline.runtime.session import SessionError, open_session

    try:
        return open_session(source, model, resolve_device(device), config, camera, audit_path, size, fps, fourcc)
    except SessionError as error:
        raise UsageError(str(error)) from None


def command_run(args) -> int:
    from pipeline.runtime.config import load_config
    from pipeline.runtime.live import LiveOptions, run_live
    from pipeline.transport.zeromq import Publisher

    writable(args.summary, "--summary")
    config = load_config(args.config)
    overrides = {k: v for k, v in (("imgsz", args.imgsz), ("overlay_view", args.overlay_view)) if v is not None}
    config = dataclasses.replace(config, **overrides, privacy=privacy_mode(args, config))
    session = _session(args.source, args.model, args.device, config,
                       load_camera(args.calibration, args.working_distance), args.audit_log, args.size, args.fps,
                       args.fourcc)
    if args.lossless and not args.record:
        raise UsageError("--lossless goes with --record DIR")
    writable(args.record, "--record", folder=True)
    if args.record and any(Path(args.record).iterdir()):
        raise UsageError(f"--record {args.record}: the folder is not empty (a recording is never overwritten)")
    publisher = Publisher(args.publish, keys=args.secure, insecure=args.insecure)
    recording = None
    if args.record:
        from pipeline.runtime.live_recording import LiveRecording, RecordingPublisher

        recording = LiveRecording(args.record, session.source.fps, args.lossless)
        publisher = RecordingPublisher(publisher, recording)
    options = LiveOptions(frames=args.frames, realtime=args.realtime, video_encoding=args.video_encoding,
                          overlay_encoding=args.overlay_encoding, identity=session.identity,
                          privacy=config.privacy, **_ai_options(args, config))
    print(f"orsight: {session.source.name} -> {session.model.description} -> {args.publish}", file=sys.stderr)
    if session.model.operating_points is None:
        print(f"orsight: {UNVALIDATED}", file=sys.stderr)
    try:
        summary = run_live(session.source, session.graph, publisher, options, health=session.health)
    finally:
        publisher.close()
        audit_head = session.close()
        recorded = recording.close() if recording is not None else None
    summary["model"] = session.model.description
    if audit_head is not None:
        summary["audit_head"] = audit_head  # the log's last link: anchored here, apart from the log
    if recorded is not None:
        summary["recording"] = recorded
    print(json.dumps(summary, indent=2))
    if args.summary:
        write_json(args.summary, summary)
    if summary["state"] == "source_error" or not summary["frames_analysed"]:
        raise UsageError(f"analysed {summary['frames_analysed']} of {summary['frames_captured']} frames: "
                         f"{summary['last_error'] or 'the source gave no frame'}")
    return 0


# The display's delay percentiles, printed by `display` and `demo` and kept in the demo's summary.
DELAY_FIELDS = ("passthrough_delay_ms", "passthrough_publisher_ms", "passthrough_transit_ms", "annotation_delay_ms",
                "annotation_transit_ms")


def _print_delays(summary: dict) -> None:
    for name in DELAY_FIELDS:
        p = summary[name]
        print(f"{name:24s} p50 {p['p50']}  p95 {p['p95']}  p99 {p['p99']}")


def command_display(args) -> int:
    from pipeline.runtime.cores import display_cpus, threads_on

    with threads_on(display_cpus(args.connect)):  # off the AI's CPU when `orsight run` is on this host
        return _display(args)


def _display(args) -> int:
    from pipeline.display.viewer import run_display

    if args.web:
        from pipeline.display.web import serve_web

        if args.record or args.frames:
            raise UsageError("--record and --frames are for the window or --headless, not --web (record with a "
                             "second, headless display)")
        if not args.host.startswith("127.") and args.host != "localhost":
            if not args.insecure:
                raise UsageError(f"--host {args.host}: other computers would reach patient video over plain HTTP; "
                                 "add --insecure to do it anyway (a token is still needed)")
            print(f"orsight: warning: serving patient video unencrypted (token-protected) on {args.host}:{args.port}",
                  file=sys.stderr)
        summary = serve_web(args.connect, args.host, args.port, args.stale_ms, keys=args.secure,
                            propagate=args.propagate,
                            ready=lambda url: print(f"orsight: display at {url}", file=sys.stderr, flush=True))
        _print_delays(summary)
        if args.summary:
            write_json(args.summary, summary)
        return 0
    if not args.headless and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        raise UsageError("no screen (DISPLAY is not set): use --headless --record FILE.mp4")
    writable(args.record, "--record")
    writable(args.summary, "--summary")
    summary = run_display(args.connect, headless=args.headless, record=args.record, frames=args.frames,
                          stale_ms=args.stale_ms, keys=args.secure, propagate=args.propagate)
    _print_delays(summary)
    if args.summary:
        write_json(args.summary, summary)
    return 0


def command_demo(args) -> int:
    """Phantom -> live pipeline -> ZeroMQ (ipc) -> headless display in its own process."""
    from pipeline.runtime.config import PipelineConfig
    from pipeline.runtime.live import LiveOptions, run_live
    from pipeline.transport.zeromq import Publisher

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = PipelineConfig()
    config = dataclasses.replace(config, privacy=privacy_mode(args, config))
    session = _session(args.source, args.model, "auto", config, audit_path=out / "audit.jsonl", size=args.size)
    socket_dir = tempfile.mkdtemp(prefix="orsight-demo-")
    endpoint = f"ipc://{socket_dir}/live.sock"
    publisher = Publisher(endpoint)
    display_json = out / "display.json"
    display = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "display", "--connect", endpoint, "--headless",
                                "--record", str(out / "display.mp4"), "--summary", str(display_json)],
                               stdout=subprocess.DEVNULL)
    try:
        if not publisher.wait_for_subscriber(timeout=30):
            raise UsageError("the display process did not subscribe within 30 s")
        live = run_live(session.source, session.graph, publisher,
                        LiveOptions(frames=args.frames, realtime=True, privacy=config.privacy,
                                    **_ai_options(args, config)),
                        health=session.health)
        stop_display(display)
    finally:
        if display.poll() is None:
            display.kill()
        publisher.close()
        session.close()
    if display.returncode != 0 or not display_json.exists():
        raise UsageError(f"the display process failed (exit status {display.returncode})")
    shown = json.loads(display_json.read_text())
    display_json.unlink()
    summary = {"source": live["source"], "model": session.model.description, "frames": live["frames_captured"],
               "frames_analysed": live["frames_analysed"], "fps_capture": live["fps_capture"],
               "fps_ai": live["fps_ai"], "drops": live["drops"], "alerts_raised": live["alerts_raised"],
               "frames_shown": shown["frames_shown"], "frames_stale": shown["frames_stale"],
               **{name: shown[name] for name in DELAY_FIELDS}, "stage_ms_p50": live["stage_ms_p50"],
               "stage_ms_p99": live["stage_ms_p99"], "operating_point": live["operating_point"]}
    write_json(out / "summary.json", summary)
    print(f"{'frames captured / analysed / dropped':38s} {summary['frames']} / {summary['frames_analysed']} / "
          f"{summary['drops']}")
    print(f"{'fps capture / AI':38s} {summary['fps_capture']} / {summary['fps_ai']}")
    print(f"{'alerts raised':38s} {summary['alerts_raised']}")
    fresh = 1 - summary["frames_stale"] / max(1, summary["frames_shown"])
    print(f"{'frames shown with a fresh mask':38s} {fresh:.1%} of {summary['frames_shown']}")
    point = summary["operating_point"]
    if point.get("budget"):
        print(f"{'AI input at the end (budget, steps)':38s} {point['input_size'][0]}x{point['input_size'][1]} "
              f"({point['budget']} of {point['max_budget']}, {point['steps']} governor steps)")
    _print_delays(summary)
    picture = _demo_frame(out / "frame.png", args.source, args.size, session.model)
    print(f"wrote {out / 'display.mp4'}, {out / 'summary.json'}, {out / 'audit.jsonl'}"
          f"{' and ' + str(picture) if picture else ''}")
    return 0


def _demo_frame(path: Path, source: str, size: tuple[int, int], model) -> Path | None:
    """One annotated picture of the approach scenario just before the instrument touches the vessel
    (the Python API over the frames leading up to it, so the alert is raised as it is live)."""
    import cv2

    from pipeline import Analyzer
    from pipeline.sources.phantom import PhantomScene, parse_phantom

    if not source.startswith("phantom") or parse_phantom(source) != "approach":
        return None
    analyzer, scene = Analyzer(model), PhantomScene(*size, scenario="approach")
    touch = scene.approach_events()["touch"]
    for frame in range(touch - 12, touch - 2):
        result = analyzer.analyse(scene.render(frame)[0])
    cv2.imwrite(str(path), result.plot())
    return path


def command_keys(args) -> int:
    from pipeline.transport.curve import make_keys

    existing = [name for name in ("server.key_secret", "client.key_secret") if (Path(args.out) / name).exists()]
    if existing and not args.force:
        raise UsageError(f"{args.out} already holds keys ({', '.join(existing)}): replacing them cuts off every "
                         "display that has the old ones; add --force to replace them")
    folder = make_keys(args.out)
    print(f"wrote {folder}/server.key(_secret) for `run --secure {folder}`, {folder}/client.key(_secret) for "
          f"`display --secure {folder}`; allowed clients: {folder}/clients/")
    return 0


def command_bridge_igtl(args) -> int:
    try:
        import pyigtl  # noqa: F401

        from pipeline.display.igtl import serve_igtl
    except ImportError:
        raise UsageError("the OpenIGTLink bridge needs pyigtl: pip install 'orsight[slicer]'") from None
    print(f"orsight: OpenIGTLink on 127.0.0.1:{args.port} (3D Slicer: OpenIGTLinkIF, client) <- {args.connect}",
          file=sys.stderr)
    print(json.dumps(serve_igtl(args.connect, args.port, keys=args.secure), indent=2))
    return 0
