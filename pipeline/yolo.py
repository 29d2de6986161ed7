"""The one door to ultralytics: offline, no auto-install, no telemetry, models from YAML only.

    model = model_from_yaml("yolo26n-seg", names=("instrument", "vessel"), seed=0)
"""
from __future__ import annotations

from pathlib import Path
import tempfile

import pipeline  # noqa: F401  (sets YOLO_OFFLINE / YOLO_AUTOINSTALL first)
import torch
import yaml
from ultralytics import YOLO
from ultralytics.utils import SETTINGS

if SETTINGS.get("sync"):
    SETTINGS.update(sync=False)  # no usage analytics, ever

ARCHITECTURES = Path(__import__("ultralytics").__file__).parent / "cfg" / "models"


def model_from_yaml(arch: str = "yolo26n-seg", names: tuple[str, ...] = ("instrument", "vessel"),
                    seed: int = 0) -> YOLO:
    """A freshly initialised (untrained) model of ``arch`` with ``names`` as its classes.

    ``arch`` is ultralytics' name such as ``yolo26n-seg`` (scale letter included); the YAML
    comes from the installed package, never from a hub.
    """
    family, scale_and_task = arch[len("yolo"):].split("-", 1) if "-" in arch else (arch[len("yolo"):], "")
    version = family[:-1]  # "26n" -> "26"; the scale letter stays in the file name below
    base = ARCHITECTURES / version / f"yolo{version}{'-' + scale_and_task if scale_and_task else ''}.yaml"
    if not base.exists():
        raise ValueError(f"unknown architecture {arch!r}: no {base.name} in ultralytics")
    config = yaml.safe_load(base.read_text())
    config["nc"] = len(names)
    folder = Path(tempfile.mkdtemp(prefix="orsight-arch-"))
    path = folder / f"{arch}.yaml"  # the scale letter in the file name selects the width/depth
    path.write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    model = YOLO(str(path), task="segment")
    model.model.names = dict(enumerate(names))
    return model
