"""The one graph builder: every path runs its stages; the chain of packet fields is checked."""
import json

import cv2
import numpy as np
import pytest

import pipeline.api as api_module
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import GraphError, build_graph, check_chain
from pipeline.runtime.replay import ReplayOptions, ReplayWorker
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.analyse.cpu import MeasureProximity
from pipeline.stages.infer import load_model
from pipeline.stages.overlay.cpu import Overlay
from pipeline.stages.undistort import Redistort, Undistort
from pipeline.training.evaluate import evaluate
from tests.helpers import PINHOLE, frame_times, orsight


def _kinds(stages):
    return [type(stage).__name__ for stage in stages]


def test_live_eval_and_replay_run_the_same_stages(untrained_models, monkeypatch, tmp_path):
    model = load_model(untrained_models["onnx"])
    live = _kinds(build_graph(model, PipelineConfig()))
    assert live == ["LetterboxPreprocess", "OnnxSegmentationModel", "InstanceDecode", "VesselEvidence",
                    "MeasureProximity", "Alerts", "Overlay"]
    built = []

    def recording_build_graph(*args, **kwargs):
        built.append(build_graph(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(api_module, "build_graph", recording_build_graph)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), PhantomScene(320, 240).render(0)[0])
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((240, 320), np.uint8))
    evaluate(tmp_path, model, allow_unmapped=True)
    assert _kinds(built[0]) == live  # eval scores the live graph, through the Python API
    analyser = ReplayWorker(untrained_models["onnx"], ReplayOptions(progress=False))
    assert _kinds(analyser.graph) == live[:5]  # replay's own finishing segment runs from the records


def test_a_calibration_puts_undistortion_around_the_graph(untrained_models):
    graph = build_graph(load_model(untrained_models["onnx"]), PipelineConfig(), camera=PINHOLE)
    assert isinstance(graph.prepare[0], Undistort) and isinstance(graph.finish[-1], Redistort)
    assert _kinds(graph.describe) == ["InstanceDecode", "VesselEvidence", "MeasureProximity"]
    assert graph.preprocess is graph.prepare[-1] and graph.overlay in graph.finish
    assert [type(stage).__name__ for stage in graph.undrawn()] == [*_kinds(graph)[:-2], "Redistort"]


def test_a_broken_chain_is_refused_when_built():
    with pytest.raises(GraphError, match="MeasureProximity reads segmentation"):
        check_chain([MeasureProximity(), Overlay()])


def test_replay_with_a_calibration_undistorts(untrained_models, tmp_path):
    video = tmp_path / "scope.mp4"
    scene = PhantomScene(640, 480, scenario="approach")
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for frame in range(100, 106):
        writer.write(scene.render(frame)[0])
    writer.release()
    PINHOLE.save(tmp_path / "scope.yaml")
    for name, extra in (("plain", []), ("calibrated", ["--calibration", str(tmp_path / "scope.yaml")])):
        result = orsight("replay", str(video), "--out",
                         str(tmp_path / name), "--model", str(untrained_models["onnx"]), "--no-progress",
                         *extra, timeout=300)
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / name / "scope" / "summary.json").read_text())
        assert summary["frames_analysed"] == 6
    analyser = ReplayWorker(untrained_models["onnx"], ReplayOptions(progress=False, camera=PINHOLE))
    assert isinstance(analyser.graph.prepare[0], Undistort)
    assert len(frame_times(tmp_path / "calibrated" / "scope" / "annotated.mp4")) == 6
    # analysed straightened, drawn back onto the picture as recorded: the output lines up with the input
    # (not with its undistorted version), as the plain run's does
    inputs, plain, calibrated = (_frames(path) for path in (video, tmp_path / "plain" / "scope" / "annotated.mp4",
                                                              tmp_path / "calibrated" / "scope" / "annotated.mp4"))
    map_x, map_y = PINHOLE.undistort_maps()
    for source, drawn, drawn_plain in zip(inputs, calibrated, plain):
        straightened = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR)
        assert _difference(drawn, source) < 0.25 * _difference(drawn, straightened)
        assert _difference(drawn, source) < 0.02 + _difference(drawn_plain, source)


def _frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels dark in one picture and not in the other: where the endoscope's circle and the
    picture's black corners lie (the drawn masks, inside the circle, do not move it)."""
    dark = [cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY) < 16 for picture in (a, b)]
    return float((dark[0] != dark[1]).mean())
