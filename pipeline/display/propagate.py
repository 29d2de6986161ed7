"""Mask propagation: between two AI results, the newest mask is moved with the picture to the frame shown.

The mask the display draws was computed on an older frame (the AI's delay, 30-120 ms); whatever moved
since (the scope, the breathing tissue, an instrument) is off by that much. Dense optical flow (OpenCV's
DIS, its ultrafast preset) between small grey copies of the two frames says, for each pixel of the frame
shown, where it was in the mask's frame; the class map is resampled there. It only moves a mask the
display would show anyway: staleness is still judged on the mask's own capture time.

    propagator = MaskPropagator()
    propagator.remember(frame_id, image)                        # every video frame shown
    class_map, flow = propagator.carry(class_map, mask_frame_id, frame_id)  # or None: a frame not remembered
"""
from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

FLOW_WIDTH = 320  # the flow's picture width (DIS ultrafast: 0.4 ms a pair here)
HISTORY = 16  # frames remembered: more than the stale limit holds at 60 fps after the display skips some


def grey_thumbnail(image: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    """The frame small and grey, for the flow."""
    height = max(8, round(image.shape[0] * width / image.shape[1]))
    return cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2GRAY)


class MaskPropagator:
    """Remembers the frames shown (small, grey) and moves a mask from its frame to a later one."""

    def __init__(self, flow_width: int = FLOW_WIDTH, history: int = HISTORY):
        self.flow_width, self.history = flow_width, history
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.grid: tuple[np.ndarray, np.ndarray] | None = None  # every pixel's coordinates, at the map's size

    def remember(self, frame_id: int, image: np.ndarray) -> None:
        self.frames[frame_id] = grey_thumbnail(image, self.flow_width)
        while len(self.frames) > self.history:
            self.frames.popitem(last=False)

    def _nearest_before(self, frame_id: int) -> np.ndarray | None:
        """The remembered frame ``frame_id``, or the last one before it (the display may have skipped it)."""
        earlier = [i for i in self.frames if i <= frame_id]
        return self.frames[max(earlier)] if earlier else None

    def carry(self, class_map: np.ndarray, from_id: int, to_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(class map, flow)``: ``class_map`` (of frame ``from_id``, any size) moved onto frame ``to_id``
        (remembered), and the flow (thumbnail pixels) from ``to_id`` back to ``from_id``; None when
        either frame is not remembered or they are the same frame."""
        source, target = self._nearest_before(from_id), self.frames.get(to_id)
        if source is None or target is None or source is target:
            return None
        flow = self.flow.calc(target, source, None)
        box = self._box(class_map, flow)
        if box is None:
            return np.zeros_like(class_map), flow
        (x0, y0, x1, y1), (fx0, fy0, fx1, fy1) = box
        scale = class_map.shape[1] / flow.shape[1]
        displacement = cv2.resize(flow[fy0:fy1, fx0:fx1], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) * scale
        if self.grid is None or self.grid[0].shape != class_map.shape:
            self.grid = np.meshgrid(np.arange(class_map.shape[1], dtype=np.float32),
                                    np.arange(class_map.shape[0], dtype=np.float32))
        grid_x, grid_y = (axis[y0:y1, x0:x1] for axis in self.grid)
        moved = np.zeros_like(class_map)
        moved[y0:y1, x0:x1] = cv2.remap(class_map, grid_x + displacement[..., 0], grid_y + displacement[..., 1],
                                        cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return moved, flow

    @staticmethod
    def _box(class_map: np.ndarray, flow: np.ndarray):
        """Where the moved map can be non-zero: the classes' box grown by the largest motion, on whole
        flow pixels; ``((x0, y0, x1, y1) in map pixels, the same in flow pixels)``, None if nothing is painted."""
        x, y, w, h = cv2.boundingRect(class_map)
        if not w:
            return None
        scale = class_map.shape[1] / flow.shape[1]
        reach = float(np.abs(flow).max()) + 1.0  # flow pixels
        fx0, fy0 = max(0, int((x / scale) - reach)), max(0, int((y / scale) - reach))
        fx1 = min(flow.shape[1], int(np.ceil((x + w) / scale + reach)))
        fy1 = min(flow.shape[0], int(np.ceil((y + h) / scale + reach)))
        x0, y0 = round(fx0 * scale), round(fy0 * scale)
        x1, y1 = min(class_map.shape[1], round(fx1 * scale)), min(class_map.shape[0], round(fy1 * scale))
        return (x0, y0, x1, y1), (fx0, fy0, fx1, fy1)


def move_point(point: tuple[int, int] | None, flow: np.ndarray, size: tuple[int, int]) -> tuple[int, int] | None:
    """A point of the mask's frame (pixels of a ``size`` (height, width) picture) where it is in the frame
    shown: back along the flow found at it."""
    if point is None:
        return None
    scale = flow.shape[1] / size[1]
    x = int(np.clip(point[0] * scale, 0, flow.shape[1] - 1))
    y = int(np.clip(point[1] * scale, 0, flow.shape[0] - 1))
    dx, dy = flow[y, x] / scale
    return int(round(point[0] - dx)), int(round(point[1] - dy))
