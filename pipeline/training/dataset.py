"""Datasets: class-index / colour masks and COCO JSON -> YOLO segmentation and semantic datasets.

Images are cropped to the endoscope's field of view exactly as the pipeline's preprocess
does (train on the same crop the model will see), then resized.

    lines = mask_to_yolo_lines(class_map, {1: 0, 2: 1})   # map value -> class index
    convert_masks("endoscapes/", "data/endoscapes-yolo", {3: 1, 6: 0}, ignore=(7, 255))
    write_phantom_dataset("data/phantom", n=600)
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.sources.phantom import NAMES, SCENARIOS, PhantomScene
from pipeline.stages.preprocess.cpu import letterbox
from pipeline.stages.preprocess.geometry import GeometryPlan
from pipeline.training.pairs import DEFAULT_IMAGE_GLOB, DEFAULT_MASK_PATTERN, image_mask_pairs, sample_name

ENDOSCAPES_MAPPING = {6: 0, 3: 1}  # tool -> instrument (class 0), cystic artery -> vessel (class 1)
ENDOSCAPES_IGNORE = (7, 255)
IGNORE = 255  # value of ignored pixels in converted semantic masks

MIN_REGION_PX = 12  # connected regions smaller than this are dropped as fragments


def _bridge_holes(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One polygon for a region with holes: each hole joined to the outline by a zero-width cut.

    Filled even-odd (as OpenCV and ultralytics rasterise labels), the holes stay empty.
    """
    polygon = outer
    for hole in holes:
        gaps = ((polygon[:, None, :] - hole[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        polygon = np.concatenate([polygon[:i + 1], hole[j:], hole[:j + 1], polygon[i:]])
    return polygon


def mask_to_yolo_lines(class_map: np.ndarray, value_to_class: dict[int, int]) -> list[str]:
    """One ``cls x1 y1 x2 y2 ...`` line (normalised polygon) per connected region of each class.

    Holes (a loop of vessels around tissue) are kept out by joining them to the outline;
    regions under ``MIN_REGION_PX`` pixels are dropped as fragments.
    """
    height, width = class_map.shape
    lines = []
    for value, cls in value_to_class.items():
        binary = (class_map == value).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for region in range(1, count):
            if stats[region, cv2.CC_STAT_AREA] < MIN_REGION_PX:
                continue
            contours, hierarchy = cv2.findContours((labels == region).astype(np.uint8), cv2.RETR_CCOMP,
                                                   cv2.CHAIN_APPROX_SIMPLE)
            outer = int(np.argmax([cv2.contourArea(c) if h[3] < 0 else -1 for c, h in zip(contours, hierarchy[0])]))
            holes = [c.reshape(-1, 2) for c, h in zip(contours, hierarchy[0]) if h[3] == outer]
            polygon = _bridge_holes(contours[outer].reshape(-1, 2), holes)
            if len(polygon) < 3:
                continue
            xy = (polygon + 0.5) / (width, height)
            lines.append(f"{cls} " + " ".join(f"{v:.5f}" for v in xy.ravel()))
    return lines


def write_phantom_dataset(out: str | Path, n: int = 600, size: int = 320, val_fraction: float = 0.15,
                          seed: int = 0) -> Path:
    """Render ``n`` labelled phantom frames (10 per scene, scenes of random size and layout)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for index in range(n):
        if index % 10 == 0:
            width = int(rng.choice([854, 1280, 1920]))
            scene = PhantomScene(width, width * 9 // 16, scenario=str(rng.choice(SCENARIOS[:3])),
                                 seed=int(rng.integers(1 << 30)))
        image, truth = scene.render(int(rng.integers(0, 3000)))
        split = "val" if index < n * val_fraction else "train"
        write_sample(out, split, f"{index:06d}", image, truth.class_map, size, NAMES)
    return write_data_yaml(out, ["train", "val"], NAMES)


def remap_mask(mask: np.ndarray, mapping: dict[int, int], ignore: tuple[int, ...]) -> np.ndarray:
    """Source mask values -> ``class index + 1`` (0 background, 255 ignore)."""
    table = np.zeros(256, np.uint8)
    for value, cls in mapping.items():
        table[value] = cls + 1
    for value in ignore:
        table[value] = IGNORE
    return table[mask]


def colour_to_index(mask_bgr: np.ndarray, colours: dict[tuple[int, int, int], int]) -> np.ndarray:
    """Colour-coded mask (CholecSeg8k style; ``colours``: RGB -> value) -> class-index mask."""
    rgb = mask_bgr[..., ::-1].astype(np.int32)
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.zeros(mask_bgr.shape[:2], np.uint8)
    for (r, g, b), value in colours.items():
        out[key == (r << 16 | g << 8 | b)] = value
    return out


def class_values(raw: np.ndarray, path: Path, colours: dict | None = None) -> np.ndarray:
    """A mask as class values: grey as it is; RGB or RGBA through ``colours`` (RGB -> value), or as
    grey when its channels are equal (a grey mask saved in colour)."""
    if raw.ndim == 2:
        return raw
    bgr = raw[..., :3]
    if colours is not None:
        return colour_to_index(bgr, colours)
    if (bgr == bgr[..., :1]).all():
        return np.ascontiguousarray(bgr[..., 0])
    raise ValueError(f"{path} is a colour mask: give its colour table (--colours FILE, R,G,B: value)")


def coco_to_index(annotations: dict, image_id: int, size: tuple[int, int]) -> np.ndarray:
    """COCO instance annotations (polygons) of one image -> class-index mask of category ids."""
    import cv2 as _cv2

    width, height = size
    out = np.zeros((height, width), np.uint8)
    for annotation in annotations["annotations"]:
        if annotation["image_id"] != image_id or not isinstance(annotation["segmentation"], list):
            continue
        for polygon in annotation["segmentation"]:
            points = np.round(np.array(polygon, np.float64).reshape(-1, 2)).astype(np.int32)
            _cv2.fillPoly(out, [points], int(annotation["category_id"]))
    return out


def write_sample(out: Path, split: str, name: str, image: np.ndarray, class_map: np.ndarray, size: int,
                 names: tuple[str, ...]) -> None:
    """One converted sample: the field-of-view square letterboxed as the pipeline does; YOLO
    polygons; the class mask (class index + 1, 255 = ignore)."""
    geometry, _ = GeometryPlan(size)(image)
    image = letterbox(image, geometry)  # exactly what the pipeline's preprocess feeds the model
    class_map = letterbox(class_map, geometry, interpolation=cv2.INTER_NEAREST, pad=0)
    for folder in ("images", "labels", "masks"):
        (out / folder / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(out / "masks" / split / f"{name}.png"), class_map)
    lines = mask_to_yolo_lines(class_map, {i + 1: i for i in range(len(names))})
    (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def convert_masks(source: str | Path, out: str | Path, mapping: dict[int, int] | None = None,
                  ignore: tuple[int, ...] = ENDOSCAPES_IGNORE, names: tuple[str, ...] = NAMES, size: int = 480,
                  colours: dict | None = None, image_glob: str = DEFAULT_IMAGE_GLOB,
                  mask_pattern: str = DEFAULT_MASK_PATTERN) -> Path:
    """``source/{train,val,test}/`` -> YOLO segmentation + semantic dataset; returns data.yaml.

    In each split folder the images match ``image_glob`` and their masks ``mask_pattern`` (see
    ``pairs``: nested layouts, other names). Masks are class-index PNGs (``mapping``: value ->
    class index, ``ignore`` values; grey, RGB or RGBA) or, with ``colours`` (RGB -> value), colour-coded.
    """
    source, out = Path(source), Path(out)
    mapping = ENDOSCAPES_MAPPING if mapping is None else mapping
    splits = [s for s in ("train", "val", "test") if (source / s).is_dir()]
    if not splits:
        raise ValueError(f"{source} has no train, val or test folder")
    for split in splits:
        for image_path, mask_path in image_mask_pairs(source / split, image_glob, mask_pattern):
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            if image is None or raw is None:
                raise ValueError(f"cannot read {image_path if image is None else mask_path}")
            values = class_values(raw, mask_path, colours)
            name = sample_name(source / split, image_path, image_glob)
            write_sample(out, split, name, image, remap_mask(values, mapping, ignore), size, names)
    return write_data_yaml(out, splits, names)


def write_data_yaml(out: Path, splits: list[str], names: tuple[str, ...]) -> Path:
    """The ultralytics dataset files; returns ``data.yaml`` (instances from ``labels/``).

    ``semantic.yaml`` beside it trains semantic models from ``masks/`` (class index + 1,
    0 background, 255 ignore): the same values, with ``background`` as class 0.
    """
    splits_map = {split: f"images/{split}" for split in splits}
    instance = {"path": str(out.resolve()), "names": dict(enumerate(names)), **splits_map}
    semantic = {**instance, "names": dict(enumerate(("background", *names))), "masks_dir": "masks"}
    (out / "semantic.yaml").write_text(yaml.safe_dump(semantic))
    (out / "data.yaml").write_text(yaml.safe_dump(instance))
    return out / "data.yaml"
