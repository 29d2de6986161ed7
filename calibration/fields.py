"""Frames of interlaced and stereo scopes, restored to the picture the camera model describes.

A stereo laparoscope often sends each eye as one field: a 1920x540 frame of a 1920x1080
picture (every other line). Calibrating on it as it is would give the vertical focal length
half its value. ``field_scale`` 2 stretches such a field back to full height; ``"auto"``
does so for the usual field heights at a wide aspect. A full-height frame whose two fields
disagree (combing: the scope moved between them) is replaced by its first field, stretched.

    picture, how = full_picture(frame, "auto")   # how: "" or what was done, for the report
"""
from __future__ import annotations

import cv2
import numpy as np

FIELD_HEIGHTS = (240, 243, 288, 540)  # NTSC, PAL and HD fields
FIELD_ASPECT = 2.5  # width / height above which those heights are fields, not pictures
COMB_RATIO = 1.5  # line-to-line change this many times the change within a field: combing
COMB_MIN_LEVEL = 3.0  # grey levels: below this, the frame is too flat to tell


def resolve_field_scale(field_scale: str | int, size: tuple[int, int]) -> int:
    """The vertical stretch for frames of ``size`` (width, height): 1 or 2."""
    if field_scale != "auto":
        return int(field_scale)
    width, height = size
    return 2 if height in FIELD_HEIGHTS and width / height >= FIELD_ASPECT else 1


def is_combed(gray: np.ndarray) -> bool:
    """Whether the two interlaced fields of a full frame show different moments."""
    rows = gray.astype(np.float32)
    height = rows.shape[0] - rows.shape[0] % 4
    across_fields = float(np.abs(rows[0:height:2] - rows[1:height:2]).mean())
    within_field = float(np.abs(rows[0:height - 2:2] - rows[2:height:2]).mean())
    return across_fields > COMB_MIN_LEVEL and across_fields > COMB_RATIO * within_field


def full_picture(image: np.ndarray, field_scale: str | int = "auto") -> tuple[np.ndarray, str]:
    """The frame at the picture's geometry, and what was done to it ("" when nothing)."""
    height, width = image.shape[:2]
    scale = resolve_field_scale(field_scale, (width, height))
    if scale != 1:
        return cv2.resize(image, (width, height * scale), interpolation=cv2.INTER_LINEAR), f"field x{scale}"
    if is_combed(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)):
        return cv2.resize(image[0::2], (width, height), interpolation=cv2.INTER_LINEAR), "combed: first field"
    return image, ""
