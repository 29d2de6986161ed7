"""``orsight calibrate`` and ``scale``: camera intrinsics from board views, mm per pixel."""
from __future__ import annotations

from calibration.boards import PATTERNS
from pipeline.cli.common import UsageError, size_arg


def add_commands(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="camera intrinsics from board images or a video")
    calibrate.add_argument("inputs", nargs="+", metavar="INPUT", help="images and/or videos of the board")
    calibrate.add_argument("--pattern", choices=PATTERNS, required=True, help="the board printed")
    calibrate.add_argument("--board", type=size_arg, required=True,
                           help="COLSxROWS (inner corners / squares / circles)")
    calibrate.add_argument("--square", type=float, required=True, help="square side or circle spacing in mm")
    calibrate.add_argument("--fisheye", action="store_true", help="fisheye camera model")
    calibrate.add_argument("--rational", action="store_true", help="pinhole with the rational distortion model")
    calibrate.add_argument("--working-distance", type=float, default=None, help="store mm per pixel at this distance")
    calibrate.add_argument("--scope-id", default="", help="stored in the file: which endoscope")
    calibrate.add_argument("--camera-id", default="", help="stored in the file: which camera head")
    calibrate.add_argument("--out", required=True, help="calibration YAML to write")
    calibrate.set_defaults(handler=command_calibrate)
    scale = commands.add_parser("scale", help="mm per pixel from a reference object of known length")
    scale.add_argument("--points", required=True, help="X1,Y1,X2,Y2: the reference's ends in the image")
    scale.add_argument("--length-mm", type=float, required=True, help="the reference's real length")
    scale.add_argument("--calibration", default=None, help="undistort the points first and store the scale here")
    scale.set_defaults(handler=command_scale)


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
