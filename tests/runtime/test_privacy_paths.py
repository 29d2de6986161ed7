"""Out-of-body video through every path: the live recording, the web picture, replay, anonymize and the API."""
import json
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.api import Analyzer
from pipeline.core.packet import FramePacket
from pipeline.core.privacy import OUTSIDE
from pipeline.display.viewer import Shown, run_display
from pipeline.display.web import WebState
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.runtime.live import LiveOptions, run_live
from pipeline.sources.capture import open_source
from pipeline.sources.phantom import PhantomScene
from pipeline.sources.room import RoomScene
from pipeline.stages.infer import load_model
from pipeline.stages.privacy import OutOfBodyModel
from pipeline.transport.zeromq import Publisher
from tests.helpers import orsight

FPS = 30
ROOM = range(60, 120)  # the phantom's outside scenario: the room from 2 s to 4 s


def _hidden(image: np.ndarray) -> bool:
    """The OUT OF BODY band (black, right across the middle), and nothing sharp above it."""
    height = image.shape[0]
    middle = image[height // 2 - height // 10: height // 2 + height // 10]
    band = ((middle.max(axis=2) < 40).mean(axis=1) > 0.9).any()
    top = image[: height // 3]
    flat = np.abs(top.astype(int) - cv2.GaussianBlur(top, (0, 0), 8).astype(int)).max() < 25
    return bool(band and flat)


def _frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """(time in seconds, BGR picture) of every frame of an MP4."""
    with av.open(str(path)) as container:
        return [(float(frame.time), frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def outside_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "Smith_John_MRN1234.mp4"
    scene = PhantomScene(320, 240, fps=FPS, scenario="outside")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (320, 240))
    for frame in range(150):
        writer.write(scene.render(frame)[0])
    writer.release()
    return path


def test_a_live_recording_hides_the_room_within_three_frames(tmp_path):
    endpoint = f"ipc://{tmp_path}/live.sock"
    publisher = Publisher(endpoint)
    recording, summary = tmp_path / "shown.mp4", {}
    display = threading.Thread(target=lambda: summary.update(run_display(endpoint, headless=True, record=recording,
                                                                                 until_publisher_ends=True)))
    display.start()
    try:
        assert publisher.wait_for_subscriber(timeout=30)
        graph = build_graph(load_model(None), PipelineConfig(), privacy=OutOfBodyModel())
        live = run_live(open_source("phantom:outside", size=(640, 360), fps=FPS), graph, publisher,
                        LiveOptions(frames=150, realtime=True))
        display.join(timeout=60)
    finally:
        publisher.close()
    assert live["out_of_body"]["outside_frames"] >= len(ROOM) - 2
    assert summary["frames_outside"] > 0
    shown = {round(t * FPS): image for t, image in _frames(recording)}  # capture times: frame numbers
    assert all(_hidden(image) for index, image in shown.items() if ROOM.start + 2 <= index < ROOM.stop)
    assert not any(_hidden(image) for index, image in shown.items() if index < ROOM.start)


def test_the_web_picture_of_an_outside_frame_is_hidden():
    room = RoomScene(640, 360).render(0, 30.0)
    packet = FramePacket(0, "x", room, 0, 0, privacy=OUTSIDE)
    web = WebState()

    class Idle:  # what WebState.update reads of the compositor: no status, no delays yet
        status = None
        receiver = type("Receiver", (), {"delays_ms": {"mask": []}})()

    web.update(Shown(room.copy(), 0, True, False, packet), Idle())
    picture = cv2.imdecode(np.frombuffer(web.snapshot(), np.uint8), cv2.IMREAD_COLOR)
    assert _hidden(picture) and json.loads(web.state)["privacy"] == OUTSIDE


def test_replay_holds_the_analysis_and_hides_the_room(outside_video, tmp_path):
    key = tmp_path / "key"
    result = orsight("replay", str(outside_video), "--out", str(tmp_path / "out"), "--no-progress",
                     "--pseudonym-key", str(key), timeout=600)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / outside_video.stem
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["video"].startswith("video-") and "Smith" not in json.dumps(summary)
    assert "Smith" not in (folder / "report.html").read_text()
    assert len(ROOM) <= summary["out_of_body"]["outside_frames"] <= len(ROOM) + 3
    records = [json.loads(line) for line in (folder / "frames.jsonl").open()]
    outside = [r for r in records if r["privacy"] == OUTSIDE]
    assert outside[0]["frame"] == ROOM.start and all(not r["instances"] for r in outside)
    held = {r["frame"] for r in outside}
    alerts = [json.loads(line) for line in (folder / "alerts.jsonl").open()]
    assert not [a for a in alerts if a["state"] == "raised" and a["frame_id"] in held]  # no alarm on the room
    frames = _frames(folder / "annotated.mp4")
    assert all(_hidden(image) for index, (_, image) in enumerate(frames) if index in held)
    assert not any(_hidden(image) for index, (_, image) in enumerate(frames) if index < ROOM.start)


def test_anonymize_writes_a_pseudonymous_copy_and_resumes(outside_video, tmp_path):
    key, out = tmp_path / "key", tmp_path / "shared"
    result = orsight("anonymize", str(outside_video), "--out", str(out), "--pseudonym-key", str(key), "--cut")
    assert result.returncode == 0, result.stderr
    (segments,) = out.glob("video-*.json")
    facts = json.loads(segments.read_text())
    assert "Smith" not in " ".join(p.name for p in out.iterdir()) + segments.read_text()
    room = [s for s in facts["segments"] if s["state"] == OUTSIDE]
    assert room and room[0]["first_frame"] == ROOM.start
    assert facts["frames_written"] == facts["frames"] - facts["frames_by_state"][OUTSIDE]
    written = _frames(segments.with_suffix(".mp4"))
    assert len(written) == facts["frames_written"] and not any(_hidden(image) for _, image in written)
    with av.open(str(segments.with_suffix(".mp4"))) as container:
        assert not {"title", "creation_time", "comment"} & set(container.metadata)
    again = orsight("anonymize", str(outside_video), "--out", str(out), "--pseudonym-key", str(key), "--cut")
    assert again.returncode == 0 and "done before" in again.stdout


def test_the_api_does_not_analyse_an_outside_frame():
    analyzer = Analyzer(privacy=True)
    scene = PhantomScene(640, 360, fps=FPS, scenario="outside")
    inside = analyzer.analyse(scene.render(30)[0])
    outside = analyzer.analyse(scene.render(70)[0])
    assert inside.privacy == "inside" and outside.privacy == OUTSIDE
    assert not outside.instances and not outside.alerts
    assert _hidden(outside.plot(shared=True)) and not _hidden(outside.plot())
