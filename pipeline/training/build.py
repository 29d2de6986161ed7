"""Fresh (untrained) models from architecture YAMLs: ultralytics' own and orsight's, never from a hub.

    model = model_from_yaml("yolo26n-seg", names=("instrument", "vessel"), seed=0)
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch
import yaml

from pipeline.core.yolo import YOLO
from pipeline.training.efficientnet import configure as configure_efficientnet
from pipeline.training.efficientnet import register as register_efficientnet

register_efficientnet()  # orsight's pretrained backbone, a layer name in architecture YAMLs

ARCHITECTURES = Path(__import__("ultralytics").__file__).parent / "cfg" / "models"
OWN_ARCHITECTURES = Path(__file__).parent / "architectures"  # orsight's own YAMLs


def architecture_config(arch: str) -> dict:
    """The architecture of ``arch`` as a dict; ``effnetliteN-sem`` and ``-seg`` are one YAML each, set to Lite N."""
    lite = re.fullmatch(r"effnetlite(\d+)-(sem|seg)", arch)
    if lite:
        config = yaml.safe_load((OWN_ARCHITECTURES / f"effnetlite-{lite[2]}.yaml").read_text())
        return configure_efficientnet(config, int(lite[1]))
    return yaml.safe_load(architecture_yaml(arch).read_text())


def architecture_yaml(arch: str) -> Path:
    """The YAML of ``arch``: orsight's own (``training/architectures``) or the installed ultralytics'."""
    own = OWN_ARCHITECTURES / f"{arch}.yaml"
    if own.is_file():
        return own
    family, scale_and_task = arch[len("yolo"):].split("-", 1) if "-" in arch else (arch[len("yolo"):], "")
    version = family[:-1]  # "26n" -> "26"; the scale letter stays in the file name below
    base = ARCHITECTURES / version / f"yolo{version}{'-' + scale_and_task if scale_and_task else ''}.yaml"
    if not base.exists():
        raise ValueError(f"unknown architecture {arch!r}: not in orsight's or ultralytics' model YAMLs")
    return base


def model_from_yaml(arch: str = "yolo26n-seg", names: tuple[str, ...] = ("instrument", "vessel"),
                    seed: int = 0) -> YOLO:
    """A freshly initialised (untrained) model of ``arch`` with ``names`` as its classes.

    ``arch`` is ultralytics' name such as ``yolo26n-seg`` (scale letter included) or one of
    orsight's (``yolo26n-sem-p2``); never fetched from a hub. A semantic model gets
    ``background`` as class 0 before ``names``.
    """
    config = architecture_config(arch)
    semantic = "SemanticSegment" in str(config["head"][-1])
    classes = ("background", *names) if semantic else tuple(names)
    config["nc"] = len(classes)
    folder = Path(tempfile.mkdtemp(prefix="orsight-arch-"))
    path = folder / f"{arch}.yaml"  # the scale letter in the file name selects the width/depth
    path.write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    model = YOLO(str(path), task="semantic" if semantic else "segment")
    model.model.names = dict(enumerate(classes))
    return model
