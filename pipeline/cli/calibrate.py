"""``orsight calibrate`` and ``scale``: camera intrinsics from board views, mm per pixel."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.boards import PATTERNS
from pipeline.cli.common import UsageError, integers, positive, size_arg, writable


def add_commands(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="camera intrinsics from board images or a video (or print a board: --make-board)")
    calibrate.add_argument("inputs", nargs="*", metavar="INPUT", help="images, videos and/or folders of them, of the board")
    calibrate.add_argument("--pattern", choices=PATTERNS, default=None,
                           help="the board printed (charuco recommended: partial views work)")
    calibrate.add_argument("--board", type=size_arg, required=True,
                           help="COLSxROWS (chessboard: inner corners; charuco: squares; circles, dotgrid: dots)")
    calibrate.add_argument("--square", type=float, required=True, help="square side or dot spacing in mm")
    calibrate.add_argument("--fiducials", default=None, metavar="C,R,C,R,...",
                           help="dotgrid: grid positions (column, row, 0-based) of the larger dots, "
                                "e.g. 8,5,16,5,8,12,16,12")
    calibrate.add_argument("--fisheye", action="store_true", help="fisheye camera model")
    calibrate.add_argument("--rational", action="store_true", help="pinhole with the rational distortion model")
    calibrate.add_argument("--field-scale", choices=("auto", "1", "2"), default="auto",
                           help="stretch frames vertically: 2 for half-height fields of interlaced or stereo "
                                "scopes (1920x540 of a 1920x1080 picture); auto detects them")
    calibrate.add_argument("--debug", default=None, metavar="DIR", help="write a picture of what was found per view")
    calibrate.add_argument("--stereo", nargs="+", default=None, metavar="LEFT",
                           help="stereo: the left camera's images or video (with --right; pairs by order)")
    calibrate.add_argument("--right", nargs="+", default=None, metavar="RIGHT", help="stereo: the right camera's")
    calibrate.add_argument("--make-board", choices=PATTERNS, default=None, metavar="PATTERN",
                           help="write a printable board (PNG) to --out instead of calibrating")
    calibrate.add_argument("--dpi", type=positive, default=300.0, help="--make-board: printer resolution")
    calibrate.add_argument("--working-distance", type=float, default=None, help="store mm per pixel at this distance")
    calibrate.add_argument("--scope-id", default="", help="stored in the file: which endoscope")
    calibrate.add_argument("--camera-id", default="", help="stored in the file: which camera head")
    calibrate.add_argument("--out", required=True, help="calibration YAML to write (--make-board: the PNG)")
    calibrate.set_defaults(handler=command_calibrate)
    scale = commands.add_parser("scale", help="mm per pixel from a reference object of known length")
    scale.add_argument("--points", required=True, help="X1,Y1,X2,Y2: the reference's ends in the image")
    scale.add_argument("--length-mm", type=float, required=True, help="the reference's real length")
    scale.add_argument("--calibration", default=None, help="undistort the points first and store the scale here")
    scale.set_defaults(handler=command_scale)


def _board(args, pattern: str):
    from calibration.boards import Board

    fiducials = ()
    if args.fiducials:
        values = integers(args.fiducials, "--fiducials")
        if len(values) % 2:
            raise UsageError(f"--fiducials must be COL,ROW pairs, not {args.fiducials!r}")
        fiducials = tuple(zip(values[0::2], values[1::2]))
    try:
        return Board(pattern, args.board[0], args.board[1], args.square, fiducials)
    except ValueError as error:
        raise UsageError(str(error)) from None


def command_calibrate(args) -> int:
    if args.make_board:
        if args.inputs or args.stereo:
            raise UsageError("--make-board writes a board; it takes no images")
        return _make_board(_board(args, args.make_board), args.dpi, args.out)
    if args.pattern is None:
        raise UsageError("--pattern is required (the board in the views)")
    if (args.stereo is None) != (args.right is None):
        raise UsageError("--stereo LEFT... and --right RIGHT... go together")
    if args.stereo and args.inputs:
        raise UsageError("give the views either as INPUT... (one camera) or as --stereo ... --right ...")
    if not args.stereo and not args.inputs:
        raise UsageError("no views given: INPUT... or --stereo LEFT... --right RIGHT...")
    if args.stereo and args.fisheye:
        raise UsageError("stereo calibration uses the pinhole model (drop --fisheye)")
    board = _board(args, args.pattern)
    writable(args.out, "calibration file")
    if args.stereo:
        return _calibrate_stereo(args, board)
    from calibration.calibrate import calibrate, collect_views

    views, size, skipped = collect_views(args.inputs, board, args.field_scale, args.debug)
    result = calibrate(views, size, fisheye=args.fisheye, rational=args.rational, skipped=skipped)
    camera = result.camera
    camera.scope_id, camera.camera_id = args.scope_id, args.camera_id
    if args.working_distance:
        camera.mm_per_px, camera.working_distance_mm = camera.scale_at(args.working_distance), args.working_distance
    camera.save(args.out)
    _report(result, size, views)
    if camera.mm_per_px:
        print(f"scale {camera.mm_per_px:.4f} mm/px at {camera.working_distance_mm:g} mm")
    print(f"wrote {args.out}")
    return 0


def _calibrate_stereo(args, board) -> int:
    from calibration.calibrate import collect_views
    from calibration.stereo import calibrate_stereo

    debug = {side: None if args.debug is None else Path(args.debug) / side for side in ("left", "right")}
    left_views, size, left_skipped = collect_views(args.stereo, board, args.field_scale, debug["left"])
    right_views, right_size, right_skipped = collect_views(args.right, board, args.field_scale, debug["right"])
    if size != right_size:
        raise UsageError(f"the cameras' pictures differ in size: left {size}, right {right_size}")
    stereo = calibrate_stereo(left_views, right_views, size, args.rational, (left_skipped, right_skipped))
    for camera in (stereo.left.camera, stereo.right.camera):
        camera.scope_id, camera.camera_id = args.scope_id, args.camera_id
    stereo.save(args.out)
    for side, result, views in (("left", stereo.left, left_views), ("right", stereo.right, right_views)):
        print(f"{side} camera:")
        _report(result, size, views)
    baseline = float(np.linalg.norm(stereo.translation))
    print(f"stereo from {stereo.pairs} pairs: RMS {stereo.rms:.3f} px, baseline {baseline:.3f} mm, "
          f"T {' '.join(f'{v:.3f}' for v in stereo.translation)} mm")
    print(f"wrote {args.out} (the left camera under the mono keys: orsight run --calibration uses it)")
    if args.debug:
        print(f"wrote {_write_rectified_pair(args, Path(args.debug))}: a rectified pair, to check by eye")
    return 0


def _write_rectified_pair(args, folder: Path) -> Path:
    """The first stereo pair rectified side by side, with lines a matched point must lie on."""
    import cv2

    from calibration.calibrate import input_files
    from calibration.fields import full_picture
    from calibration.stereo import rectify_maps

    maps = rectify_maps(args.out)
    halves = []
    for inputs, (map_x, map_y) in zip((args.stereo, args.right), maps):
        image, _ = full_picture(cv2.imread(str(input_files(inputs)[0]), cv2.IMREAD_COLOR), args.field_scale)
        halves.append(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR))
    pair = np.hstack(halves)
    for y in range(0, pair.shape[0], max(20, pair.shape[0] // 24)):
        cv2.line(pair, (0, y), (pair.shape[1] - 1, y), (0, 255, 0), max(1, pair.shape[1] // 1280))
    path = folder / "rectified-pair.png"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), pair)
    return path


def _report(result, size, views) -> None:
    """The fit, then each view: its error and points, or why it was left out."""
    camera, points = result.camera, {v.name: len(v.image_points) for v in views}
    k = camera.camera_matrix
    print(f"{camera.model} model from {len(result.per_view_rms)} views of {size[0]}x{size[1]}: RMS {camera.rms:.3f} px")
    print(f"fx {k[0, 0]:.2f}  fy {k[1, 1]:.2f}  cx {k[0, 2]:.2f}  cy {k[1, 2]:.2f}")
    print("distortion " + " ".join(f"{v:.5f}" for v in camera.distortion))
    if result.surface is not None:
        bend = max(result.surface.deviation_mm(v.object_points) for v in views if v.name in result.per_view_rms)
        print(f"the board is not flat: fitted its shape (up to {bend:.2f} mm off a plane; "
              f"RMS {result.flat_rms:.3f} px if taken as flat)")
    for name, error in result.per_view_rms.items():
        print(f"  view {name}: {error:.3f} px ({points[name]} points)")
    for name, error in result.rejected.items():
        print(f"  rejected {name}: {error:.3f} px (outlier)")
    for name, reason in result.skipped.items():
        print(f"  skipped {name}: {reason}")


def _make_board(board, dpi: float, out: str) -> int:
    """A printable PNG of ``board`` with its physical size, at ``dpi``."""
    from PIL import Image

    writable(out, "board image")
    image = board.texture(px_per_mm=dpi / 25.4)
    partial = Path(out).with_name(Path(out).name + ".partial.png")
    Image.fromarray(image).save(partial, dpi=(dpi, dpi))
    partial.replace(out)
    height, width = image.shape
    print(f"wrote {out}: {board.pattern} {board.cols}x{board.rows}, {board.square_mm:g} mm, "
          f"{width / dpi * 25.4:.0f} x {height / dpi * 25.4:.0f} mm at {dpi:g} dpi: print at 100 % (no fit to page), "
          "check one square with a ruler, glue it flat")
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
