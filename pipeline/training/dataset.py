"""Class-index masks -> YOLO segmentation labels, and the phantom's labelled dataset.

    lines = mask_to_yolo_lines(class_map, {1: 0, 2: 1})   # map value -> class index
    write_phantom_dataset("data/phantom", n=600)
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.phantom import NAMES, PhantomScene, SCENARIOS
from pipeline.preprocess import fov_crop

MIN_REGION_PX = 12  # connected regions smaller than this are dropped as fragments


def mask_to_yolo_lines(class_map: np.ndarray, value_to_class: dict[int, int]) -> list[str]:
    """One ``cls x1 y1 x2 y2 ...`` line (normalised polygon) per connected region of each class.

    Holes are kept out by tracing outer contours only; regions under ``MIN_REGION_PX`` dropped.
    """
    height, width = class_map.shape
    lines = []
    for value, cls in value_to_class.items():
        binary = (class_map == value).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for region in range(1, count):
            if stats[region, cv2.CC_STAT_AREA] < MIN_REGION_PX:
                continue
            contours, _ = cv2.findContours((labels == region).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            contour = max(contours, key=cv2.contourArea).reshape(-1, 2)
            if len(contour) < 3:
                continue
            xy = (contour + 0.5) / (width, height)
            lines.append(f"{cls} " + " ".join(f"{v:.5f}" for v in xy.ravel()))
    return lines


def write_phantom_dataset(out: str | Path, n: int = 600, size: int = 320, val_fraction: float = 0.15,
                          seed: int = 0) -> Path:
    """Render ``n`` phantom frames, cropped to the field of view as the pipeline does; returns data.yaml."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    frames_per_scene = 10
    for index in range(n):
        if index % frames_per_scene == 0:
            width = int(rng.choice([854, 1280, 1920]))
            scene = PhantomScene(width, width * 9 // 16, scenario=str(rng.choice(SCENARIOS[:3])),
                                 seed=int(rng.integers(1 << 30)))
        image, truth = scene.render(int(rng.integers(0, 3000)))
        x, y, w, h = fov_crop(truth.fov, scene.width, scene.height)
        image = cv2.resize(image[y:y + h, x:x + w], (size, size), interpolation=cv2.INTER_AREA)
        class_map = cv2.resize(truth.class_map[y:y + h, x:x + w], (size, size), interpolation=cv2.INTER_NEAREST)
        split = "val" if index < n * val_fraction else "train"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "images" / split / f"{index:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines = mask_to_yolo_lines(class_map, {1: 0, 2: 1})
        (out / "labels" / split / f"{index:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(out.resolve()), "train": "images/train", "val": "images/val",
                                         "names": dict(enumerate(NAMES))}))
    return data_yaml
