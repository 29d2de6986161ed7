"""The Python API: the live path on a user's frames and videos."""
import json

import numpy as np

from pipeline import Analyzer
from pipeline.sources.phantom import PhantomScene


def test_a_frame_gives_a_result_with_instances_masks_proximity_and_a_picture(untrained_models):
    analyzer = Analyzer(untrained_models["onnx"])
    image, _ = PhantomScene(640, 360, scenario="approach").render(120)
    result = analyzer.analyse(image)
    assert result.class_map.shape == (360, 640) and result.masks.shape[1:] == (360, 640)
    assert len(result.instances) == len(result.masks) and result.plot().shape == image.shape
    record = json.loads(result.to_json())
    assert set(record) >= {"instances", "distance_px", "alerts", "timings_ms"}
    assert {"preprocess", "infer", "decode", "evidence", "proximity", "alerts", "overlay"} <= set(record["timings_ms"])
    second = analyzer.analyse(np.zeros_like(image), new_scene=True)
    assert second.packet.frame_id == 1 and not second.class_map.any()


def test_replay_from_python(untrained_models, tmp_path):
    import cv2

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for frame in range(5):
        writer.write(PhantomScene(320, 240).render(frame)[0])
    writer.release()
    summaries, errors = Analyzer(untrained_models["onnx"]).replay([path], tmp_path / "out")
    assert errors == {} and summaries[0]["frames_analysed"] == 5


def test_a_video_streams_on_its_own_times_with_the_same_alerts_every_run(tmp_path):
    """The README's example: ``for t_s, result in analyzer.stream(video)``. Alerts follow the media time,
    so two runs (one of them slowed, as a busy machine would) give the same timeline."""
    import time

    import cv2

    path = tmp_path / "clip.mp4"
    scene = PhantomScene(320, 240, fps=30, scenario="approach")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for frame in range(100, 160):  # the instrument reaches the vessel
        writer.write(scene.render(frame)[0])
    writer.release()

    def timeline(pause_s: float) -> list:
        events = []
        for t_s, result in Analyzer().stream(path):
            events += [(round(t_s, 4), e.rule, e.state) for e in result.packet.alerts]
            time.sleep(pause_s)
        return events

    first = timeline(0.0)
    assert first and first == timeline(0.15)  # 150 ms between frames: more than the live stale limit
    assert all(t == round(round(t * 30) / 30, 4) for t, _, _ in first)  # frame times of the 30 fps video
