"""Evaluation on labelled frames through the live graph itself (the Python API's :class:`Analyzer`).

    report = evaluate("endoscapes/val", load_model("best.onnx"))
    # report["classes"]["vessel"]["iou"], report["mask_map50_95"], report["ms_per_frame"]
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.api import Analyzer
from pipeline.stages.preprocess.geometry import input_dims
from pipeline.training.dataset import (
    ENDOSCAPES_IGNORE,
    ENDOSCAPES_MAPPING,
    IGNORE,
    class_values,
    remap_mask,
)
from pipeline.training.pairs import DEFAULT_IMAGE_GLOB, DEFAULT_MASK_PATTERN, MissingMasks, image_mask_pairs
from pipeline.training.vessel_metrics import vessel_report

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
MIN_ALARM_PX = 50  # a prediction this large (source pixels) in a frame without the class is a false alarm


def _match(pred_masks, pred_cls, true_masks, true_cls) -> np.ndarray:
    """(n_pred, 10) true-positive flags: greedy by score (predictions come sorted), per IoU threshold."""
    tp = np.zeros((len(pred_masks), len(IOU_THRESHOLDS)), bool)
    if not len(pred_masks) or not len(true_masks):
        return tp
    p = pred_masks.reshape(len(pred_masks), -1).astype(np.float32)
    t = true_masks.reshape(len(true_masks), -1).astype(np.float32)
    inter = p @ t.T
    iou = inter / (p.sum(1)[:, None] + t.sum(1)[None, :] - inter + 1e-9)
    iou[pred_cls[:, None] != true_cls[None, :]] = 0
    for k, threshold in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(true_masks), bool)
        for i in range(len(pred_masks)):
            candidates = np.where(~taken & (iou[i] >= threshold))[0]
            if len(candidates):
                j = candidates[np.argmax(iou[i, candidates])]
                taken[j], tp[i, k] = True, True
    return tp


def _instances(class_map: np.ndarray, classes: int):
    """Ground-truth instances: one per connected region of each class."""
    masks, cls = [], []
    for c in range(classes):
        count, labels = cv2.connectedComponents((class_map == c + 1).astype(np.uint8))
        for region in range(1, count):
            masks.append(labels == region)
            cls.append(c)
    return np.array(masks, bool).reshape(-1, *class_map.shape), np.array(cls, int)


def pixel_samples(segmentation, truth: np.ndarray, step: int = 2) -> tuple[np.ndarray, np.ndarray] | None:
    """``(logits (n, 1 + classes), truth class values (n,))`` at every ``step``-th model-input pixel of the
    picture (not the padding, not ignored pixels); None without logits."""
    if segmentation.logits is None:
        return None
    geometry = segmentation.geometry
    width, height = geometry.input_size
    x0, y0, x1, y1 = geometry.content_box()
    cx, cy, cw, ch = geometry.crop
    logits = cv2.resize(np.ascontiguousarray(segmentation.logits.transpose(1, 2, 0), np.float32), (width, height),
                        interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)[y0:y1:step, x0:x1:step]
    values = cv2.resize(truth[cy:cy + ch, cx:cx + cw], (x1 - x0, y1 - y0),
                        interpolation=cv2.INTER_NEAREST)[::step, ::step]
    valid = values != IGNORE
    return logits[valid], values[valid]


def labelled_frame(path: Path, mask_path: Path, mapping: dict[int, int], ignore: tuple[int, ...],
                   colours: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """(BGR picture, class values with ``IGNORE``) of one labelled frame; ValueError naming the file at fault."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if image is None or raw is None:
        raise ValueError(f"cannot read {path if image is None else mask_path}")
    truth = remap_mask(class_values(raw, mask_path, colours), mapping, ignore)
    if truth.shape != image.shape[:2]:
        raise ValueError(f"{mask_path} is {truth.shape[1]}x{truth.shape[0]}, its image "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image, truth


class PixelScores:
    """Per class, over the frames added: pixel IoU, Dice, precision and recall, per-frame IoU, and the frames
    with the class detected / without it falsely painted.

    Detection rate: of the frames where the class is present, those where the prediction overlaps it.
    False-alarm rate: of the frames where it is absent, those where it is painted anyway (``MIN_ALARM_PX``
    pixels or more). That is what an alert feels, more than IoU.
    """

    def __init__(self, classes: int):
        self.classes = classes
        self.inter, self.union, self.painted, self.true = (np.zeros(classes) for _ in range(4))
        self.frame_iou: list[list[float]] = [[] for _ in range(classes)]
        self.present, self.detected, self.absent, self.false_alarms = (np.zeros(classes, int) for _ in range(4))

    def add(self, class_map: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> None:
        for c in range(self.classes):
            p, t = (class_map == c + 1) & valid, (truth == c + 1) & valid
            i, u = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
            self.inter[c] += i
            self.union[c] += u
            self.painted[c] += p.sum()
            self.true[c] += t.sum()
            if u:
                self.frame_iou[c].append(i / u)
            if t.any():
                self.present[c] += 1
                self.detected[c] += bool(i)
            else:
                self.absent[c] += 1
                self.false_alarms[c] += int(p.sum()) >= MIN_ALARM_PX

    def report(self, c: int) -> dict:
        inter, union, painted, true = self.inter[c], self.union[c], self.painted[c], self.true[c]
        return {"iou": float(inter / union) if union else None,
                "dice": float(2 * inter / (painted + true)) if painted + true else None,
                "precision": float(inter / painted) if painted else None,  # of the pixels painted
                "recall": float(inter / true) if true else None,  # of the true pixels
                "frame_mean_iou": float(np.mean(self.frame_iou[c])) if self.frame_iou[c] else None,
                "frames_scored": len(self.frame_iou[c]),  # frames where the class is in the truth or the prediction
                "detection_rate": float(self.detected[c] / self.present[c]) if self.present[c] else None,
                "frames_present": int(self.present[c]),
                "false_alarm_rate": float(self.false_alarms[c] / self.absent[c]) if self.absent[c] else None,
                "frames_absent": int(self.absent[c])}


def _mask_map(tps: list, confs: list, pred_classes: list, target_classes: list) -> dict:
    """Mask mAP50-95 and mAP50 over the instances matched frame by frame (ultralytics' AP; None on the
    runtime install, which has no ultralytics)."""
    try:
        from ultralytics.utils.metrics import ap_per_class
    except ImportError:
        return {"mask_map50_95": None, "mask_map50": None}

    tp, conf = np.concatenate(tps), np.concatenate(confs)
    ap = ap_per_class(tp, conf, np.concatenate(pred_classes), np.concatenate(target_classes))[5] \
        if len(tp) else np.zeros((0, 10))
    return {"mask_map50_95": float(ap.mean()) if ap.size else 0.0, "mask_map50": float(ap[:, 0].mean()) if ap.size
            else 0.0}


def _scored_pairs(folder: Path, image_glob: str, mask_pattern: str, skip_missing: bool):
    """(image, mask) pairs to score and the images left out for want of a mask (``skip_missing``; else the
    missing masks are a ValueError listing them)."""
    try:
        return image_mask_pairs(folder, image_glob, mask_pattern), []
    except MissingMasks as missing:
        if not skip_missing:
            raise ValueError(f"{missing}; --skip-missing scores the others") from None
        return missing.pairs, [str(p) for p in missing.missing]


def check_mapping(pairs: list[tuple[Path, Path]], names: tuple[str, ...], mapping: dict[int, int],
                  ignore: tuple[int, ...], colours: dict | None) -> None:
    """ValueError when a class of the model gets no ground truth in any mask: scored, it would read 0.000
    with every frame a false alarm. The message lists the values the masks hold and a suggestion."""
    found: dict[int, int] = {}
    for _, mask_path in pairs:
        raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"cannot read {mask_path}")
        values, counts = np.unique(class_values(raw, mask_path, colours), return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            found[value] = found.get(value, 0) + count
    unmapped = [name for c, name in enumerate(names) if not any(found.get(v) for v, k in mapping.items() if k == c)]
    if not unmapped:
        return
    spare = [v for v in sorted(found, key=found.get, reverse=True) if v not in mapping and v not in ignore and v]
    values = ", ".join(f"{v} ({found[v]} px)" for v in sorted(found))
    classes = ", ".join(f"{c} {name}" for c, name in enumerate(names))
    hint = f", e.g. --mapping {spare[0]}:{names.index(unmapped[0])}" if spare else ""
    raise ValueError(f"no mask value maps to {', '.join(unmapped)} (--mapping {_mapping_text(mapping)}); the masks "
                     f"hold {values}: give VALUE:CLASS for the model's classes ({classes}){hint} "
                     "(--allow-unmapped scores anyway)")


def _mapping_text(mapping: dict[int, int]) -> str:
    return ",".join(f"{v}:{c}" for v, c in mapping.items()) or "(none)"


def evaluate(folder: str | Path, model, mapping: dict[int, int] | None = None,
             ignore: tuple[int, ...] = ENDOSCAPES_IGNORE, colours: dict | None = None,
             image_glob: str = DEFAULT_IMAGE_GLOB, mask_pattern: str = DEFAULT_MASK_PATTERN,
             transform=None, samples: list | None = None, skip_missing: bool = False,
             allow_unmapped: bool = False) -> dict:
    """Per class IoU and Dice over the whole set (ignore pixels excluded), per-frame mean IoU,
    frame-level detection and false-alarm rates, mask mAP50-95 and inference time; ``folder``
    holds the images (``image_glob``) and their masks (``mask_pattern``: see ``pairs``);
    ``transform(image, index) -> image`` alters each picture first (the masks stay as they are).
    Detection and false-alarm rates: ``PixelScores``. The vessel class also gets its frame evidence
    (``pipeline.stages.evidence``) judged as a detector of "a vessel is visible": ROC AUC, the sweep, the rates
    at the model's own operating points (``high_detected`` ... ``advisory_false_alarm``) and the pixel
    calibration (ECE). ``samples``: a list that gets each frame's ``pixel_samples`` (for ``orsight validate``).
    Images without a mask: a ValueError listing them, or left out (``skip_missing``); a class no mask value
    maps to: a ValueError naming the values found (:func:`check_mapping`), unless ``allow_unmapped``.
    """
    folder = Path(folder)
    mapping = ENDOSCAPES_MAPPING if mapping is None else mapping
    pairs, skipped = _scored_pairs(folder, image_glob, mask_pattern, skip_missing)
    if not allow_unmapped:
        check_mapping(pairs, model.names, mapping, ignore, colours)
    classes = len(model.names)
    analyzer = Analyzer(model)  # the Python API, so the live graph itself
    scores = PixelScores(classes)
    tps, confs, pred_classes, target_classes, infer_ms = [], [], [], [], []
    vessel_values = [c + 1 for c, role in enumerate(model.roles) if role == "vessel"]
    evidence, vessel_present, frame_samples = [], [], []
    for index, (path, mask_path) in enumerate(pairs):
        image, truth = labelled_frame(path, mask_path, mapping, ignore, colours)
        if transform is not None:
            image = transform(image, index)
        packet = analyzer.analyse(image, new_scene=True).packet  # every frame is a different recording
        infer_ms.append(packet.timings_ms["infer"])
        segmentation = packet.segmentation
        valid = truth != IGNORE
        evidence.append(segmentation.vessel_evidence or 0.0)
        vessel_present.append(bool(np.isin(truth, vessel_values).any()))
        found = pixel_samples(segmentation, truth)
        if found is not None:
            frame_samples.append(found)
        scores.add(segmentation.model_class_map if segmentation.model_class_map is not None
                   else segmentation.class_map, truth, valid)
        true_masks, true_cls = _instances(np.where(valid, truth, 0), classes)
        masks = segmentation.masks & valid
        tps.append(_match(masks, segmentation.class_ids, true_masks, true_cls))
        confs.append(segmentation.scores)
        pred_classes.append(segmentation.class_ids)
        target_classes.append(true_cls)
    report = {"frames": len(pairs), "frames_without_mask": skipped, "model": model.description,
              "input_size": list(input_dims(model.input_size)), "input_fitted": not model.fixed_input,
              "classes": {name: scores.report(c) for c, name in enumerate(model.names)}}
    if vessel_values:
        report["classes"][model.names[vessel_values[0] - 1]].update(
            vessel_report(np.array(evidence), np.array(vessel_present), frame_samples, vessel_values,
                          model.operating_points))
    if samples is not None:
        samples.extend(frame_samples)
    report.update(_mask_map(tps, confs, pred_classes, target_classes))
    report["ms_per_frame"] = float(np.median(infer_ms))
    return report
