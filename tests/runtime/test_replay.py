"""Replay: every frame, in order; identical results single / chunked / Ray; partial; report."""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.replay import ReplayOptions, replay_videos
from pipeline.runtime.video import plan_chunks
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.infer import DEFAULT_MODEL
from tests.helpers import orsight

FRAMES = 90


@pytest.fixture(scope="module")
def phantom_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "approach.mp4"
    scene = PhantomScene(320, 240, fps=30, scenario="approach")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for frame in range(100, 100 + FRAMES):  # the instrument closes in on the vessel and touches it
        writer.write(scene.render(frame)[0])
    writer.release()
    return path


@pytest.fixture(scope="module")
def replay_model(untrained_models):
    """The shipped model when there is one; else the untrained one at a low threshold (many instances)."""
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL, PipelineConfig()
    return untrained_models["onnx"], PipelineConfig(conf=0.002)


def _run(video, out, model, config, **kw):
    options = ReplayOptions(progress=False, config=config, chunk_frames=kw.pop("chunk_frames", None))
    return replay_videos([str(video)], out, model, options, **kw)


@pytest.fixture(scope="module")
def single_run(phantom_video, replay_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    summaries, errors = _run(phantom_video, out, *replay_model)
    return out / phantom_video.stem, summaries[0], errors


def test_every_frame_in_order_with_all_outputs(single_run):
    folder, summary, errors = single_run
    assert errors == {} and not summary["partial"] and summary["frames_analysed"] == FRAMES
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["annotated.mp4", "frames.jsonl", "alerts.jsonl", "report.html", "summary.json"])
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(FRAMES))
    import av

    with av.open(str(folder / "annotated.mp4")) as container:  # H.264: browsers play it
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
    assert stream.codec_context.name == "h264" and len(times) == FRAMES
    assert times[-1] == pytest.approx((FRAMES - 1) / 30, abs=0.002)  # each frame at its time in the video
    assert records[1]["t_s"] == pytest.approx(1 / 30, abs=1e-5)
    video = cv2.VideoCapture(str(folder / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES and video.get(cv2.CAP_PROP_FPS) == pytest.approx(30)
    assert sum(len(r["instances"]) for r in records) > 0


def test_chunks_start_on_keyframes_and_cover_every_frame(phantom_video):
    chunks = plan_chunks(str(phantom_video), FRAMES, 30)
    assert chunks[0][0] == 0 and chunks[-1][1] == FRAMES
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:])) and len(chunks) >= 2


def test_chunked_run_gives_identical_results(single_run, phantom_video, replay_model, tmp_path):
    folder, _, _ = single_run
    _, errors = _run(phantom_video, tmp_path, *replay_model, chunk_frames=30)
    assert errors == {}
    for name in ("frames.jsonl", "alerts.jsonl"):
        assert (tmp_path / phantom_video.stem / name).read_bytes() == (folder / name).read_bytes()


def test_ray_run_on_two_local_workers_gives_identical_results(single_run, phantom_video, replay_model, tmp_path):
    ray = pytest.importorskip("ray")
    folder, _, _ = single_run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _, errors = _run(phantom_video, tmp_path, *replay_model, chunk_frames=30, use_ray=True)
    finally:
        ray.shutdown()
    assert errors == {}
    for name in ("frames.jsonl", "alerts.jsonl"):
        assert (tmp_path / phantom_video.stem / name).read_bytes() == (folder / name).read_bytes()


def test_truncated_video_gives_a_partial_marked_result(replay_model, tmp_path):
    path = tmp_path / "cut.avi"
    scene = PhantomScene(320, 240, fps=30)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for frame in range(60):
        writer.write(scene.render(frame)[0])
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = orsight("replay", str(path), "--out", str(tmp_path / "out"),
                     "--model", str(replay_model[0]), "--no-progress", timeout=300)
    assert result.returncode == 2 and "truncated" in result.stderr
    summary = json.loads((tmp_path / "out" / "cut" / "summary.json").read_text())
    assert summary["partial"] and 10 < summary["frames_analysed"] < 60
    assert "PARTIAL RESULT" in (tmp_path / "out" / "cut" / "report.html").read_text()


def test_unreadable_video_is_a_clear_error(replay_model, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    result = orsight("replay", str(junk), "--out", str(tmp_path),
                     "--model", str(replay_model[0]), timeout=120)
    assert result.returncode == 2 and "cannot read video" in result.stderr and "Traceback" not in result.stderr


def test_rerun_resumes_and_leftover_partial_is_redone(single_run, phantom_video, replay_model, tmp_path):
    folder, _, _ = single_run
    shutil.copytree(folder, tmp_path / folder.name)
    summaries, _ = _run(phantom_video, tmp_path, *replay_model)
    assert summaries[0].get("resumed")
    shutil.rmtree(tmp_path / folder.name)
    (tmp_path / (folder.name + ".partial")).mkdir()
    (tmp_path / (folder.name + ".partial") / "frames.jsonl").write_text("half")
    summaries, _ = _run(phantom_video, tmp_path, *replay_model)
    assert not summaries[0].get("resumed") and not (tmp_path / (folder.name + ".partial")).exists()
    assert (tmp_path / folder.name / "frames.jsonl").read_bytes() == (folder / "frames.jsonl").read_bytes()


def test_videos_of_the_same_name_get_folders_of_their_own(phantom_video, replay_model, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(phantom_video, tmp_path / folder / "case1.mp4")
    summaries, errors = replay_videos([str(tmp_path / "a" / "case1.mp4"), str(tmp_path / "b" / "case1.mp4")],
                                      tmp_path / "out", replay_model[0],
                                      ReplayOptions(progress=False, config=replay_model[1]))
    assert errors == {} and [s["video"] for s in summaries] == [str(tmp_path / f / "case1.mp4") for f in "ab"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-case1", "b-case1"]


def test_folders_of_videos_and_of_images(phantom_video, replay_model, tmp_path):
    videos, images = tmp_path / "archive", tmp_path / "frames"
    videos.mkdir()
    images.mkdir()
    shutil.copy(phantom_video, videos / "case1.mp4")
    shutil.copy(phantom_video, videos / "case2.mp4")
    for index in range(6):
        cv2.imwrite(str(images / f"img_{index:02d}.png"), PhantomScene(320, 240).render(index)[0])
    summaries, errors = replay_videos([str(videos), str(images)], tmp_path / "out", replay_model[0],
                                      ReplayOptions(progress=False, config=replay_model[1]))
    assert errors == {} and [s["frames_analysed"] for s in summaries] == [FRAMES, FRAMES, 6]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case1", "case2", "frames"]


def test_a_repaired_video_is_analysed_again(replay_model, tmp_path):
    path = tmp_path / "cut.avi"
    scene = PhantomScene(320, 240, fps=30)
    frames = [scene.render(frame)[0] for frame in range(30)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for image in frames:
        writer.write(image)
    writer.release()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    options = ReplayOptions(progress=False, config=replay_model[1])
    (first,), _ = replay_videos([str(path)], tmp_path / "out", replay_model[0], options)
    path.write_bytes(whole)  # the file is repaired (re-exported from the archive, say)
    (second,), errors = replay_videos([str(path)], tmp_path / "out", replay_model[0], options)
    assert first["partial"] and not second["partial"] and not second.get("resumed") and errors == {}
    assert second["frames_analysed"] == 30


def test_report_shows_its_plots_in_headless_chromium(single_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (CI installs it: apt-get install chromium)")
    folder, _, _ = single_run
    page = (folder / "report.html").read_text()
    assert '<video src="annotated.mp4"' in page and "closest approach" in page and "model sha256" in page
    assert ">None<" not in page and ">False<" not in page and ">True<" not in page  # values a person reads
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1100,1400", f"--screenshot={shot}",
                    (folder / "report.html").as_uri()], capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1400, 1100)
    def pixels(bgr):
        return int(np.all(np.abs(image.astype(int) - bgr) < 30, axis=2).sum())

    # the plots rendered, not just text: presence line (#00aaff), threshold lines (#ffd700, #e60000),
    # throughput line (#444444)
    assert pixels((255, 170, 0)) > 20 and pixels((0, 215, 255)) > 200 and pixels((0, 0, 230)) > 200
    assert pixels((68, 68, 68)) > 200


def test_a_damaged_video_is_not_called_complete(replay_model, tmp_path):
    """Bytes in the middle overwritten: the decoder conceals what it can; replay counts it and exits 2."""
    from pipeline.display.recorder import Recorder

    video = tmp_path / "damaged.mp4"
    scene = PhantomScene(320, 240, fps=30)
    with Recorder(video, 30.0, live=False) as recorder:
        for frame in range(90):
            recorder.write(scene.render(frame)[0], int(frame / 30 * 1e9))
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    summaries, errors = _run(video, tmp_path / "out", *replay_model)
    assert summaries[0]["decode_errors"] > 0 and summaries[0]["partial"]
    assert "could not be decoded cleanly" in errors[str(video)]
