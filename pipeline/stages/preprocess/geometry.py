"""Preprocess geometry: where the model looks (the field-of-view crop) and at what input size.

Shared by the CPU stage (:mod:`.cpu`, the reference) and the CUDA stage (:mod:`.cuda`): both
take :func:`plan_geometry`'s result, and every mask and point is mapped back through it.

    plan = GeometryPlan(384, fit_aspect=True)
    geometry, new = plan(image)            # 480x288 for a 770x480 crop

A model that takes any input shape (a dynamic ONNX export, a ``.pt``) gets ``fit_aspect``: the
input keeps the model's pixel budget but takes the crop's shape (multiples of 32), so a
full-frame 16:9 picture fills 480x288 instead of a third of 384x384 being grey bands.
"""
from __future__ import annotations

import numpy as np

from pipeline.core.packet import Geometry
from pipeline.stages.preprocess.fov import detect_fov

PAD_VALUE = 114  # grey of the letterbox bars, as ultralytics trains with
STRIDE = 32  # a YOLO input side is a multiple of the deepest feature stride


def fov_crop(fov: tuple[float, float, float] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """Square around the field-of-view circle, clipped to the frame; the whole frame without one."""
    if fov is None:
        return 0, 0, width, height
    cx, cy, r = fov
    x0, y0 = max(0, int(np.floor(cx - r))), max(0, int(np.floor(cy - r)))
    x1, y1 = min(width, int(np.ceil(cx + r))), min(height, int(np.ceil(cy + r)))
    return x0, y0, x1 - x0, y1 - y0


def input_dims(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a model input given as one side (square) or as (width, height)."""
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def fitted_input(crop_size: tuple[int, int], budget: tuple[int, int]) -> tuple[int, int]:
    """(width, height), multiples of 32, of at most ``budget``'s pixels, that shows the crop largest
    (the smaller input on a tie)."""
    crop_w, crop_h = crop_size
    pixels = budget[0] * budget[1]
    best = (0.0, 0, budget)
    for height in range(STRIDE, pixels // STRIDE + 1, STRIDE):
        width = pixels // height // STRIDE * STRIDE
        scale = min(width / crop_w, height / crop_h)
        width = min(width, -(-round(crop_w * scale) // STRIDE) * STRIDE)  # no wider than the picture needs
        height = min(height, -(-round(crop_h * scale) // STRIDE) * STRIDE)
        best = max(best, (scale, -width * height, (width, height)))
    return best[2]


def model_input(model, imgsz: int | tuple[int, int] | None = None) -> dict:
    """Preprocess arguments for ``model``: ``imgsz`` exactly, else the model's own input (its pixel
    budget in the picture's shape, where the model takes any shape)."""
    return {"input_size": imgsz or model.input_size, "fit_aspect": not (imgsz or model.fixed_input)}


def plan_geometry(source_size: tuple[int, int], crop: tuple[int, int, int, int], input_size: int | tuple[int, int],
                  fov: tuple[float, float, float] | None = None) -> Geometry:
    """Scale the crop to fit the input (a side, or (width, height)), centred, keeping its aspect ratio."""
    _, _, w, h = crop
    input_w, input_h = input_dims(input_size)
    scale = min(input_w / w, input_h / h)
    new_w, new_h = round(w * scale), round(h * scale)
    pad = ((input_w - new_w) // 2, (input_h - new_h) // 2)
    return Geometry(source_size=source_size, crop=crop, scale=scale, pad=pad, input_size=(input_w, input_h), fov=fov)


class GeometryPlan:
    """The geometry for frames of the current size; the field of view detected on the first frame
    of each size (or ``fov``, a circle known in advance, never re-detected)."""

    def __init__(self, input_size: int | tuple[int, int], crop_to_fov: bool = True,
                 fov: tuple[float, float, float] | None = None, fit_aspect: bool = False):
        self.input_size, self.crop_to_fov, self.fixed_fov = input_dims(input_size), crop_to_fov, fov
        self.fit_aspect = fit_aspect
        self.fov: tuple[float, float, float] | None = fov
        self.geometry: Geometry | None = None
        self._replan = False

    def redetect(self) -> None:
        """Forget the cached field of view; the next frame detects it again."""
        self.geometry = None

    def set_budget(self, input_size: int | tuple[int, int]) -> None:
        """A new input budget (the live governor's): the next frame is planned for it, the field of
        view kept. Only a model that takes any input shape (``fit_aspect``) can follow it."""
        self.input_size, self._replan = input_dims(input_size), True

    def __call__(self, image: np.ndarray) -> tuple[Geometry, bool]:
        """The geometry for ``image``, and whether it is new (a new size or budget, or re-detected)."""
        height, width = image.shape[:2]
        same_size = self.geometry is not None and self.geometry.source_size == (width, height)
        if same_size and not self._replan:
            return self.geometry, False
        if not same_size:
            self.fov = self.fixed_fov or (detect_fov(image) if self.crop_to_fov else None)
        self._replan = False
        crop = fov_crop(self.fov, width, height)
        size = fitted_input(crop[2:], self.input_size) if self.fit_aspect else self.input_size
        self.geometry = plan_geometry((width, height), crop, size, self.fov)
        return self.geometry, True
