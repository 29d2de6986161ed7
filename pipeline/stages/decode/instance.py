"""Decode YOLO segmentation outputs into a :class:`Segmentation` in source pixels.

Both ultralytics output layouts are understood:
* raw: ``(1, 4 + nc + nm, anchors)`` (box centre/size, class scores, mask coefficients),
  filtered by score and non-maximum suppression;
* end-to-end: ``(1, k, 6 + nm)`` (x0 y0 x1 y1, score, class, mask coefficients).
The second output is the mask prototypes ``(1, nm, mh, mw)``.

    segmentation = decode_segmentation(outputs, packet.geometry, names, roles)
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Geometry, Segmentation
from pipeline.stages.decode.stage import Decode


def candidates(predictions: np.ndarray, num_classes: int, num_coefficients: int, conf: float, iou: float,
               max_instances: int = 50):
    """Kept instances, best first: boxes (input pixels, xyxy), scores, class ids, mask coefficients."""
    boxes, scores, class_ids, coefficients = _filtered(predictions, num_classes, num_coefficients, conf, iou)
    order = np.argsort(-scores, kind="stable")[:max_instances]
    return boxes[order], scores[order], class_ids[order].astype(int), coefficients[order]


def _filtered(predictions: np.ndarray, num_classes: int, num_coefficients: int, conf: float, iou: float):
    p = predictions[0]
    if p.shape[0] != 4 + num_classes + num_coefficients:  # end-to-end: (k, 6 + nm), already suppressed
        if p.shape[1] != 6 + num_coefficients:
            raise ValueError(f"unexpected segmentation output shape {predictions.shape}")
        p = p[p[:, 4] >= conf]
        return p[:, :4], p[:, 4], p[:, 5].astype(int), p[:, 6:]
    p = p.T  # (anchors, 4 + nc + nm)
    class_scores = p[:, 4:4 + num_classes]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(p)), class_ids]
    keep = scores >= conf
    p, scores, class_ids = p[keep], scores[keep], class_ids[keep]
    boxes = np.column_stack([p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 3] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 3] / 2])
    if len(p):
        xywh = np.column_stack([boxes[:, :2], p[:, 2:4]]).tolist()
        kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), class_ids.tolist(), conf, iou), int).ravel()
        boxes, scores, class_ids, p = boxes[kept], scores[kept], class_ids[kept], p[kept]
    return boxes, scores, class_ids, p[:, 4 + num_classes:]


def crop_to_boxes(logits, boxes: np.ndarray) -> None:
    """Set each instance's logits (NumPy or CuPy, ``(N, h, w)``) outside its box to -100, in place.

    A pixel belongs to the box when its centre does: columns ceil(x0 - 0.5) .. ceil(x1 - 0.5) - 1.
    """
    height, width = logits.shape[1:]
    edges = np.clip(np.ceil(boxes - 0.5), 0, [width, height, width, height]).astype(int)
    for instance, (x0, y0, x1, y1) in zip(logits, edges):
        instance[:y0], instance[y1:], instance[:, :x0], instance[:, x1:] = -100.0, -100.0, -100.0, -100.0


def decode_segmentation(outputs: list[np.ndarray], geometry: Geometry, names: tuple[str, ...],
                        roles: tuple[str, ...], conf: float = 0.25, iou: float = 0.7,
                        max_instances: int = 50) -> Segmentation:
    """Instances with masks in source pixels, and the class map (highest-scoring instance wins)."""
    predictions, protos = np.asarray(outputs[0], np.float32), np.asarray(outputs[1], np.float32)
    boxes, scores, class_ids, coefficients = candidates(predictions, len(names), protos.shape[1], conf, iou,
                                                        max_instances)
    width, height = geometry.source_size
    if len(scores) == 0:
        return Segmentation(np.zeros((height, width), np.uint8), names, roles, class_ids.astype(int), scores,
                            np.zeros((0, 4), np.float32), np.zeros((0, 1, 1), np.float32), geometry)
    _, nm, mh, mw = protos.shape
    # float64: the same result whatever BLAS threading a process has (replay chunks must agree)
    logits = (coefficients.astype(np.float64) @ protos[0].reshape(nm, -1).astype(np.float64))
    logits = logits.reshape(-1, mh, mw).astype(np.float32)
    # To input pixels, then zero each instance outside its box (as ultralytics' retina masks).
    input_w, input_h = geometry.input_size
    logits = cv2.resize(logits.transpose(1, 2, 0), (input_w, input_h), interpolation=cv2.INTER_LINEAR)
    logits = logits.reshape(input_h, input_w, -1).transpose(2, 0, 1)
    logits = np.ascontiguousarray(logits)
    crop_to_boxes(logits, boxes)
    # One map per class (its strongest instance), then only those few channels to source pixels.
    _, _, cw, ch = geometry.crop
    channels = [geometry.input_to_crop(logits[class_ids == cls].max(axis=0)[..., None])[..., 0]
                if (class_ids == cls).any() else np.full((ch, cw), -100.0, np.float32) for cls in range(len(names))]
    label, best = np.ones(channels[0].shape, np.uint8), channels[0]
    for cls, channel in enumerate(channels[1:], start=2):
        label = np.where(channel > best, np.uint8(cls), label)
        best = np.maximum(best, channel)
    # A pixel needs a logit above 0 (probability 0.5), and nothing is seen outside the endoscope's circle.
    np.multiply(label, (best > 0) & geometry.inside_fov(crop_only=True), out=label)
    class_map = geometry.crop_to_source(label)
    source_boxes = geometry.to_source(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    source_boxes = np.clip(source_boxes, 0, [width, height, width, height])
    return Segmentation(class_map, names, roles, class_ids.astype(int), scores.astype(np.float32), source_boxes,
                        logits, geometry)


class InstanceDecode(Decode):
    """Stage: boxes + mask prototypes (an instance model's outputs) -> segmentation, on the host."""

    def __init__(self, names: tuple[str, ...], roles: tuple[str, ...], conf: float = 0.25, iou: float = 0.7):
        super().__init__(names, roles)
        self.conf, self.iou = conf, iou

    def decode(self, outputs: list[np.ndarray], packet: FramePacket) -> Segmentation:
        return decode_segmentation(outputs, packet.geometry, self.names, self.roles, self.conf, self.iou)
