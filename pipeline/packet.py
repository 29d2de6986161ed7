"""The frame packet: the one data type that flows through every stage.

A stage is any callable ``packet -> packet``; it reads the fields it needs and fills in its own.

    packet = FramePacket.capture(image, frame_id=0, source="phantom")
    packet = overlay(analyse(infer(preprocess(packet))))
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

BACKGROUND = 0  # value of a class map pixel that belongs to no class


@dataclass(frozen=True)
class Geometry:
    """How source pixels map to the model input: crop a window, scale it, pad it.

    ``x_input = (x_source - crop_x) * scale + pad_x`` (same for y). Every mask and point is
    mapped back to source pixels through :meth:`to_source`, in one place.
    """

    source_size: tuple[int, int]  # (width, height) of the source frame
    crop: tuple[int, int, int, int]  # (x, y, width, height) of the window fed to the model
    scale: float
    pad: tuple[int, int]  # (left, top) padding in input pixels
    input_size: tuple[int, int]  # (width, height) of the model input
    fov: tuple[float, float, float] | None = None  # endoscope circle (cx, cy, r); nothing is found outside

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` input-space points to source pixels."""
        xy = np.asarray(xy, dtype=np.float32)
        offset = np.array(self.pad, np.float32)
        origin = np.array(self.crop[:2], np.float32)
        return (xy - offset) / self.scale + origin

    def content_box(self) -> tuple[int, int, int, int]:
        """Input-space ``(x0, y0, x1, y1)`` covered by the cropped image (not padding)."""
        width = round(self.crop[2] * self.scale)
        height = round(self.crop[3] * self.scale)
        return self.pad[0], self.pad[1], self.pad[0] + width, self.pad[1] + height


@dataclass
class Segmentation:
    """Model result in source pixels: a per-class map plus the instances behind it.

    ``class_map[y, x]`` is ``BACKGROUND`` or ``class index + 1``. ``names[i]`` is class i's
    name and ``roles[i]`` what it is (``instrument``, ``vessel`` or ``other``).
    """

    class_map: np.ndarray  # (H, W) uint8
    names: tuple[str, ...]
    roles: tuple[str, ...]
    masks: np.ndarray  # (N, H, W) bool, one per instance
    class_ids: np.ndarray  # (N,) int
    scores: np.ndarray  # (N,) float
    boxes: np.ndarray  # (N, 4) float, x0 y0 x1 y1

    def role_mask(self, role: str) -> np.ndarray:
        """Boolean (H, W) mask of every pixel whose class has ``role``."""
        values = [i + 1 for i, r in enumerate(self.roles) if r == role]
        return np.isin(self.class_map, values)


@dataclass
class Proximity:
    """Closest instrument-vessel point pair in source pixels (``None`` points: one is absent)."""

    distance_px: float  # inf when there is no instrument or no vessel
    instrument_point: tuple[int, int] | None = None
    vessel_point: tuple[int, int] | None = None
    mm_per_px: float | None = None

    @property
    def distance_mm(self) -> float | None:
        return None if self.mm_per_px is None else self.distance_px * self.mm_per_px


@dataclass
class AlertEvent:
    """One alert transition: ``raised``, ``updated`` or ``cleared``."""

    alert_id: int
    rule: str
    state: str
    priority: str
    frame_id: int
    t_capture_ns: int
    distance_px: float | None = None
    location: tuple[int, int] | None = None
    message: str = ""
    t_start_ns: int = 0  # capture time at which the alert was raised
    t_end_ns: int | None = None  # set on the ``cleared`` event
    distance_mm: float | None = None


@dataclass
class FramePacket:
    """One captured frame and everything the stages learn about it."""

    frame_id: int
    source: str
    image: np.ndarray  # (H, W, 3) uint8 BGR: as captured, or undistorted during analysis
    t_capture_ns: int  # wall clock, for delays across processes on one host
    t_capture_mono_ns: int  # monotonic, for in-process timings
    geometry: Geometry | None = None
    tensor: np.ndarray | None = None  # model input, (1, 3, h, w) float
    segmentation: Segmentation | None = None
    proximity: Proximity | None = None
    alerts: list[AlertEvent] = field(default_factory=list)  # transitions this frame
    active_alerts: list[AlertEvent] = field(default_factory=list)
    overlay: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    truth: object | None = None  # ground truth, when the source knows it (phantom)
    original: np.ndarray | None = None  # the captured frame while ``image`` is undistorted

    @classmethod
    def capture(cls, image: np.ndarray, frame_id: int, source: str, truth=None) -> FramePacket:
        """Stamp a freshly captured frame with wall-clock and monotonic capture times."""
        return cls(frame_id=frame_id, source=source, image=image, t_capture_ns=time.time_ns(),
                   t_capture_mono_ns=time.monotonic_ns(), truth=truth)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the source frame."""
        return self.image.shape[1], self.image.shape[0]


class timed:
    """Context manager recording a stage's wall time into ``packet.timings_ms[name]``."""

    def __init__(self, packet: FramePacket, name: str):
        self.packet, self.name = packet, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.packet.timings_ms[self.name] = (time.perf_counter() - self.start) * 1e3
        return False
