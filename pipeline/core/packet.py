"""The frame packet: the one data type that flows through every stage.

A stage is any callable ``packet -> packet``; it reads the fields it needs and fills in its own.

    packet = FramePacket.capture(image, frame_id=0, source="phantom")
    packet = overlay(analyse(infer(preprocess(packet))))
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.core.evidence import VesselRegion

if TYPE_CHECKING:
    import cupy  # the CUDA path only; an optional extra



@lru_cache(maxsize=4)
def _inside_circle(size: tuple[int, int], circle: tuple[float, float, float] | None) -> np.ndarray:
    width, height = size
    if circle is None:
        return np.ones((height, width), bool)
    inside = np.zeros((height, width), np.uint8)
    cx, cy, r = circle
    cv2.circle(inside, (round(cx - 0.5), round(cy - 0.5)), round(r), 1, -1)
    return inside.astype(bool)


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

    def input_to_crop(self, stack: np.ndarray) -> np.ndarray:
        """(h, w, C) float input-space maps -> (crop height, crop width, C), bilinear."""
        x0, y0, x1, y1 = self.content_box()
        _, _, cw, ch = self.crop
        content = np.ascontiguousarray(stack[y0:y1, x0:x1])
        return cv2.resize(content, (cw, ch), interpolation=cv2.INTER_LINEAR).reshape(ch, cw, stack.shape[2])

    def crop_to_source(self, crop: np.ndarray, fill=0) -> np.ndarray:
        """An array over the crop placed into a source-sized one (``fill`` elsewhere)."""
        cx, cy, cw, ch = self.crop
        width, height = self.source_size
        out = np.full((height, width, *crop.shape[2:]), fill, crop.dtype)
        out[cy:cy + ch, cx:cx + cw] = crop
        return out

    def input_to_source(self, stack: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(h, w, C) float input-space maps -> (H, W, C) source pixels (bilinear; ``fill`` outside the crop)."""
        return self.crop_to_source(self.input_to_crop(stack), fill)

    def inside_fov(self, crop_only: bool = False) -> np.ndarray:
        """Boolean (H, W): source pixels inside the endoscope's circle (all, without one);
        ``crop_only``: just the crop's window of it."""
        inside = _inside_circle(self.source_size, self.fov)
        cx, cy, cw, ch = self.crop
        return inside[cy:cy + ch, cx:cx + cw] if crop_only else inside

    def content_box(self) -> tuple[int, int, int, int]:
        """Input-space ``(x0, y0, x1, y1)`` covered by the cropped image (not padding)."""
        width = round(self.crop[2] * self.scale)
        height = round(self.crop[3] * self.scale)
        return self.pad[0], self.pad[1], self.pad[0] + width, self.pad[1] + height


@dataclass
class Segmentation:
    """Model result in source pixels: a per-class map plus the instances behind it.

    ``class_map[y, x]`` is 0 (background) or ``class index + 1``. ``names[i]`` is class i's
    name and ``roles[i]`` what it is (``instrument``, ``vessel`` or ``other``). Instance masks
    are kept at model-input resolution (``instance_logits``) and mapped to source pixels only
    when :attr:`masks` is first read.
    """

    class_map: np.ndarray  # (H, W) uint8
    names: tuple[str, ...]
    roles: tuple[str, ...]
    class_ids: np.ndarray  # (N,) int
    scores: np.ndarray  # (N,) float
    boxes: np.ndarray  # (N, 4) float, x0 y0 x1 y1 in source pixels
    # (N, h, w) model-input pixels, > 0 inside the instance; on the GPU when decoded there
    instance_logits: np.ndarray | cupy.ndarray | None = None
    geometry: Geometry | None = None
    source_masks: np.ndarray | None = None  # (N, H, W) bool, once known in source pixels
    logits: np.ndarray | None = None  # (1 + N classes, h, w) a semantic model's logits at its head's stride
    # The vessel evidence stage's verdict: vessel pixels in ``class_map`` are the HIGH tier's only; the
    # advisory ones are outlines here; ``model_class_map`` is the model's own map before that split.
    advisory: list[VesselRegion] = field(default_factory=list)
    vessel_evidence: float | None = None  # the frame's strongest vessel region's evidence (0: none)
    model_class_map: np.ndarray | None = None

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool instance masks in source pixels."""
        if self.source_masks is None:
            height, width = self.class_map.shape
            if self.instance_logits is None or not len(self.instance_logits):
                self.source_masks = np.zeros((0, height, width), bool)
            else:
                logits = to_host(self.instance_logits)
                logits = self.geometry.input_to_source(logits.transpose(1, 2, 0), fill=-100.0)
                self.source_masks = (logits > 0).transpose(2, 0, 1) & self.geometry.inside_fov()
        return self.source_masks

    @masks.setter
    def masks(self, value: np.ndarray) -> None:
        self.source_masks = value

    def to_dict(self) -> dict:
        """JSON-ready: instances (class, role, score, box, area in source pixels, outlines traced at model-input
        resolution and mapped to source pixels), the advisory vessel regions and the frame's vessel evidence."""
        instances = []
        logits = to_host(self.instance_logits) if len(self.class_ids) else None  # one copy off the GPU
        for index, (cls, score, box) in enumerate(zip(self.class_ids, self.scores, self.boxes)):
            inside = (logits[index] > 0).astype(np.uint8)
            contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            polygons = [np.round(self.geometry.to_source(c.reshape(-1, 2) + 0.5) - 0.5).astype(int).reshape(-1)
                        .tolist() for c in contours if len(c) >= 3]
            instances.append({"class": self.names[cls], "class_id": int(cls), "role": self.roles[cls],
                              "score": round(float(score), 4), "box": [round(float(v), 1) for v in box],
                              "area": int(round(inside.sum() / self.geometry.scale**2)), "polygons": polygons})
        evidence = None if self.vessel_evidence is None else round(self.vessel_evidence, 6)
        return {"instances": instances, "advisory": [region.to_dict() for region in self.advisory],
                "vessel_evidence": evidence}

    @classmethod
    def from_dict(cls, values: dict, size: tuple[int, int], names: tuple[str, ...],
                  roles: tuple[str, ...]) -> Segmentation:
        """The instances' outlines rasterised back into a ``size`` (width, height) class map (higher score drawn
        last, wins)."""
        width, height = size
        class_map = np.zeros((height, width), np.uint8)
        instances = sorted(values["instances"], key=lambda i: i["score"])
        for instance in instances:
            polygons = [np.array(p, np.int32).reshape(-1, 2) for p in instance["polygons"]]
            cv2.fillPoly(class_map, polygons, instance["class_id"] + 1)
        return cls(class_map, names, roles, np.array([i["class_id"] for i in instances], int),
                   np.array([i["score"] for i in instances], np.float32),
                   np.array([i["box"] for i in instances], np.float32).reshape(-1, 4),
                   advisory=[VesselRegion.from_dict(region) for region in values.get("advisory", [])],
                   vessel_evidence=values.get("vessel_evidence"))

    def role_table(self, role: str) -> np.ndarray:
        """(256,) uint8: 1 for the class-map values whose class has ``role``, else 0."""
        table = np.zeros(256, np.uint8)
        table[[i + 1 for i, r in enumerate(self.roles) if r == role]] = 1
        return table

    def role_mask(self, role: str) -> np.ndarray:
        """Boolean (H, W) mask of every pixel whose class has ``role``."""
        return cv2.LUT(self.class_map, self.role_table(role)).view(bool)

    @property
    def grid_step(self) -> int:
        """Source pixels per model-input pixel, rounded down (1 without a geometry).

        The class map is the model's grid scaled up, so every ``grid_step``-th row and column
        still holds every cell of it: what analyses at the model's own resolution read.
        """
        return 1 if self.geometry is None else max(1, int(1.0 / self.geometry.scale + 1e-6))


@dataclass
class Proximity:
    """Closest instrument-vessel point pair in source pixels (``None`` points: one is absent)."""

    distance_px: float  # inf when there is no instrument or no vessel
    instrument_point: tuple[int, int] | None = None
    vessel_point: tuple[int, int] | None = None
    mm_per_px: float | None = None
    tier: str | None = None  # the vessel's evidence tier: high, advisory (None: no vessel)
    advisory: Proximity | None = None  # beside a HIGH-tier pair: a nearer advisory-tier ("possible") vessel's

    @property
    def distance_mm(self) -> float | None:
        return None if self.mm_per_px is None else self.distance_px * self.mm_per_px

    def to_dict(self) -> dict:
        """JSON-ready (the wire's ``proximity``, replay's records, the API): an infinite distance is null."""
        finite = np.isfinite(self.distance_px)
        return {"distance_px": round(float(self.distance_px), 2) if finite else None,
                "distance_mm": round(float(self.distance_mm), 3) if finite and self.mm_per_px else None,
                "mm_per_px": self.mm_per_px, "instrument_point": self.instrument_point,
                "vessel_point": self.vessel_point, "tier": self.tier,
                "advisory_pair": self.advisory.to_dict() if self.advisory is not None else None}

    @classmethod
    def from_dict(cls, values: dict) -> Proximity:
        distance = values.get("distance_px")
        point = [tuple(values[k]) if values.get(k) is not None else None for k in ("instrument_point", "vessel_point")]
        nearer = values.get("advisory_pair")
        return cls(distance if distance is not None else float("inf"), *point, values.get("mm_per_px"),
                   values.get("tier"), cls.from_dict(nearer) if nearer else None)


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
    tier: str | None = None  # clinical alerts: the vessel evidence tier behind it (high, advisory)

    def to_dict(self) -> dict:
        """JSON-ready: the wire's alert, the audit log's line, the API's and the replay's records."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AlertEvent:
        """From the wire (fields this version does not know are left out)."""
        known = {key: value for key, value in values.items() if key in ALERT_FIELDS}
        return cls(**{**known, "location": tuple(known["location"]) if known.get("location") else None})


ALERT_FIELDS = frozenset(f.name for f in fields(AlertEvent))


def to_host(array: np.ndarray | cupy.ndarray) -> np.ndarray:
    """A host copy of a device (CuPy) array; a host array as it is."""
    return array if isinstance(array, np.ndarray) else array.get()


@dataclass
class DeviceBuffers:
    """The frame's data on the GPU (CUDA path), all ordered on ``stream``.

    Filled in stage by stage like the packet: the frame and the model input by the CUDA
    preprocess, the raw outputs by a backend that keeps them there, the class map by the CUDA
    decoder. Which stages use them is decided once, when the graph is built.
    """

    stream: cupy.cuda.Stream  # the preprocess kernel's, and the model's
    image: cupy.ndarray  # (H, W, 3) uint8, the captured frame (valid until its upload slot is reused)
    tensor: cupy.ndarray  # (1, 3, h, w) model input
    outputs: list[cupy.ndarray] | None = None  # raw model outputs, when they stay on the device
    class_map: cupy.ndarray | None = None  # (H, W) uint8, as ``Segmentation.class_map``


@dataclass
class FramePacket:
    """One captured frame and everything the stages learn about it."""

    frame_id: int
    source: str
    image: np.ndarray  # (H, W, 3) uint8 BGR: as captured, or undistorted during analysis
    t_capture_ns: int  # wall clock, for delays across processes on one host
    t_capture_mono_ns: int  # monotonic, for in-process timings
    geometry: Geometry | None = None
    tensor: np.ndarray | None = None  # model input, (1, 3, h, w) float (host preprocessing)
    outputs: list[np.ndarray] | None = None  # raw model outputs on the host (predictions, mask prototypes)
    device: DeviceBuffers | None = None  # the GPU's copies (CUDA preprocessing only)
    segmentation: Segmentation | None = None
    proximity: Proximity | None = None
    alerts: list[AlertEvent] = field(default_factory=list)  # transitions this frame
    active_alerts: list[AlertEvent] = field(default_factory=list)
    overlay: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    truth: object | None = None  # ground truth, when the source knows it (the phantom's PhantomTruth)
    privacy: str | None = None  # inside, outside or blank (the privacy stage); None: not judged
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
