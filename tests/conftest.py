"""Shared fixtures: a seeded, untrained model built from ultralytics' YAML (no downloads)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The tests' own list of trusted .pt checkpoints (never the user's), inherited by the CLI processes they start.
os.environ["ORSIGHT_TRUSTED_MODELS"] = str(Path(tempfile.mkdtemp(prefix="orsight-tests-")) / "trusted-models.txt")


@pytest.fixture(scope="session")
def untrained_models(tmp_path_factory) -> dict[str, Path]:
    """``{"pt": ..., "onnx": ...}``: yolo26n-seg, classes instrument/vessel, seed 0, 320 px."""
    return _untrained("yolo26n-seg", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def untrained_semantic_models(tmp_path_factory) -> dict[str, Path]:
    """The same for orsight's semantic architecture (background, instrument, vessel)."""
    return _untrained("yolo26n-sem-p2", tmp_path_factory.mktemp("semantic-models"))


def _untrained(arch: str, folder: Path) -> dict[str, Path]:
    from pipeline.core.trust import trust
    from pipeline.training.build import model_from_yaml
    from pipeline.training.export import export_onnx

    pt = folder / f"untrained-{arch}.pt"
    model_from_yaml(arch, seed=0).save(str(pt))
    trust(pt)  # written by the tests themselves
    return {"pt": pt, "onnx": export_onnx(pt, imgsz=320, out=folder / f"untrained-{arch}.onnx")}


@pytest.fixture
def free_tcp_endpoint() -> str:
    from tests.helpers import free_port

    return f"tcp://127.0.0.1:{free_port()}"
