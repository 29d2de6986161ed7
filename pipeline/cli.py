"""``orsight`` command line: run, display, demo. Bad input: one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from pipeline.transport import DEFAULT_ENDPOINT, ENCODINGS, TransportError

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        print(f"orsight: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, not {text!r}") from None
    return width, height


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="phantom", help="phantom[:SCENARIO], file, folder, camera, rtsp://, gst:")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="phantom size / camera request (WxH)")
    parser.add_argument("--fps", type=float, default=30.0, help="phantom rate / camera request")
    parser.add_argument("--fourcc", default=None, help="camera pixel format to request, e.g. MJPG")
    parser.add_argument("--model", default=None, help=".onnx or .pt (default: the shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--imgsz", type=int, default=None, help="model input size (default: the model's)")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--realtime", action="store_true", help="pace files and the phantom at their native rate")
    parser.add_argument("--config", default=None, help="YAML file of pipeline settings (see README)")
    parser.add_argument("--video-encoding", choices=ENCODINGS, default="raw-bgr8")
    parser.add_argument("--overlay-encoding", choices=ENCODINGS, default="jpeg")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="orsight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="live pipeline: source -> AI -> ZeroMQ")
    _add_source_options(run)
    run.add_argument("--publish", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    run.add_argument("--summary", default=None, help="write the run summary as JSON here")
    display = commands.add_parser("display", help="OR display: subscribe and show")
    display.add_argument("--connect", default=DEFAULT_ENDPOINT)
    display.add_argument("--headless", action="store_true", help="no window (record instead)")
    display.add_argument("--record", default=None, help="write what is shown to this .mp4")
    display.add_argument("--frames", type=int, default=None)
    display.add_argument("--stale-ms", type=float, default=120.0, help="hide masks older than this")
    display.add_argument("--summary", default=None, help="write delays and counts as JSON here")
    demo = commands.add_parser("demo", help="phantom through the whole live path and a headless display")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--out", default="demo-out")
    demo.add_argument("--model", default=None)
    demo.add_argument("--size", type=_size, default=(1280, 720))
    demo.add_argument("--source", default="phantom:approach")
    return parser


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when CuPy sees a CUDA device, else ``cpu``; ``cuda`` must exist."""
    try:
        import cupy

        has_cuda = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy missing, or no driver/device
        has_cuda = False
    if device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: no CUDA device found (or CuPy is not installed: pip install orsight[gpu])")
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


def load_config(path: str | None):
    """Pipeline settings from a YAML file (keys of ``PipelineConfig``); unknown keys are an error."""
    from pipeline.classes import class_roles
    from pipeline.runtime import PipelineConfig

    if path is None:
        return PipelineConfig()
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise UsageError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not a mapping)"]
    if unknown:
        raise UsageError(f"config {path}: unknown settings {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        config = PipelineConfig(**values)
        class_roles(tuple(config.roles), config.roles)
    except (TypeError, ValueError) as error:
        raise UsageError(f"config {path}: {error}") from None
    return config


def _open_pipeline(args, config):
    """Source, model and stages for ``run``/``demo`` (errors become ``UsageError``)."""
    from pipeline.inference import load_model
    from pipeline.runtime import compose
    from pipeline.sources import open_source

    source = open_source(args.source, size=args.size, fps=getattr(args, "fps", 30.0),
                         fourcc=getattr(args, "fourcc", None))
    device = resolve_device(getattr(args, "device", "auto"))
    model = load_model(args.model, device=device, conf=config.conf, iou=config.iou, roles=config.roles)
    imgsz = getattr(args, "imgsz", None) or config.imgsz
    if imgsz and hasattr(model, "session") and imgsz != model.input_size:
        raise UsageError(f"--imgsz {imgsz}: this ONNX model has a fixed input of {model.input_size}")
    config.imgsz = imgsz
    try:
        stages = compose(model, config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return source, model, stages


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically: a half-written file never carries the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)


def command_run(args) -> int:
    from pipeline.runtime import LiveOptions, run_live
    from pipeline.transport import Publisher

    config = load_config(args.config)
    source, model, stages = _open_pipeline(args, config)
    publisher = Publisher(args.publish)
    options = LiveOptions(frames=args.frames, realtime=args.realtime, video_encoding=args.video_encoding,
                          overlay_encoding=args.overlay_encoding)
    print(f"orsight: {source.name} -> {model.description} -> {args.publish}", file=sys.stderr)
    try:
        summary = run_live(source, stages, publisher, options)
    finally:
        publisher.close()
        source.close()
    summary["model"] = model.description
    print(json.dumps(summary, indent=2))
    if args.summary:
        write_json(args.summary, summary)
    return 0


def _print_delays(summary: dict) -> None:
    for name in ("passthrough_delay_ms", "annotation_delay_ms"):
        p = summary[name]
        print(f"{name:22s} p50 {p['p50']}  p95 {p['p95']}  p99 {p['p99']}")


def command_display(args) -> int:
    from pipeline.display import run_display

    if not args.headless and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        raise UsageError("no screen (DISPLAY is not set): use --headless --record FILE.mp4")
    summary = run_display(args.connect, headless=args.headless, record=args.record, frames=args.frames,
                          stale_ms=args.stale_ms)
    _print_delays(summary)
    if args.summary:
        write_json(args.summary, summary)
    return 0


def command_demo(args) -> int:
    """Phantom -> live pipeline -> ZeroMQ (ipc) -> headless display in its own process."""
    from pipeline.runtime import LiveOptions, run_live
    from pipeline.transport import Publisher

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.fps = 30.0
    source, model, stages = _open_pipeline(args, load_config(None))
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
        live = run_live(source, stages, publisher, LiveOptions(frames=args.frames, realtime=True))
        display.wait(timeout=60)
    finally:
        if display.poll() is None:
            display.kill()
        publisher.close()
    if display.returncode != 0 or not display_json.exists():
        raise UsageError(f"the display process failed (exit status {display.returncode})")
    shown = json.loads(display_json.read_text())
    display_json.unlink()
    summary = {"source": live["source"], "model": model.description, "frames": live["frames_captured"],
               "frames_analysed": live["frames_analysed"], "fps_capture": live["fps_capture"],
               "fps_ai": live["fps_ai"], "drops": live["drops"], "alerts_raised": live["alerts_raised"],
               "frames_shown": shown["frames_shown"], "frames_stale": shown["frames_stale"],
               "passthrough_delay_ms": shown["passthrough_delay_ms"],
               "annotation_delay_ms": shown["annotation_delay_ms"], "stage_ms_p50": live["stage_ms_p50"]}
    write_json(out / "summary.json", summary)
    print(f"{'frames captured / analysed / dropped':38s} {summary['frames']} / {summary['frames_analysed']} / "
          f"{summary['drops']}")
    print(f"{'fps capture / AI':38s} {summary['fps_capture']} / {summary['fps_ai']}")
    print(f"{'alerts raised':38s} {summary['alerts_raised']}")
    _print_delays(summary)
    print(f"wrote {out / 'display.mp4'} and {out / 'summary.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipeline.inference import ModelError
    from pipeline.sources import SourceError

    args = build_parser().parse_args(argv)
    commands = {"run": command_run, "display": command_display, "demo": command_demo}
    try:
        return commands[args.command](args)
    except (UsageError, SourceError, ModelError, TransportError) as error:
        print(f"orsight: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
