"""A synthetic operating room, as a laparoscope sees it when it is out of the patient.

The phantom's ``outside`` scenario cuts to it for a while (the scope withdrawn to be cleaned):
wall and floor, a ceiling lamp, blue drapes with folds, and a member of staff in scrubs, cap
and mask, the view panning slowly as a hand-held scope does. Only for testing the privacy
path: a person in the picture that must never reach a recording or another room.

    image = RoomScene(1280, 720).render(frame=40, fps=30.0)
"""
from __future__ import annotations

import math

import cv2
import numpy as np


class RoomScene:
    """Renders the room at ``width`` x ``height``; the same seed gives the same room."""

    def __init__(self, width: int, height: int, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        pad = width // 4  # the pan moves a wider picture under the frame
        wide = np.empty((height, width + pad, 3), np.float32)
        rows = np.linspace(0, 1, height)[:, None, None]
        wide[:] = np.array([200, 205, 190], np.float32) * (0.85 + 0.15 * rows)  # pale green-grey wall
        floor = int(0.72 * height)
        wide[floor:] = np.array([120, 125, 130], np.float32)
        folds = cv2.resize(rng.random((6, 10)).astype(np.float32), (width + pad, height))[..., None]
        drape = np.array([170, 120, 60], np.float32) * (0.7 + 0.5 * folds)  # BGR: surgical blue
        top = int(0.45 * height)
        cloth = (slice(top, floor + height // 10), slice(0, (width + pad) * 3 // 5))
        wide[cloth] = drape[cloth]
        cv2.circle(wide, (int(0.8 * (width + pad)), int(0.08 * height)), height // 9, (255, 255, 255), -1)
        self._person(wide, int(0.62 * (width + pad)), height)
        self.wide = np.clip(cv2.GaussianBlur(wide, (0, 0), max(1.0, height / 360)), 0, 255).astype(np.uint8)
        self.pad = pad

    @staticmethod
    def _person(picture: np.ndarray, x: int, height: int) -> None:
        """Scrubs, a face, a cap and a mask: a person standing at ``x``."""
        unit = height / 10
        cv2.ellipse(picture, (x, int(7.6 * unit)), (int(1.6 * unit), int(3.4 * unit)), 0, 180, 360,
                    (150, 160, 90), -1)  # teal scrubs
        face = (x, int(3.3 * unit))
        cv2.ellipse(picture, face, (int(0.75 * unit), int(0.95 * unit)), 0, 0, 360, (125, 155, 210), -1)  # skin
        cv2.ellipse(picture, (x, int(2.7 * unit)), (int(0.8 * unit), int(0.55 * unit)), 0, 180, 360,
                    (200, 170, 110), -1)  # cap
        cv2.rectangle(picture, (x - int(0.7 * unit), int(3.5 * unit)), (x + int(0.7 * unit), int(4.1 * unit)),
                      (220, 200, 160), -1)  # mask
        for side in (-1, 1):
            cv2.circle(picture, (x + side * int(0.3 * unit), int(3.15 * unit)), max(1, int(0.08 * unit)),
                       (40, 40, 40), -1)  # eyes

    def render(self, frame: int, fps: float) -> np.ndarray:
        """The room at ``frame``: the view pans back and forth over ten seconds."""
        offset = int((0.5 + 0.5 * math.sin(frame / fps * math.pi / 5)) * self.pad)
        return np.ascontiguousarray(self.wide[:, offset: offset + self.width])
