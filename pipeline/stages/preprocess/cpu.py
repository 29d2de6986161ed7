"""Preprocess stage (CPU): source frame -> model input tensor, with the geometry that maps it back.

Spend the model's pixels on the patient: crop to the endoscope's field-of-view square first
(detected once and cached), then letterbox to the model size, BGR->RGB, scale to [0, 1], CHW.
This NumPy/OpenCV stage is the reference implementation; the CUDA stage takes the same
:func:`~pipeline.stages.preprocess.geometry.plan_geometry` and must match it.

    preprocess = LetterboxPreprocess(320)
    packet = preprocess(packet)          # fills packet.tensor and packet.geometry
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.packet import FramePacket, Geometry, timed
from pipeline.stages.preprocess.geometry import PAD_VALUE, GeometryPlan


def letterbox(image: np.ndarray, geometry: Geometry, out: np.ndarray | None = None,
              interpolation: int = cv2.INTER_LINEAR, pad=PAD_VALUE) -> np.ndarray:
    """The crop of ``image`` resized into the input canvas (``out`` reused when given; its bars
    are filled only when it is new). Masks pass ``INTER_NEAREST`` and their own ``pad``."""
    x, y, w, h = geometry.crop
    x0, y0, x1, y1 = geometry.content_box()
    if out is None:
        out = np.full((geometry.input_size[1], geometry.input_size[0], *image.shape[2:]), pad, image.dtype)
    out[y0:y1, x0:x1] = cv2.resize(image[y:y + h, x:x + w], (x1 - x0, y1 - y0), interpolation=interpolation)
    return out


class LetterboxPreprocess:
    """CPU preprocess stage; ``crop_to_fov`` detects the field of view on the first frame
    (or takes ``fov``, a circle known in advance).

    The tensor is a buffer reused frame after frame: the model reads it before the next call.
    """

    reads = ("image",)
    writes = ("geometry", "tensor")

    def __init__(self, input_size: int | tuple[int, int], crop_to_fov: bool = True, dtype=np.float32,
                 fov: tuple[float, float, float] | None = None, fit_aspect: bool = False):
        self.dtype = dtype
        self.plan = GeometryPlan(input_size, crop_to_fov, fov, fit_aspect)
        self._canvas = self._tensor = None

    def redetect(self) -> None:
        """Forget the cached field of view; the next frame detects it again."""
        self.plan.redetect()

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "preprocess"):
            geometry, new = self.plan(packet.image)
            if new:
                width, height = geometry.input_size
                if self._canvas is None or self._canvas.shape[:2] != (height, width):
                    self._canvas = np.empty((height, width, 3), np.uint8)
                    self._tensor = np.empty((1, 3, height, width), self.dtype)
                self._canvas[:] = PAD_VALUE
            letterbox(packet.image, geometry, self._canvas)
            rgb = self._canvas[..., ::-1].transpose(2, 0, 1)
            np.multiply(rgb, self.dtype(1 / 255), out=self._tensor[0], casting="unsafe")
            packet.geometry = geometry
            packet.tensor = self._tensor
        return packet
