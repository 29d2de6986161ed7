"""`orsight validate` and eval's vessel figures: the rule that picks the points, and the points kept in the file."""
import json
import shutil

import cv2
import numpy as np
import pytest

from pipeline.core.evidence import METADATA_KEY, OperatingPoints
from pipeline.sources.phantom import VESSEL, PhantomScene
from pipeline.stages.infer import DEFAULT_CPU_MODEL, checkpoint_metadata, load_model
from pipeline.training.operating_points import choose_points, write_points
from pipeline.training.vessel_metrics import roc_auc
from tests.helpers import orsight


def test_the_points_follow_the_rule():
    present = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    absent = np.array([0.0] * 15 + [0.05, 0.15, 0.25, 0.35, 0.45])
    high, advisory = choose_points(present, absent)
    assert high.false_alarm <= 0.05 and high.threshold == pytest.approx(0.4)  # one false frame of 20 allowed
    assert high.detected == pytest.approx(0.6)
    assert advisory.detected >= 0.8 and advisory.threshold == pytest.approx(0.2)  # the highest that keeps 80 %
    assert roc_auc(present, absent) == pytest.approx(np.mean([[(p > a) + 0.5 * (p == a) for a in absent]
                                                             for p in present]))
    high, advisory = choose_points(np.array([0.1, 0.2]), np.array([0.3, 0.4]))  # nothing separates them
    assert high is None and advisory is not None


def _labelled_frames(folder, count=6):
    """Phantom frames with their masks, and as many with the vessel painted out (frames without a vessel)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    scene = PhantomScene(960, 540, seed=4)
    for index in range(count):
        image, truth = scene.render(index * 20)
        cv2.imwrite(str(folder / "images" / f"with_{index}.jpg"), image)
        cv2.imwrite(str(folder / "masks" / f"with_{index}.png"), truth.class_map)
        vessel = cv2.dilate((truth.class_map == VESSEL).astype(np.uint8), np.ones((9, 9), np.uint8))
        cv2.imwrite(str(folder / "images" / f"without_{index}.jpg"), cv2.inpaint(image, vessel, 7, cv2.INPAINT_TELEA))
        cv2.imwrite(str(folder / "masks" / f"without_{index}.png"), np.where(truth.class_map == VESSEL, 0,
                                                                              truth.class_map).astype(np.uint8))



def test_validate_stores_the_points_and_eval_reports_them(tmp_path):
    _labelled_frames(tmp_path / "val")
    bare = tmp_path / "bare.onnx"
    shutil.copy(DEFAULT_CPU_MODEL, bare)
    out = tmp_path / "validated.onnx"
    result = orsight("validate", "--data", tmp_path / "val", "--model", bare, "--out", out, "--mapping", "1:0,2:1",
                     "--ignore", "255", "--plot", tmp_path / "roc.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HIGH" in result.stdout and (tmp_path / "roc.png").stat().st_size > 1000
    points = load_model(out).operating_points
    assert points.frames_present == 6 and points.frames_absent == 6 and points.advisory.detected >= 0.8
    assert points.high is None or points.high.false_alarm <= 0.05
    result = orsight("eval", "--data", tmp_path / "val", "--model", out, "--mapping", "1:0,2:1", "--ignore", "255",
                     "--json", tmp_path / "eval.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    vessel = json.loads((tmp_path / "eval.json").read_text())["classes"]["vessel"]
    assert vessel["advisory_detected"] == pytest.approx(points.advisory.detected)
    assert vessel["advisory_false_alarm"] == pytest.approx(points.advisory.false_alarm)
    for key in ("high_detected", "high_false_alarm"):
        assert key in vessel
    assert 0 <= vessel["pixel_ece"] < 1 and vessel["temperature"] == pytest.approx(points.temperature)


def test_the_points_travel_through_export(untrained_semantic_models, tmp_path):
    from pipeline.training.export import export_onnx

    points = load_model(DEFAULT_CPU_MODEL).operating_points
    checkpoint = write_points(untrained_semantic_models["pt"], tmp_path / "validated.pt", points)
    assert OperatingPoints.from_json(checkpoint_metadata(checkpoint)[METADATA_KEY]) == points
    assert load_model(checkpoint).operating_points == points
    exported = load_model(export_onnx(checkpoint, imgsz=320, out=tmp_path / "validated.onnx"))
    assert exported.operating_points == points
    assert [output.name for output in exported.session.get_outputs()][-1] == "logits"


def test_a_model_file_without_points_says_so(untrained_semantic_models):
    assert load_model(untrained_semantic_models["onnx"]).operating_points is None
    assert load_model(DEFAULT_CPU_MODEL).operating_points.high.false_alarm <= 0.05
