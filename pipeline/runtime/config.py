"""Pipeline settings: one dataclass, validated once, used by the CLI, the live path and replay.

    config = load_config("settings.yaml")        # ConfigError names the key at fault
    config = PipelineConfig(conf=0.4)            # validated on creation too
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.core.classes import class_roles
from pipeline.core.privacy import MODES
from pipeline.stages.alerts.rules import RULES, build_rules
from pipeline.stages.undistort import OVERLAY_VIEWS

MIN_INPUT_SIDE = 32  # a model input side is a multiple of the deepest stride (32)


class ConfigError(ValueError):
    """A setting of the wrong type or out of range; the message names the key."""


@dataclass
class PipelineConfig:
    """Settings of the AI path (``orsight run --config FILE`` overrides any of them)."""

    imgsz: int | tuple[int, int] | None = None  # model input (N or (W, H)); the model's own when None
    conf: float = 0.25  # instance score threshold, (0, 1]
    iou: float = 0.7  # non-maximum suppression overlap, (0, 1]
    crop_to_fov: bool = True
    mm_per_px: float | None = None
    alerts: dict[str, dict] = field(default_factory=dict)  # rule name -> its parameters (stages/alerts/rules.py)
    stale_ms: float = 120.0  # segmentation older than this is stale (ai_stale, clinical alerts suppressed)
    roles: dict[str, str] = field(default_factory=dict)  # class name -> instrument|vessel|other
    overlay_view: str = "original"  # with a calibration: draw on the original or the undistorted picture
    privacy: str = "blur"  # out-of-body frames in every shared picture: blur, blank, or off (unchanged)
    privacy_every: int = 3  # the out-of-body model scores every N-th frame live (replay: every frame)

    def __post_init__(self):
        validate(self)


def _number(key: str, value, low: float, high: float = math.inf, low_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a number, not {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high != math.inf else f"> {low:g}"
        raise ConfigError(f"{key} must be in {bounds}, not {value!r}")


def validate(config: PipelineConfig) -> None:
    """Types, ranges and names of every setting; :class:`ConfigError` on the first bad one."""
    if config.imgsz is not None:
        sides = config.imgsz if isinstance(config.imgsz, (tuple, list)) else (config.imgsz,)
        if len(sides) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) or s < MIN_INPUT_SIDE
                                           or s % MIN_INPUT_SIDE for s in sides):
            raise ConfigError(f"imgsz must be N or [W, H], multiples of {MIN_INPUT_SIDE} (the models' deepest "
                              f"stride), not {config.imgsz!r}")
    _number("conf", config.conf, 0.0, 1.0)
    _number("iou", config.iou, 0.0, 1.0)
    if not isinstance(config.crop_to_fov, bool):
        raise ConfigError(f"crop_to_fov must be true or false, not {config.crop_to_fov!r}")
    if config.mm_per_px is not None:
        _number("mm_per_px", config.mm_per_px, 0.0)
    _number("stale_ms", config.stale_ms, 0.0)
    if config.privacy not in MODES:
        raise ConfigError(f"privacy must be one of {', '.join(MODES)}, not {config.privacy!r}")
    if isinstance(config.privacy_every, bool) or not isinstance(config.privacy_every, int) or config.privacy_every < 1:
        raise ConfigError(f"privacy_every must be a whole number of at least 1, not {config.privacy_every!r}")
    if config.overlay_view not in OVERLAY_VIEWS:
        raise ConfigError(f"overlay_view must be one of {', '.join(OVERLAY_VIEWS)}, not {config.overlay_view!r}")
    for key, mapping in (("alerts", config.alerts), ("roles", config.roles)):
        if not isinstance(mapping, dict):
            raise ConfigError(f"{key} must be a mapping, not {mapping!r}")
    try:
        class_roles(tuple(config.roles), config.roles)
        build_rules(tuple(RULES), config.alerts)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | Path | None) -> PipelineConfig:
    """Settings from a YAML file (keys of :class:`PipelineConfig`); defaults without one."""
    if path is None:
        return PipelineConfig()
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(values) - known) if isinstance(values, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"config {path}: unknown settings {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if isinstance(values.get("imgsz"), list):
        values["imgsz"] = tuple(values["imgsz"])
    try:
        return PipelineConfig(**values)
    except ConfigError as error:
        raise ConfigError(f"config {path}: {error}") from None
