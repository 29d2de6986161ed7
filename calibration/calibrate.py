"""Camera calibration from views of a board: collect views, fit, reject outlier views.

    views, size, skipped = collect_views(["shots/*.png" files or a video], board, debug_dir="seen/")
    result = calibrate(views, size, fisheye=False, skipped=skipped)
    result.camera.save("scope.yaml")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.board_shape import BoardSurface, fit_board_surface
from calibration.boards import Board, BoardNotFound
from calibration.camera import CalibrationError, CameraModel
from calibration.fields import full_picture

MIN_VIEWS = 6
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg")
SAMPLED_FRAMES = 80  # frames looked at per video
BLUR_FRACTION = 0.35  # views sharper than this fraction of the median sharpness are kept
DUPLICATE_PX = 0.01  # views whose points moved less than this fraction of the diagonal are skipped
OUTLIER_FACTOR = 3.0  # views with error above this times the median (and above 1 px) are rejected
BENT_BOARD_GAIN = 0.8  # a bent board is kept when it brings the RMS below this fraction of the flat board's


@dataclass
class View:
    name: str
    frame: int  # its place among the inputs' frames (pairs a stereo pair's views)
    image_points: np.ndarray  # (N, 2)
    object_points: np.ndarray  # (N, 3)
    sharpness: float


@dataclass
class Calibration:
    camera: CameraModel
    per_view_rms: dict[str, float]
    rejected: dict[str, float] = field(default_factory=dict)  # outlier views and their error
    skipped: dict[str, str] = field(default_factory=dict)  # inputs not used, and why
    surface: BoardSurface | None = None  # the board's fitted shape, when it is not flat
    flat_rms: float = 0.0  # the RMS with the board taken as flat


def input_files(inputs: list[str]) -> list[Path]:
    """The inputs, each folder replaced by its videos and the pictures OpenCV can read, in name order."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [file for file in sorted(path.iterdir()) if file.is_file() and (
                file.suffix.lower() in VIDEO_SUFFIXES or cv2.haveImageReader(str(file)))]
            if not found:
                raise CalibrationError(f"no pictures or videos in folder {item}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CalibrationError(f"no such file or folder: {item}")
    return files


def _view_names(paths: list[Path]) -> list[str]:
    """Each input's name: its file name, or as much of its path as tells it apart from the others."""
    names = [path.name for path in paths]
    depth = 1
    while len(set(names)) < len(names) and depth < max(len(p.parts) for p in paths):
        depth += 1
        names = ["/".join(path.parts[-depth:]) for path in paths]
    return names


def _frames(inputs: list[str]):
    """(name, BGR image) of every image input and of frames sampled evenly from videos."""
    paths = input_files(inputs)
    for path, name in zip(paths, _view_names(paths)):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            video = cv2.VideoCapture(str(path))
            total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or SAMPLED_FRAMES
            step = max(1, total // SAMPLED_FRAMES)
            index = 0
            while True:
                ok, frame = video.read()
                if not ok:
                    break
                if index % step == 0:
                    yield f"{name}#{index}", frame
                index += 1
            video.release()
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CalibrationError(f"cannot read image {path}")
        yield name, image


def collect_views(inputs: list[str], board: Board, field_scale: str | int = "auto",
                  debug_dir: str | Path | None = None) -> tuple[list[View], tuple[int, int], dict[str, str]]:
    """Views where the board was found, minus blurred ones and near-duplicates; the picture size;
    and why each other input was skipped. ``debug_dir``: a picture of what was found in each view."""
    views, skipped, size, how = [], {}, None, ""
    for frame, (name, image) in enumerate(_frames(inputs)):
        image, how = full_picture(image, field_scale)
        frame_size = (image.shape[1], image.shape[0])
        if size is None:
            size = frame_size
        elif frame_size != size:
            raise CalibrationError(f"inconsistent image sizes: {name} is {frame_size[0]}x{frame_size[1]}, "
                                   f"earlier inputs {size[0]}x{size[1]}")
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        try:
            points, board_points = board.detect(gray)
        except BoardNotFound as reason:
            skipped[name] = f"board not found: {reason}"
            points = None
        else:
            views.append(View(name, frame, points, board_points, float(cv2.Laplacian(gray, cv2.CV_64F).var())))
        if debug_dir is not None:
            _write_debug(Path(debug_dir), name, image, points, board.point_ids(board_points) if points is not None
                         else [], skipped.get(name, how))
    if views:
        threshold = BLUR_FRACTION * float(np.median([v.sharpness for v in views]))
        diagonal = float(np.hypot(*size))
        kept = []
        for view in views:
            if view.sharpness < threshold:
                skipped[view.name] = "blurred"
            elif any(len(k.image_points) == len(view.image_points) and
                     np.abs(k.image_points - view.image_points).mean() < DUPLICATE_PX * diagonal for k in kept):
                skipped[view.name] = "duplicate of an earlier view"
            else:
                kept.append(view)
        views = kept
    return views, size, skipped


def _write_debug(folder: Path, name: str, image: np.ndarray, points: np.ndarray | None, ids: list[int],
                 note: str) -> None:
    """A picture per view: its points with their board ids, or why it was skipped (wrapped to fit).

    Written as ``folder/NAME.png`` with the view's name made a file name (``a/left.png`` ->
    ``a__left.png``, a video's frame ``clip.mp4#40`` -> ``clip.mp4-40.png``): names never collide."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = image.copy()
    scale = max(1.0, picture.shape[1] / 640)
    thick = max(1, round(scale))
    for board_id, (x, y) in zip(ids, points if points is not None else []):
        cv2.circle(picture, (round(x), round(y)), round(3 * scale), (0, 255, 0), thick, cv2.LINE_AA)
        cv2.putText(picture, str(board_id), (round(x + 3 * scale), round(y - 3 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.22 * scale, (0, 0, 255), max(1, thick // 2), cv2.LINE_AA)
    found = f"{len(points)} points" if points is not None else ""
    for row, line in enumerate(_wrapped(" ".join(filter(None, (found, note))), picture.shape[1] - 20, 0.6 * scale,
                                        thick)):
        origin = (10, round((row + 1) * 26 * scale))
        cv2.putText(picture, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), 3 * thick, cv2.LINE_AA)
        cv2.putText(picture, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 255), thick, cv2.LINE_AA)
    stem = Path(name.split("#")[0]).with_suffix("").as_posix().replace("/", "__")
    frame = f"-{name.split('#')[1]}" if "#" in name else ""
    cv2.imwrite(str(folder / f"{stem}{frame}.png"), picture)


def _wrapped(text: str, width: int, font_scale: float, thickness: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels."""
    lines = [""]
    for word in text.split():
        candidate = f"{lines[-1]} {word}".strip()
        fits = cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][0] <= width
        if fits or not lines[-1]:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _fisheye_flag(name: str) -> int:
    """OpenCV 4 keeps fisheye flags in cv2.fisheye, OpenCV 5 in cv2."""
    return getattr(cv2.fisheye, name, None) or getattr(cv2, name)


def _fit(views: list[View], size: tuple[int, int], fisheye: bool, rational: bool):
    """Camera matrix, distortion and per-view RMS reprojection errors."""
    objects = [v.object_points.astype(np.float32).reshape(-1, 1, 3) for v in views]
    points = [v.image_points.astype(np.float32).reshape(-1, 1, 2) for v in views]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-9)
    if fisheye:
        flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
        objects = [o.reshape(1, -1, 3).astype(np.float64) for o in objects]
        points = [p.reshape(1, -1, 2).astype(np.float64) for p in points]
        _, k, d, rvecs, tvecs = cv2.fisheye.calibrate(objects, points, size, np.zeros((3, 3)), np.zeros((4, 1)),
                                                      flags=flags, criteria=criteria)
        errors = []
        for obj, img, r, t in zip(objects, points, rvecs, tvecs):
            projected, _ = cv2.fisheye.projectPoints(obj, r, t, k, d)
            errors.append(float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=-1)))))
        return k, d.ravel(), errors
    flags = cv2.CALIB_RATIONAL_MODEL if rational else 0
    _, k, d, _, _, _, _, per_view = cv2.calibrateCameraExtended(objects, points, size, None, None, flags=flags,
                                                               criteria=criteria)
    return k, d.ravel(), [float(e) for e in per_view.ravel()]


def calibrate(views: list[View], size: tuple[int, int], fisheye: bool = False, rational: bool = False,
              skipped: dict[str, str] | None = None) -> Calibration:
    """Fit, drop views whose error is far above the rest, refit; at least ``MIN_VIEWS`` views."""
    skipped = skipped or {}
    if len(views) < MIN_VIEWS:
        reasons = {}
        for reason in skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        found = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "no other inputs"
        raise CalibrationError(f"too few usable views: {len(views)} (need {MIN_VIEWS}); {found}")
    try:
        k, d, errors = _fit(views, size, fisheye, rational)
        median = float(np.median(errors))
        outliers = {v.name: e for v, e in zip(views, errors) if e > max(1.0, OUTLIER_FACTOR * median)}
        if outliers and len(views) - len(outliers) >= MIN_VIEWS:
            views = [v for v in views if v.name not in outliers]
            k, d, errors = _fit(views, size, fisheye, rational)
        else:
            outliers = {}
    except cv2.error as error:
        raise CalibrationError(f"calibration did not converge: {str(error).strip().splitlines()[-1]}") from None
    flat_rms = _overall(errors, views)
    surface = None
    if not fisheye:
        bent = fit_board_surface(views, k, d, size, _extent(views))
        if _overall(bent[3], views) < BENT_BOARD_GAIN * flat_rms:
            surface, k, d, errors = bent
    per_view = {v.name: e for v, e in zip(views, errors)}
    camera = CameraModel("fisheye" if fisheye else "pinhole", k, d, size, rms=_overall(errors, views),
                         view_errors=per_view)
    return Calibration(camera, per_view, outliers, skipped, surface, flat_rms)


def _overall(errors: list[float], views: list[View]) -> float:
    """RMS over every point of the views, from each view's RMS."""
    return float(np.sqrt(np.sum([e * e * len(v.image_points) for e, v in zip(errors, views)])
                         / sum(len(v.image_points) for v in views)))


def _extent(views: list[View]) -> tuple[float, float]:
    """The board's width and height in mm, as far as the views' points reach (at least one square)."""
    reach = np.max([v.object_points[:, :2].max(axis=0) for v in views], axis=0)
    return float(max(reach[0], 1.0)), float(max(reach[1], 1.0))
