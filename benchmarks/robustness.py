"""How the model holds when the picture changes as it does between theatres, scopes and
procedures: ``orsight eval`` on the same labelled frames, each condition applied to every
picture (the masks unchanged), side by side in one run.

Conditions: another light source or white balance (warm, cool, a red cast as in a bloody field),
the light turned down or up, surgical smoke (haze), a lower-resolution scope (half, then back up),
defocus blur, sensor noise, and heavy recording compression (JPEG 30). A model that is general
loses little on any of them; one tuned to one dataset's look loses much on some.

    python benchmarks/robustness.py --data ../shared/data/endoscapes/val [--model X.onnx] [--out benchmarks/results]
    python benchmarks/robustness.py --data PHANTOM --image-glob 'images/val/*' \\
        --mask-pattern 'masks/val/{stem}.png' --mapping 1:0,2:1 --ignore 255
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from machine import describe_machine  # noqa: E402

from pipeline.cli.common import integers, pairs, write_json  # noqa: E402
from pipeline.training.pairs import DEFAULT_IMAGE_GLOB, DEFAULT_MASK_PATTERN  # noqa: E402


def _gains(blue: float, green: float, red: float):
    gains = np.array([blue, green, red], np.float32)
    return lambda image, index: np.clip(image * gains, 0, 255).astype(np.uint8)


def _haze(image: np.ndarray, index: int) -> np.ndarray:
    return cv2.addWeighted(image, 0.6, np.full_like(image, 200), 0.4, 0)  # 40 % light grey veil


def _half_resolution(image: np.ndarray, index: int) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _blur(image: np.ndarray, index: int) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=0.004 * max(image.shape[:2]))  # defocus: 0.4 % of the side


def _noise(image: np.ndarray, index: int) -> np.ndarray:
    noise = np.random.default_rng(index).normal(0, 8, image.shape)  # the same noise for every model
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, index: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_COLOR)


CONDITIONS = {  # name -> transform(image BGR, frame index) -> image; None: the pictures as they are
    "original": None,
    "warm light": _gains(0.8, 1.0, 1.15),
    "cool light": _gains(1.15, 1.0, 0.85),
    "red cast": _gains(0.85, 0.85, 1.1),
    "dark": _gains(0.55, 0.55, 0.55),
    "bright": _gains(1.35, 1.35, 1.35),
    "smoke": _haze,
    "half resolution": _half_resolution,
    "defocus": _blur,
    "noise": _noise,
    "jpeg 30": _jpeg,
}


def run(args) -> dict:
    from pipeline.stages.infer import load_model
    from pipeline.training.evaluate import evaluate

    model = load_model(args.model)
    names = [c for c in args.conditions.split(",") if c] if args.conditions else list(CONDITIONS)
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"unknown conditions {unknown}: known {list(CONDITIONS)}")
    mapping, ignore = pairs(args.mapping, "--mapping"), integers(args.ignore, "--ignore")
    rows = []
    for name in names:
        report = evaluate(args.data, model, mapping, ignore, image_glob=args.image_glob,
                          mask_pattern=args.mask_pattern, transform=CONDITIONS[name])
        rows.append({"condition": name, "frames": report["frames"],
                     "classes": {cls: {k: figures[k] for k in ("iou", "precision", "recall", "detection_rate",
                                                              "false_alarm_rate")}
                                 for cls, figures in report["classes"].items()}})
        print(f"{name:16s} " + "  ".join(f"{cls} {figures['iou'] or 0:.3f}" for cls, figures in rows[-1]["classes"].items()),
              flush=True)
    return {"machine": describe_machine(model=model.description), "data": str(args.data), "rows": rows}


def markdown(result: dict) -> str:
    """A row per condition: each class's IoU (and its change from the original pictures), detection and false alarms."""
    classes = list(result["rows"][0]["classes"])
    original = next((row for row in result["rows"] if row["condition"] == "original"), None)
    lines = [f"Model: {result['machine']['model']}; data: {result['data']}, {result['rows'][0]['frames']} frames.", "",
             "| condition | " + " | ".join(f"{c} IoU (change) | {c} detected / false alarm" for c in classes) + " |",
             "|---|" + "---|---|" * len(classes)]

    def share(value):
        return f"{value:.0%}" if value is not None else "-"

    for row in result["rows"]:
        cells = []
        for cls in classes:
            figures = row["classes"][cls]
            iou = figures["iou"] or 0.0
            change = f" ({iou - (original['classes'][cls]['iou'] or 0.0):+.3f})" if original and row is not original else ""
            cells += [f"{iou:.3f}{change}", f"{share(figures['detection_rate'])} / {share(figures['false_alarm_rate'])}"]
        lines.append(f"| {row['condition']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of labelled frames (as `orsight eval --data`)")
    parser.add_argument("--image-glob", default=DEFAULT_IMAGE_GLOB)
    parser.add_argument("--mask-pattern", default=DEFAULT_MASK_PATTERN)
    parser.add_argument("--mapping", default="6:0,3:1", help="mask value:class index pairs (default Endoscapes)")
    parser.add_argument("--ignore", default="7,255")
    parser.add_argument("--model", default=None, help=".onnx or .pt (default: the shipped model)")
    parser.add_argument("--conditions", default=None, help=f"a comma-separated subset of: {', '.join(CONDITIONS)}")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for robustness.json and robustness.md")
    args = parser.parse_args()
    result = run(args)
    write_json(Path(args.out) / "robustness.json", result)
    (Path(args.out) / "robustness.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
