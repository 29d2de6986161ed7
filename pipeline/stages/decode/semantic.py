"""Decode semantic (per-pixel class) model outputs into a :class:`Segmentation` in source pixels.

A semantic model's class 0 is the background; its other classes are the pipeline's classes in
order, so a model class id is already a class-map value. Two output forms are understood:
* logits ``(1, 1 + nc, h, w)`` at any stride (the torch backend): resized to the input, argmax;
* a class map ``(1, H, W)`` of integers (ultralytics' ONNX export bakes the argmax in), at any
  multiple of the input size, with or without the logits as a second output (``orsight export`` adds them).
The logits, when there are any, go with the segmentation (``Segmentation.logits``) for the vessel evidence.
Instances are the connected regions of each class, largest first; a region's score is its mean
class probability (1.0 when only a class map came out). Finding them (connected components of each
class) is about half of the decoding, so ``max_instances=0`` skips it where only the class map is
read (:meth:`SemanticDecode.class_map_only`: a live display draws the class map itself).

    segmentation = decode_semantic(outputs, packet.geometry, names, roles)
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Geometry, Segmentation
from pipeline.stages.decode.stage import Decode


class Region(NamedTuple):
    """One connected region of a class at model-input size."""

    area: int
    class_id: int
    labels: np.ndarray  # (h, w) region ids of its class (connected components)
    label: int  # this region's id in ``labels``
    box: tuple[int, int, int, int]  # x, y, width, height

    @property
    def mask(self) -> np.ndarray:
        return self.labels == self.label


def input_labels(output: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """(h, w) uint8 labels at model-input size and, from logits, (h, w) float32 winning probability."""
    width, height = input_size
    if output.ndim == 3:  # class map
        labels = output[0].astype(np.uint8)
        if labels.shape != (height, width):
            labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
        return labels, None
    if output.ndim != 4:
        raise ValueError(f"unexpected semantic output shape {output.shape}")
    logits = np.ascontiguousarray(output[0].transpose(1, 2, 0), np.float32)
    logits = cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
    labels = logits.argmax(axis=2).astype(np.uint8)
    exp = np.exp(logits - logits.max(axis=2, keepdims=True))
    confidence = 1.0 / exp.sum(axis=2)  # the winner's softmax probability: exp(0) / sum
    return labels, confidence


def largest_regions(labels: np.ndarray, classes: int, count: int) -> list[Region]:
    """The ``count`` largest connected regions of the classes ``1..classes`` in ``labels``, largest first."""
    regions = []
    for value in range(1, classes + 1):
        found, region_ids, stats, _ = cv2.connectedComponentsWithStats((labels == value).view(np.uint8), 8)
        regions += [Region(int(stats[r, cv2.CC_STAT_AREA]), value - 1, region_ids, r, tuple(stats[r, :4]))
                    for r in range(1, found)]
    return sorted(regions, key=lambda region: -region.area)[:count]


def decode_semantic(outputs: list[np.ndarray], geometry: Geometry, names: tuple[str, ...], roles: tuple[str, ...],
                    max_instances: int = 50) -> Segmentation:
    """Class map and per-region instances (at most ``max_instances``) in source pixels, nothing outside the
    endoscope's circle."""
    labels, confidence = input_labels(np.asarray(outputs[0]), geometry.input_size)
    labels[labels > len(names)] = 0
    x0, y0, x1, y1 = geometry.content_box()
    covered = np.zeros_like(labels)
    covered[y0:y1, x0:x1] = labels[y0:y1, x0:x1]  # padding is never a finding
    _, _, cw, ch = geometry.crop  # nearest through the content box, as Geometry.input_to_crop maps
    crop = cv2.resize(covered[y0:y1, x0:x1], (cw, ch), interpolation=cv2.INTER_NEAREST)
    np.multiply(crop, geometry.inside_fov(crop_only=True), out=crop)  # nothing outside the circle (20x np.where)
    class_map = geometry.crop_to_source(crop)
    regions = largest_regions(covered, len(names), max_instances) if max_instances else []
    masks = np.array([region.mask for region in regions], bool).reshape(-1, *labels.shape)
    scores = np.array([confidence[m].mean() if confidence is not None else 1.0 for m in masks], np.float32)
    boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in (region.box for region in regions)],
                     np.float32).reshape(-1, 2, 2)
    width, height = geometry.source_size
    source_boxes = np.clip(geometry.to_source(boxes).reshape(-1, 4), 0, [width, height, width, height])
    class_ids = np.array([region.class_id for region in regions], int)
    logits = next((np.asarray(o)[0] for o in outputs if np.ndim(o) == 4), None)  # (1 + nc, h, w) at the head's stride
    return Segmentation(class_map, names, roles, class_ids, scores, source_boxes,
                        np.where(masks, np.float32(1), np.float32(-1)), geometry, logits=logits)


class SemanticDecode(Decode):
    """Stage: a semantic model's logits or class map -> segmentation, on the host."""

    def __init__(self, names: tuple[str, ...], roles: tuple[str, ...], max_instances: int = 50):
        super().__init__(names, roles)
        self.max_instances = max_instances

    def decode(self, outputs: list[np.ndarray], packet: FramePacket) -> Segmentation:
        return decode_semantic(outputs, packet.geometry, self.names, self.roles, self.max_instances)

    def class_map_only(self) -> SemanticDecode:
        return SemanticDecode(self.names, self.roles, max_instances=0)
