"""A synthetic laparoscopic scene with exact ground truth: the default source and the test bed.

A circular endoscope field of view on black; tissue texture with specular highlights;
branching vessels; instruments entering from the rim and moving; optional smoke and blur; in
``outside``, the scope withdrawn into a synthetic operating room (``room.py``) for 2 s of every 6.
Every frame comes with its class map (0 background, 1 instrument, 2 vessel) and the
instrument-to-vessel distance in pixels. Seeded: the same arguments give the same frames.

    scene = PhantomScene(1280, 720, scenario="approach")
    image, truth = scene.render(0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from pipeline.core.packet import Segmentation

NAMES = ("instrument", "vessel")
INSTRUMENT, VESSEL = 1, 2  # class-map values (class index + 1)
SCENARIOS = ("default", "approach", "smoke", "empty", "outside")
OUTSIDE_CYCLE_S, OUTSIDE_FROM_S, OUTSIDE_FOR_S = 6.0, 2.0, 2.0  # outside: withdrawn 2-4 s of every 6 s


@dataclass
class PhantomTruth:
    """Ground truth of one phantom frame."""

    class_map: np.ndarray  # (H, W) uint8: 0 background, 1 instrument, 2 vessel
    fov: tuple[float, float, float]  # (cx, cy, radius) of the endoscope's circle
    outside: bool = False  # the scope is out of the patient (the ``outside`` scenario's room)

    def segmentation(self) -> Segmentation:
        """The ground truth as a model result (a perfect model's output), with one instance per class."""
        masks = np.stack([self.class_map == INSTRUMENT, self.class_map == VESSEL])
        boxes = np.array([[*np.argwhere(m)[:, ::-1].min(0), *np.argwhere(m)[:, ::-1].max(0) + 1] if m.any()
                          else [0, 0, 0, 0] for m in masks], np.float32)
        return Segmentation(self.class_map, NAMES, NAMES, np.array([0, 1]), np.ones(2, np.float32), boxes,
                            source_masks=masks)

    @cached_property
    def distance_px(self) -> float:
        """Minimum gap in pixels between instrument and vessel (0 when touching, inf if one is absent): the
        plain distance transform over the whole picture, not the pipeline's own analysis (which it checks)."""
        instrument, vessel = self.class_map == INSTRUMENT, self.class_map == VESSEL
        if not instrument.any() or not vessel.any():
            return math.inf
        to_vessel = cv2.distanceTransform((~vessel).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        return max(float(to_vessel[instrument].min()) - 1.0, 0.0)  # the gap between pixels, not their centres


@dataclass
class Instrument:
    """A straight instrument: shaft from a rim point to a tip, with jaws that open and close."""

    rim_angle: float  # where it enters, radians around the field of view
    width: float  # shaft width as a fraction of the frame height
    grey: int


class PhantomScene:
    """Renders frame ``i`` of a scenario at any resolution and frame rate."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0,
                 scenario: str = "default", seed: int = 0):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown phantom scenario {scenario!r} (choose from {', '.join(SCENARIOS)})")
        if width < 64 or height < 64:
            raise ValueError(f"phantom size {width}x{height} is too small (64x64 at least)")
        self.width, self.height, self.fps, self.scenario = width, height, fps, scenario
        self.rng = np.random.default_rng(seed)
        self.fov = (width / 2, height / 2, 0.49 * min(width, height))
        self._fov_mask = self._circle_mask()
        self._tissue = self._render_tissue()
        self._vessel_map = np.zeros((height, width), np.uint8)
        self._vessel_points: list[tuple[float, float]] = []
        self._draw_vessels()
        self._vessel_map[~self._fov_mask] = 0
        self._tissue[~self._fov_mask] = 0
        self._fov_u8 = self._fov_mask.astype(np.uint8) * 255
        self._instruments = self._make_instruments()

    # ---- static parts, rendered once -------------------------------------------------
    def _circle_mask(self) -> np.ndarray:
        yy, xx = np.mgrid[: self.height, : self.width]
        cx, cy, r = self.fov
        return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r

    def _smooth_noise(self, cells: int, channels: int = 1) -> np.ndarray:
        small = self.rng.random((cells, max(2, cells * self.width // self.height), channels)).astype(np.float32)
        return cv2.resize(small, (self.width, self.height), interpolation=cv2.INTER_CUBIC).reshape(
            self.height, self.width, channels)

    def _render_tissue(self) -> np.ndarray:
        low = self._smooth_noise(6)
        mid = self._smooth_noise(24)
        fine = self.rng.random((self.height, self.width, 1)).astype(np.float32)
        shade = 0.55 + 0.3 * low + 0.12 * mid + 0.05 * fine
        base = np.array([95, 110, 200], np.float32)  # BGR: pink-red tissue
        yellow = np.array([90, 170, 215], np.float32)  # fat
        fat = np.clip((self._smooth_noise(10) - 0.6) * 4, 0, 1)
        tissue = (base * (1 - fat) + yellow * fat) * shade
        cx, cy, r = self.fov
        yy, xx = np.mgrid[: self.height, : self.width]
        radial = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        tissue *= np.clip(1.1 - 0.6 * radial**2, 0.2, 1.0)[..., None]  # vignetting
        for _ in range(max(4, self.width * self.height // 60000)):  # specular highlights
            x, y = self.rng.uniform(cx - r, cx + r), self.rng.uniform(cy - r, cy + r)
            axes = (int(self.rng.uniform(2, 10) * self.height / 720), int(self.rng.uniform(1, 5) * self.height / 720))
            cv2.ellipse(tissue, (int(x), int(y)), axes, self.rng.uniform(0, 180), 0, 360, (250, 250, 255), -1)
        tissue = cv2.GaussianBlur(tissue, (3, 3), 0)
        tissue[~self._fov_mask] = 0
        return np.clip(tissue, 0, 255).astype(np.uint8)

    def _draw_vessels(self) -> None:
        cx, cy, r = self.fov
        if self.scenario == "approach":  # one vessel across the upper field, nothing below it
            self._grow_vessel((cx - r, cy - 0.3 * r), 0.0, 0.012 * self.height, depth=2, wander=0.03,
                              segments=int(2 * r / (0.02 * self.height)))
            return
        for _ in range(2):
            angle = self.rng.uniform(0, 2 * math.pi)
            start = (cx + 0.95 * r * math.cos(angle), cy + 0.95 * r * math.sin(angle))
            self._grow_vessel(start, angle + math.pi + self.rng.uniform(-0.4, 0.4), 0.014 * self.height, depth=0)

    def _grow_vessel(self, start, heading, thickness, depth, wander=0.18, segments=None) -> None:
        """Random walk from ``start``, branching while ``depth < 2``; drawn into image and map."""
        x, y = start
        step = 0.02 * self.height
        for _ in range(segments or int(self.rng.integers(14, 28))):
            heading += self.rng.normal(0, wander)
            nx, ny = x + step * math.cos(heading), y + step * math.sin(heading)
            width = max(2, int(round(thickness)))
            colour = (70, 50, 150) if depth == 0 else (85, 60, 165)
            cv2.line(self._tissue, (int(x), int(y)), (int(nx), int(ny)), colour, width, cv2.LINE_AA)
            cv2.line(self._tissue, (int(x), int(y)), (int(nx), int(ny)), (110, 100, 210), max(1, width // 4), cv2.LINE_AA)
            cv2.line(self._vessel_map, (int(x), int(y)), (int(nx), int(ny)), VESSEL, width, cv2.LINE_8)
            self._vessel_points.append((nx, ny))
            x, y = nx, ny
            thickness *= 0.97
            if depth < 2 and self.rng.random() < 0.12:
                self._grow_vessel((x, y), heading + self.rng.choice([-1, 1]) * self.rng.uniform(0.5, 1.0),
                                  thickness * 0.7, depth + 1)

    def _make_instruments(self) -> list[Instrument]:
        count = {"default": 3, "smoke": 2, "approach": 1, "empty": 0, "outside": 2}[self.scenario]
        angles = self.rng.uniform(0, 2 * math.pi) + np.arange(count) * 2 * math.pi / max(count, 1)
        return [Instrument(float(a), float(self.rng.uniform(0.045, 0.065)), int(self.rng.integers(120, 190)))
                for a in angles]

    # ---- approach scenario schedule ----------------------------------------------------
    @cached_property
    def approach_target(self) -> tuple[float, float]:
        """The vessel point the approach scenario's instrument reaches."""
        cx, cy, r = self.fov
        points = np.array(self._vessel_points)
        inside = points[np.hypot(points[:, 0] - cx, points[:, 1] - cy) < 0.5 * r]
        candidates = inside if len(inside) else points
        return tuple(candidates[np.argmin(np.abs(candidates[:, 0] - cx))])

    def approach_events(self) -> dict[str, int]:
        """Frame numbers of the approach scenario: advancing, touching, backing off, away."""
        s = self.fps
        return {"advance": int(1 * s), "touch": int(4 * s), "release": int(6 * s), "away": int(9 * s),
                "period": int(10 * s)}

    def _approach_progress(self, frame: int) -> float:
        """0 = instrument parked far away, 1 = tip on the vessel; repeats every period."""
        e = self.approach_events()
        f = frame % e["period"]
        if f < e["advance"]:
            return 0.0
        if f < e["touch"]:
            return (f - e["advance"]) / (e["touch"] - e["advance"])
        if f < e["release"]:
            return 1.0
        if f < e["away"]:
            return 1.0 - (f - e["release"]) / (e["away"] - e["release"])
        return 0.0

    # ---- per frame ----------------------------------------------------------------------
    def _tip_and_entry(self, tool: Instrument, frame: int) -> tuple[np.ndarray, np.ndarray]:
        cx, cy, r = self.fov
        t = frame / self.fps
        if self.scenario == "approach":
            target = np.array(self.approach_target)
            entry = np.array([cx + 0.3 * r, cy + 1.05 * r])  # from the bottom rim, below the vessel
            parked = entry + 0.45 * (target - entry)
            tip = parked + self._approach_progress(frame) * (target - parked)
            return tip, entry
        angle = tool.rim_angle + 0.25 * math.sin(0.3 * t + tool.rim_angle)
        entry = np.array([cx + 1.05 * r * math.cos(angle), cy + 1.05 * r * math.sin(angle)])
        depth = 0.55 + 0.3 * math.sin(0.7 * t + 2 * tool.rim_angle)
        aim = angle + math.pi + 0.3 * math.sin(0.5 * t + tool.rim_angle)
        tip = entry + depth * 2 * r * np.array([math.cos(aim), math.sin(aim)])
        return tip, entry

    def _instrument_polygons(self, tool: Instrument, frame: int) -> list[np.ndarray]:
        """Shaft and two jaws; the jaws end exactly at the tip."""
        tip, entry = self._tip_and_entry(tool, frame)
        axis = tip - entry
        length = max(np.hypot(*axis), 1e-6)
        d = axis / length
        n = np.array([-d[1], d[0]])
        half = tool.width * self.height / 2
        jaw = min(0.07 * self.height, 0.4 * length)
        neck = tip - d * jaw
        far = entry - d * 0.2 * self.height
        shaft = np.array([far + n * half, neck + n * half, neck - n * half, far - n * half])
        opening = half * (0.6 + 0.4 * math.sin(frame / self.fps * 3 + tool.rim_angle))
        upper = np.array([neck + n * half, tip + n * opening * 0.3, neck])
        lower = np.array([neck - n * half, tip - n * opening * 0.3, neck])
        return [np.round(p).astype(np.int32) for p in (shaft, upper, lower)]

    def is_outside(self, frame: int) -> bool:
        """The ``outside`` scenario's scope is withdrawn into the room for part of every cycle."""
        seconds = (frame / self.fps) % OUTSIDE_CYCLE_S
        return self.scenario == "outside" and OUTSIDE_FROM_S <= seconds < OUTSIDE_FROM_S + OUTSIDE_FOR_S

    @cached_property
    def _room(self):
        from pipeline.sources.room import RoomScene

        return RoomScene(self.width, self.height)

    def render(self, frame: int) -> tuple[np.ndarray, PhantomTruth]:
        """BGR image and ground truth of frame number ``frame``."""
        if self.is_outside(frame):
            room = self._room.render(frame, self.fps)
            room = cv2.bitwise_and(room, room, mask=self._fov_u8)
            return room, PhantomTruth(np.zeros((self.height, self.width), np.uint8), self.fov, outside=True)
        image = self._tissue.copy()
        class_map = self._vessel_map.copy()
        for tool in self._instruments:
            polygons = self._instrument_polygons(tool, frame)
            cv2.fillPoly(image, polygons, (tool.grey, tool.grey, tool.grey + 10), cv2.LINE_AA)
            shaft = polygons[0]
            cv2.line(image, tuple(((shaft[0] * 3 + shaft[3]) // 4).tolist()),
                     tuple(((shaft[1] * 3 + shaft[2]) // 4).tolist()), (235, 235, 240), max(1, self.height // 240))
            cv2.fillPoly(class_map, polygons, INSTRUMENT, cv2.LINE_8)
        if self.scenario == "smoke":
            density = 0.35 + 0.25 * math.sin(frame / self.fps * 0.8)
            haze = np.full_like(image, 200)
            image = cv2.addWeighted(image, 1 - density, haze, density, 0)
            image = cv2.GaussianBlur(image, (0, 0), 1.5)
        image = cv2.bitwise_and(image, image, mask=self._fov_u8)
        class_map = cv2.bitwise_and(class_map, class_map, mask=self._fov_u8)
        return image, PhantomTruth(class_map=class_map, fov=self.fov)


def parse_phantom(spec: str) -> str:
    """``phantom`` or ``phantom:SCENARIO`` -> the scenario name."""
    _, _, scenario = spec.partition(":")
    return scenario or "default"
