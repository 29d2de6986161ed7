"""`orsight run --record DIR`: the case kept as captured, replayed on its own capture times."""
import json

import av
import numpy as np

from pipeline.sources.phantom import PhantomScene
from tests.helpers import orsight

FRAMES = 90


def _recorded_times(folder) -> list[int]:
    rows = (folder / "frames.csv").read_text().splitlines()
    assert rows[0] == "frame,t_capture_ns,privacy"
    return [int(row.split(",")[1]) for row in rows[1:]]


def test_a_recorded_run_replays_with_its_frames_and_capture_times(tmp_path):
    folder = tmp_path / "case"
    run = orsight("run", "--source", "phantom:outside", "--size", "640x360", "--frames", FRAMES, "--realtime",
                  "--record", folder, "--publish", f"ipc://{tmp_path}/live.sock")
    assert run.returncode == 0, run.stderr
    recorded = json.loads((folder / "recording.json").read_text())
    assert recorded["complete"] and recorded["frames"] + recorded["frames_not_recorded"] == FRAMES
    times = _recorded_times(folder)
    assert len(times) == recorded["frames"] and times == sorted(times)
    assert len((folder / "status.jsonl").read_text().splitlines()) >= 2  # heartbeats and the final status
    replay = orsight("replay", folder, "--out", tmp_path / "out", "--no-progress", "--pseudonym-key", tmp_path / "key",
                     timeout=600)
    assert replay.returncode == 0, replay.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "case" / "frames.jsonl").open()]
    assert len(records) == len(times)
    assert [r["t_s"] for r in records] == [round((t - times[0]) / 1e9, 6) for t in times]


def test_a_lossless_recording_holds_every_pixel_as_captured(tmp_path):
    folder = tmp_path / "case"
    run = orsight("run", "--source", "phantom", "--size", "320x240", "--frames", 20, "--record", folder, "--lossless",
                  "--publish", f"ipc://{tmp_path}/live.sock")
    assert run.returncode == 0, run.stderr
    with av.open(str(folder / "video.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert np.array_equal(first, PhantomScene(320, 240).render(0)[0])


def test_a_recording_never_overwrites_one(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(b"an earlier case")
    run = orsight("run", "--frames", 5, "--record", folder, "--publish", f"ipc://{tmp_path}/live.sock")
    assert run.returncode == 2 and "not empty" in run.stderr
    assert (folder / "video.mp4").read_bytes() == b"an earlier case"
