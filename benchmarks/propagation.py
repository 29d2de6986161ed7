"""Mask propagation on the phantom: how well the mask shown fits the frame shown, held or moved.

The phantom's approach scene at 60 fps with its ground-truth masks standing in for a perfect model,
so that only the display's part is measured: the AI's mask of frame m reaches the display ``delay``
frames later and is replaced every ``period`` frames; each frame in between shows the newest mask
either as it came (``held``, what the display does by default) or moved onto the frame shown by
the display's own :class:`MaskPropagator` (``moved``, ``orsight display --propagate``). Frames
whose newest mask is over the stale limit are left out (the display hides those masks either way).
``--camera`` adds a scope's motion (a slow pan and turn of the whole scene behind the fixed field
stop, as an assistant's hand and the patient's breathing give), which the phantom itself lacks.

Figures per AI rate: IoU of instrument and vessel against the frame shown's truth (pooled over
frames), and the propagation's cost per frame (p50 / p99 ms: remembering the frame + moving the mask).

    python benchmarks/propagation.py [--seconds 10] [--size 1920x1080] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from machine import describe_machine

from pipeline.display.propagate import MaskPropagator
from pipeline.display.viewer import STALE_MS, percentiles
from pipeline.sources.phantom import INSTRUMENT, VESSEL, PhantomScene

FPS = 60.0
AI_RATES = ((2, 2), (4, 4), (6, 6))  # (period, delay) in video frames: AI 30 fps / 33 ms, 15 / 67, 10 / 100
CLASSES = {"instrument": INSTRUMENT, "vessel": VESSEL}
MARGIN = 1.25  # the scene is rendered this much larger than shown


def camera_motion(frame: int, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine of the scope's motion at ``frame``: a pan of up to 3 % of the width and a turn of up to 4 degrees."""
    t = frame / FPS
    width, height = size
    shift = (0.03 * width * np.sin(2 * np.pi * 0.25 * t), 0.02 * height * np.sin(2 * np.pi * 0.4 * t + 1.0))
    turn = 4.0 * np.sin(2 * np.pi * 0.15 * t)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), turn, 1.0)
    matrix[:, 2] += shift
    return matrix


def field_stop(width: int, height: int) -> np.ndarray:
    """(H, W) uint8, 1 inside the scope's round field of view (the phantom's own circle at this size)."""
    cx, cy, radius = PhantomScene(width, height).fov
    yy, xx = np.mgrid[:height, :width]
    return (((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2) <= radius * radius).astype(np.uint8)


def render(scene: PhantomScene, frame: int, size: tuple[int, int], stop: np.ndarray,
           camera: bool) -> tuple[np.ndarray, np.ndarray]:
    """(BGR picture, class map) of ``frame`` at ``size``: the middle of the (larger) ``scene``, moved by the
    scope's motion when ``camera``, behind the fixed field stop."""
    image, truth = scene.render(frame)
    class_map = truth.class_map
    width, height = size
    matrix = camera_motion(frame, (scene.width, scene.height)) if camera else cv2.getRotationMatrix2D(
        (scene.width / 2, scene.height / 2), 0.0, 1.0)
    matrix[:, 2] -= ((scene.width - width) / 2, (scene.height - height) / 2)  # then the middle, at ``size``
    image = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR) * stop[..., None]
    class_map = cv2.warpAffine(class_map, matrix, size, flags=cv2.INTER_NEAREST) * stop
    return image, class_map


def measure(frames: list[tuple[np.ndarray, np.ndarray]], period: int, delay: int) -> dict:
    """IoU held and moved, and the cost of moving, for masks every ``period`` frames arriving ``delay`` late."""
    propagator = MaskPropagator()
    tallies = {way: {name: [0, 0] for name in CLASSES} for way in ("held", "moved")}
    cost_ms = []
    for index, (image, truth) in enumerate(frames):
        started = time.perf_counter()
        propagator.remember(index, image)
        source = (index - delay) // period * period  # the newest mask the display has
        if source < 0 or (index - source) * 1e3 / FPS > STALE_MS:
            continue
        carried = propagator.carry(frames[source][1], source, index)
        cost_ms.append((time.perf_counter() - started) * 1e3)
        shown = {"held": frames[source][1], "moved": carried[0] if carried is not None else frames[source][1]}
        for way, class_map in shown.items():
            for name, value in CLASSES.items():
                painted, true = class_map == value, truth == value
                tallies[way][name][0] += int(np.count_nonzero(painted & true))
                tallies[way][name][1] += int(np.count_nonzero(painted | true))
    iou = {way: {name: round(i / u, 4) if u else None for name, (i, u) in classes.items()}
           for way, classes in tallies.items()}
    return {"ai_fps": round(FPS / period, 1), "delay_ms": round(delay * 1e3 / FPS, 1), "frames_scored": len(cost_ms),
            "iou": iou, "cost_ms": percentiles(cost_ms)}


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; {result['video']}.", "",
             "| scope | AI fps | mask delay | instrument IoU held / moved | vessel IoU held / moved | cost p50 / p99 ms |",
             "|---|---|---|---|---|---|"]
    for camera, rows in result["runs"].items():
        for row in rows:
            held, moved, cost = row["iou"]["held"], row["iou"]["moved"], row["cost_ms"]
            lines.append(f"| {camera} | {row['ai_fps']:g} | {row['delay_ms']:g} ms | {held['instrument']} / "
                         f"{moved['instrument']} | {held['vessel']} / {moved['vessel']} | {cost['p50']} / {cost['p99']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 60 fps scene")
    parser.add_argument("--size", default="1920x1080", help="picture size WxH")
    parser.add_argument("--json", default=None, help="write the figures here (and a .md beside it)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    # rendered a quarter larger than shown, so that the moving scope finds scene, not black, behind its stop
    scene = PhantomScene(round(width * MARGIN), round(height * MARGIN), fps=FPS, scenario="approach")
    stop = field_stop(width, height)
    count = int(args.seconds * FPS)
    runs = {}
    for camera in (False, True):
        frames = [render(scene, frame, (width, height), stop, camera) for frame in range(count)]
        runs["moving" if camera else "still"] = [measure(frames, period, delay) for period, delay in AI_RATES]
    result = {"machine": describe_machine(), "video": f"phantom:approach {width}x{height}, {args.seconds:g} s at "
              f"{FPS:g} fps, ground-truth masks as the AI's", "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        Path(args.json).with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
