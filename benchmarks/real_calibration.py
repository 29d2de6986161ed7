"""Calibration of a real stereo laparoscope from its dot-grid views, against the maker's figures.

Runs ``orsight calibrate --stereo`` as a user would on the views of ``--views`` (default: the
UCL dot-grid views in ../shared), then tabulates per view the dots found and the reprojection
error, each camera's intrinsics beside the reference (the data README's left-camera figures),
the board's bend, the baseline and the wall time.

    python benchmarks/real_calibration.py [--views ../shared/data/calibration-ucl/views] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from machine import write_results  # noqa: E402

VIEWS = HERE.parent.parent / "shared" / "data" / "calibration-ucl" / "views"
BOARD = ["--pattern", "dotgrid", "--board", "25x18", "--square", "5", "--fiducials", "8,5,16,5,8,12,16,12"]
REFERENCE_LEFT = {"fx": 1758.0, "fy": 1762.0, "cx": 903.0, "cy": 468.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=Path, default=VIEWS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    left = sorted(str(p) for p in args.views.glob("calib.left.images.*.png"))
    right = sorted(str(p) for p in args.views.glob("calib.right.images.*.png"))
    if not left or len(left) != len(right):
        print(f"no left/right view pairs in {args.views}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "stereo.yaml"
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pipeline.cli", "calibrate", "--stereo", *left, "--right", *right,
                              *BOARD, "--out", str(out)], capture_output=True, text=True, cwd=HERE.parent)
        seconds = time.perf_counter() - start
        if run.returncode:
            print(run.stdout + run.stderr, file=sys.stderr)
            return 1
        storage = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
        cameras = {side: storage.getNode(key).mat() for side, key in (("left", "camera_matrix"),
                                                                       ("right", "right_camera_matrix"))}
    rows = [{"what": f"view {name}: RMS px", "dots": int(points), "value": float(error)}
            for name, error, points in re.findall(r"view (\S+): ([\d.]+) px \((\d+) points\)", run.stdout)]
    intrinsics = {}
    for side, k in cameras.items():
        figures = {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]}
        intrinsics[side] = {name: round(float(value), 1) for name, value in figures.items()}
        for name, value in figures.items():
            reference = REFERENCE_LEFT[name] if side == "left" else None
            off = f"{100 * (value - reference) / reference:+.1f} %" if reference else "-"
            rows.append({"what": f"{side} {name} (reference {reference or '-'}: {off})", "dots": "",
                         "value": round(float(value), 1)})
    summary = [line for line in run.stdout.splitlines() if line.startswith(("pinhole", "the board", "stereo"))]
    rows += [{"what": line, "dots": "", "value": ""} for line in summary]
    rows.append({"what": "wall time, s (both cameras and the pair)", "dots": "", "value": round(seconds, 1)})
    write_results("real_calibration", "Real stereo laparoscope calibration (UCL dot grid)",
                  {"intrinsics": intrinsics, "reference_left": REFERENCE_LEFT, "seconds": seconds,
                   "output": run.stdout}, rows, args.out)
    print((args.out / "real_calibration.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
