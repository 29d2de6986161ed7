"""``orsight`` command line: run, display, demo. Bad input: one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from calibration.boards import PATTERNS
from calibration.camera import CalibrationError
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


def _input_size(text: str) -> int | tuple[int, int]:
    """A model input: one side (square) or WIDTHxHEIGHT."""
    if "x" in text.lower():
        return _size(text)
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size must be N or WIDTHxHEIGHT, not {text!r}") from None


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="phantom", help="phantom[:SCENARIO], file, folder, camera, rtsp://, gst:")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="phantom size / camera request (WxH)")
    parser.add_argument("--fps", type=float, default=30.0, help="phantom rate / camera request")
    parser.add_argument("--fourcc", default=None, help="camera pixel format to request, e.g. MJPG")
    parser.add_argument("--model", default=None, help=".onnx or .pt (default: the shipped model)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--imgsz", type=_input_size, default=None,
                        help="model input size, N or WxH (default: the model's)")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--realtime", action="store_true", help="pace files and the phantom at their native rate")
    parser.add_argument("--config", default=None, help="YAML file of pipeline settings (see README)")
    parser.add_argument("--calibration", default=None, help="camera calibration YAML: undistort before analysis")
    parser.add_argument("--working-distance", type=float, default=None,
                        help="mm from scope to tissue: with --calibration, distances in mm")
    parser.add_argument("--overlay-view", choices=("original", "undistorted"), default=None,
                        help="with --calibration: draw the overlay on this picture (default original)")
    parser.add_argument("--video-encoding", choices=("auto", *ENCODINGS), default="auto",
                        help="auto: shm-bgr8 (shared memory) on ipc:// and loopback, raw-bgr8 elsewhere")
    parser.add_argument("--overlay-encoding", choices=ENCODINGS, default="jpeg")
    parser.add_argument("--ai-priority", choices=("idle", "nice"), default="idle",
                        help="idle: the AI thread runs on CPU time nothing else wants (SCHED_IDLE); "
                             "nice: +10 (on hosts shared with other work)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="orsight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="live pipeline: source -> AI -> ZeroMQ")
    _add_source_options(run)
    run.add_argument("--publish", default=DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    run.add_argument("--summary", default=None, help="write the run summary as JSON here")
    run.add_argument("--audit-log", default=None, help="append every alert transition to this JSONL file")
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
    calibrate = commands.add_parser("calibrate", help="camera intrinsics from board images or a video")
    calibrate.add_argument("inputs", nargs="+", metavar="INPUT", help="images and/or videos of the board")
    calibrate.add_argument("--pattern", choices=PATTERNS, required=True)
    calibrate.add_argument("--board", type=_size, required=True, help="COLSxROWS (inner corners / squares / circles)")
    calibrate.add_argument("--square", type=float, required=True, help="square side or circle spacing in mm")
    calibrate.add_argument("--fisheye", action="store_true")
    calibrate.add_argument("--rational", action="store_true", help="pinhole with the rational distortion model")
    calibrate.add_argument("--working-distance", type=float, default=None, help="store mm per pixel at this distance")
    calibrate.add_argument("--scope-id", default="")
    calibrate.add_argument("--camera-id", default="")
    calibrate.add_argument("--out", required=True)
    replay = commands.add_parser("replay", help="analyse recorded videos, every frame")
    replay.add_argument("videos", nargs="+", metavar="VIDEO")
    replay.add_argument("--out", required=True, help="one folder per video is written here")
    replay.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="distribute over Ray (a cluster ADDRESS, or a local Ray without one)")
    replay.add_argument("--model", default=None)
    replay.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    replay.add_argument("--batch", type=int, default=None, help="frames per forward pass (default: 1 CPU, 8 CUDA)")
    replay.add_argument("--chunk-frames", type=int, default=None, help="analyse in chunks of about N frames")
    replay.add_argument("--config", default=None)
    replay.add_argument("--no-progress", action="store_true")
    dataset = commands.add_parser("dataset", help="make training datasets (written outside the repo)")
    dataset_kinds = dataset.add_subparsers(dest="kind", required=True, parser_class=Parser)
    convert = dataset_kinds.add_parser("convert", help="SRC/{train,val}/{images,masks} -> YOLO segmentation")
    convert.add_argument("source")
    convert.add_argument("--out", required=True)
    convert.add_argument("--mapping", default="6:0,3:1", help="mask value:class index pairs (default Endoscapes)")
    convert.add_argument("--ignore", default="7,255", help="mask values to ignore")
    convert.add_argument("--names", default="instrument,vessel",
                         help="class names in index order (roles come from them: see README)")
    convert.add_argument("--colours", default=None, help="YAML of R,G,B: value for colour-coded masks")
    convert.add_argument("--imgsz", type=int, default=480)
    phantom = dataset_kinds.add_parser("phantom", help="render a labelled phantom dataset")
    phantom.add_argument("--n", type=int, default=600)
    phantom.add_argument("--out", required=True)
    phantom.add_argument("--imgsz", type=int, default=320)
    train = commands.add_parser("train", help="train a segmentation model (ultralytics)")
    train.add_argument("--data", required=True, help="data.yaml from `orsight dataset`")
    train.add_argument("--out", required=True, help="run folder (outside the repo)")
    train.add_argument("--arch", default="yolo26n-seg",
                       help="ultralytics model name, or yolo26n-sem-p2 (semantic, stride-4 head; --data semantic.yaml)")
    train.add_argument("--imgsz", type=int, default=320)
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch", type=int, default=None)
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--init", default=None, help="start from this .pt (e.g. phantom-pretrained) instead of scratch")
    train.add_argument("--class-weights", type=float, default=0.0, metavar="POWER",
                       help="weight rare classes by inverse frequency to this power, 0-1 (ultralytics cls_pw)")
    train.add_argument("--hours", type=float, default=None, help="stop after this long (overrides --epochs' schedule)")
    train.add_argument("--tversky", default="0.5,0.5", metavar="ALPHA,BETA",
                       help="semantic models: weights of painted-wrongly and missed pixels in the per-class "
                            "overlap loss (0.5,0.5 = Dice; 0.3,0.7 favours recall of thin classes)")
    evaluation = commands.add_parser("eval", help="per-class IoU/Dice, mask mAP and speed on labelled frames")
    evaluation.add_argument("--data", required=True, help="folder with images/ and masks/")
    evaluation.add_argument("--model", default=None)
    evaluation.add_argument("--mapping", default="6:0,3:1")
    evaluation.add_argument("--ignore", default="7,255")
    evaluation.add_argument("--json", default=None)
    export = commands.add_parser("export", help=".pt -> ONNX (and TensorRT where present)")
    export.add_argument("--model", required=True)
    export.add_argument("--imgsz", type=_input_size, required=True, help="N (square) or WxH, e.g. 512x288")
    export.add_argument("--out", required=True)
    export.add_argument("--opset", type=int, default=None)
    export.add_argument("--dynamic", action="store_true",
                        help="dynamic batch and input shape (replay --batch; the input fitted to each picture)")
    export.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine")
    scale = commands.add_parser("scale", help="mm per pixel from a reference object of known length")
    scale.add_argument("--points", required=True, help="X1,Y1,X2,Y2: the reference's ends in the image")
    scale.add_argument("--length-mm", type=float, required=True)
    scale.add_argument("--calibration", default=None, help="undistort the points first and store the scale here")
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
    from pipeline.alerts import RULES, build_rules
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
        build_rules(tuple(RULES), config.alerts)
    except (TypeError, ValueError) as error:
        raise UsageError(f"config {path}: {error}") from None
    return config


def _identity(model, config) -> dict:
    """Model and configuration identity stamped on every audit-log line."""
    import hashlib

    from pipeline import __version__

    path = getattr(model, "path", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None
    settings = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return {"orsight": __version__, "model": model.description, "model_sha256": digest,
            "config_sha256": hashlib.sha256(settings.encode()).hexdigest()[:16]}


def _open_pipeline(args, config, audit_path=None):
    """Source, model, stages and health monitor for ``run``/``demo`` (errors become ``UsageError``)."""
    from pipeline.alerts import AuditLog
    from pipeline.inference import load_model
    from pipeline.preprocess import input_dims
    from pipeline.runtime import HealthMonitor, compose
    from pipeline.sources import open_source

    camera = _camera(args)
    source = open_source(args.source, size=args.size, fps=getattr(args, "fps", 30.0),
                         fourcc=getattr(args, "fourcc", None))
    if camera is not None and tuple(camera.image_size) != source.frame_size:
        raise UsageError(f"calibration {args.calibration} is for {camera.image_size[0]}x{camera.image_size[1]} "
                         f"frames, the source gives {source.frame_size[0]}x{source.frame_size[1]}")
    if getattr(args, "overlay_view", None):
        config.overlay_view = args.overlay_view
    device = resolve_device(getattr(args, "device", "auto"))
    model = load_model(args.model, device=device, conf=config.conf, iou=config.iou, roles=config.roles)
    imgsz = getattr(args, "imgsz", None) or config.imgsz
    if imgsz and model.fixed_input and input_dims(imgsz) != model.input_size:
        fixed = "x".join(map(str, model.input_size))
        raise UsageError(f"--imgsz {imgsz}: this ONNX model has a fixed input of {fixed}")
    config.imgsz = imgsz
    try:
        audit = AuditLog(audit_path, _identity(model, config)) if audit_path else None
        stages = compose(model, config, camera, audit, device)
        health = HealthMonitor(config, audit, source.fps)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write audit log {audit_path}: {error.strerror}") from None
    return source, model, stages, health


def _camera(args):
    """The calibration named by ``--calibration``, with ``--working-distance`` turned into a scale."""
    from calibration.camera import CameraModel

    if not getattr(args, "calibration", None):
        if getattr(args, "working_distance", None):
            raise UsageError("--working-distance needs --calibration (the focal length gives the scale)")
        return None
    camera = CameraModel.load(args.calibration)
    if args.working_distance:
        camera.mm_per_px, camera.working_distance_mm = camera.scale_at(args.working_distance), args.working_distance
    return camera


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
    source, model, stages, health = _open_pipeline(args, config, args.audit_log)
    publisher = Publisher(args.publish)
    options = LiveOptions(frames=args.frames, realtime=args.realtime, video_encoding=args.video_encoding,
                          overlay_encoding=args.overlay_encoding, ai_priority=args.ai_priority)
    print(f"orsight: {source.name} -> {model.description} -> {args.publish}", file=sys.stderr)
    try:
        summary = run_live(source, stages, publisher, options, health=health)
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
    source, model, stages, health = _open_pipeline(args, load_config(None), out / "audit.jsonl")
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
        live = run_live(source, stages, publisher, LiveOptions(frames=args.frames, realtime=True), health=health)
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
    print(f"wrote {out / 'display.mp4'}, {out / 'summary.json'} and {out / 'audit.jsonl'}")
    return 0


def command_calibrate(args) -> int:
    from calibration.boards import Board
    from calibration.calibrate import calibrate, collect_views

    try:
        board = Board(args.pattern, args.board[0], args.board[1], args.square)
    except ValueError as error:
        raise UsageError(str(error)) from None
    views, size, skipped = collect_views(args.inputs, board)
    result = calibrate(views, size, fisheye=args.fisheye, rational=args.rational, skipped=skipped)
    camera = result.camera
    camera.scope_id, camera.camera_id = args.scope_id, args.camera_id
    if args.working_distance:
        camera.mm_per_px, camera.working_distance_mm = camera.scale_at(args.working_distance), args.working_distance
    camera.save(args.out)
    k = camera.camera_matrix
    print(f"{camera.model} model from {len(result.per_view_rms)} views of {size[0]}x{size[1]}: RMS {camera.rms:.3f} px")
    print(f"fx {k[0, 0]:.2f}  fy {k[1, 1]:.2f}  cx {k[0, 2]:.2f}  cy {k[1, 2]:.2f}")
    print("distortion " + " ".join(f"{v:.5f}" for v in camera.distortion))
    for name, error in result.per_view_rms.items():
        print(f"  view {name}: {error:.3f} px")
    for name, error in result.rejected.items():
        print(f"  rejected {name}: {error:.3f} px (outlier)")
    for name, reason in result.skipped.items():
        print(f"  skipped {name}: {reason}")
    if camera.mm_per_px:
        print(f"scale {camera.mm_per_px:.4f} mm/px at {camera.working_distance_mm:g} mm")
    print(f"wrote {args.out}")
    return 0


def command_replay(args) -> int:
    from pipeline.inference import load_model
    from pipeline.replay import ReplayOptions, replay_videos

    config = load_config(args.config)
    device = resolve_device(args.device)
    load_model(args.model, device="cpu")  # a wrong model file fails here, before any work
    options = ReplayOptions(batch=args.batch or (8 if device == "cuda" else 1), chunk_frames=args.chunk_frames,
                            device=device, progress=not args.no_progress, config=config)
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


def _pairs(text: str, what: str) -> dict[int, int]:
    try:
        return {int(a): int(b) for a, b in (pair.split(":") for pair in text.split(",") if pair)}
    except ValueError:
        raise UsageError(f"{what} must be VALUE:CLASS pairs separated by commas, not {text!r}") from None


def _values(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise UsageError(f"{what} must be numbers separated by commas, not {text!r}") from None


def _floats(text: str, what: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise UsageError(f"{what} must be {count} numbers separated by commas, not {text!r}")
    return values


def command_dataset(args) -> int:
    from pipeline.training.dataset import convert_masks, write_phantom_dataset

    if args.kind == "phantom":
        path = write_phantom_dataset(args.out, n=args.n, size=args.imgsz)
    else:
        colours = None
        if args.colours:
            table = yaml.safe_load(Path(args.colours).read_text())
            colours = {tuple(int(v) for v in str(k).split(",")): int(v) for k, v in table.items()}
        mapping, names = _pairs(args.mapping, "--mapping"), tuple(n for n in args.names.split(",") if n)
        if sorted(set(mapping.values())) != list(range(len(names))):
            raise UsageError(f"--mapping gives classes {sorted(set(mapping.values()))}: --names needs one name "
                             f"for each of 0..{max(mapping.values(), default=0)}, got {len(names)}")
        try:
            path = convert_masks(args.source, args.out, mapping, _values(args.ignore, "--ignore"), names=names,
                                 size=args.imgsz, colours=colours)
        except ValueError as error:
            raise UsageError(str(error)) from None
    print(f"wrote {path}")
    return 0


def command_train(args) -> int:
    from pipeline.training.train import train

    if not Path(args.data).is_file() and not args.resume:
        raise UsageError(f"no such dataset file: {args.data}")
    try:
        best = train(args.data, args.out, args.arch, args.imgsz, args.epochs, args.batch,
                     resolve_device(args.device), resume=args.resume, init=args.init,
                     class_weight_power=args.class_weights, hours=args.hours,
                     tversky=_floats(args.tversky, "--tversky", 2))
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(f"best weights: {best}")
    return 0


def command_eval(args) -> int:
    from pipeline.inference import load_model
    from pipeline.training.evaluate import evaluate

    model = load_model(args.model)
    try:
        report = evaluate(args.data, model, _pairs(args.mapping, "--mapping"), _values(args.ignore, "--ignore"))
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    fitted = " pixels, fitted to each picture" if report["input_fitted"] else ""
    print(f"{report['frames']} frames, {report['model']}, input {'x'.join(map(str, report['input_size']))}{fitted}")
    columns = ("iou", "dice", "precision", "recall", "frame_mean_iou")
    print(f"{'class':12s} {'IoU':>7s} {'Dice':>7s} {'prec':>7s} {'recall':>7s} {'frame IoU':>10s} {'frames':>7s}")
    for name, c in report["classes"].items():
        iou, dice, precision, recall, frame_iou = (f"{c[k]:.3f}" if c[k] is not None else "-" for k in columns)
        print(f"{name:12s} {iou:>7s} {dice:>7s} {precision:>7s} {recall:>7s} {frame_iou:>10s} {c['frames_scored']:7d}")
    print(f"mask mAP50-95 {report['mask_map50_95']:.3f}  mAP50 {report['mask_map50']:.3f}  "
          f"inference {report['ms_per_frame']:.1f} ms/frame")
    if args.json:
        write_json(args.json, report)
    return 0


def command_export(args) -> int:
    from pipeline.training.export import export_onnx, export_tensorrt

    if not Path(args.model).is_file():
        raise UsageError(f"model file not found: {args.model}")
    out = export_onnx(args.model, args.imgsz, args.out, opset=args.opset, dynamic=args.dynamic)
    print(f"wrote {out}")
    if args.tensorrt:
        print(f"wrote {export_tensorrt(args.model, args.imgsz, Path(args.out).with_suffix('.engine'))}")
    return 0


def command_scale(args) -> int:
    from calibration.camera import CameraModel, scale_from_reference

    try:
        x1, y1, x2, y2 = (float(v) for v in args.points.split(","))
    except ValueError:
        raise UsageError(f"--points must be X1,Y1,X2,Y2, not {args.points!r}") from None
    camera = CameraModel.load(args.calibration) if args.calibration else None
    mm_per_px = scale_from_reference((x1, y1), (x2, y2), args.length_mm, camera)
    print(f"{mm_per_px:.5f} mm/px")
    if camera is not None:
        camera.mm_per_px, camera.working_distance_mm = mm_per_px, None
        camera.save(args.calibration)
        print(f"stored in {args.calibration}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipeline.inference import ModelError
    from pipeline.replay import ReplayError
    from pipeline.sources import SourceError

    args = build_parser().parse_args(argv)
    commands = {"run": command_run, "display": command_display, "demo": command_demo,
                "calibrate": command_calibrate, "scale": command_scale, "replay": command_replay,
                "dataset": command_dataset, "train": command_train, "eval": command_eval, "export": command_export}
    try:
        return commands[args.command](args)
    except (UsageError, SourceError, ModelError, TransportError, CalibrationError, ReplayError) as error:
        print(f"orsight: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
