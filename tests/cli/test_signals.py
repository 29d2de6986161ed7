"""Signals end every command cleanly; what orsight writes is this user's only (patient data)."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from pipeline.transport.untrusted import SHARED_DIR
from tests.helpers import frame_times, orsight

STARTED: list[subprocess.Popen] = []


def _interruptible():
    """As from a terminal: a shell starts background jobs with SIGINT ignored, which Python (and orsight) keeps."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args, cwd):
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_run_and_display_stop_cleanly_on_a_signal(tmp_path, signum):
    endpoint = f"ipc://{tmp_path}/live.sock"
    run = _start("run", "--publish", endpoint, "--realtime", "--size", "320x240", "--summary", "run.json",
                 cwd=tmp_path)
    display = _start("display", "--connect", endpoint, "--headless", "--record", "shown.mp4", "--summary",
                     "display.json", cwd=tmp_path)
    _wait_for(tmp_path / "shown.partial.mp4")
    time.sleep(2)
    display.send_signal(signum)
    assert display.wait(timeout=30) == 0, display.stderr.read()
    run.send_signal(signum)
    assert run.wait(timeout=30) == 0, run.stderr.read()
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["state"] == "stopped" and summary["frames_analysed"] > 0
    assert not list(SHARED_DIR.glob(f"orsight-*-{run.pid}-*"))  # the ring went with it
    assert len(frame_times(tmp_path / "shown.mp4")) > 10  # finished, under its final name
    for name in ("run.json", "display.json", "shown.mp4"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_a_second_publisher_cannot_take_an_endpoint_in_use(tmp_path):
    endpoint = f"ipc://{tmp_path}/live.sock"
    first = _start("run", "--publish", endpoint, "--realtime", cwd=tmp_path)
    try:
        _wait_for(tmp_path / "live.sock")
        second = orsight("run", "--publish", endpoint, "--frames", "1", timeout=120)
        assert second.returncode == 2 and "another publisher is using it" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)


def test_a_display_killed_outright_keeps_what_it_recorded(tmp_path):
    import av

    endpoint = f"ipc://{tmp_path}/live.sock"
    run = _start("run", "--publish", endpoint, "--realtime", "--size", "320x240", cwd=tmp_path)
    display = _start("display", "--connect", endpoint, "--headless", "--record", "shown.mp4", cwd=tmp_path)
    try:
        _wait_for(tmp_path / "shown.partial.mp4")
        time.sleep(4)
        display.kill()  # SIGKILL: no clean-up at all
        display.wait(timeout=10)
    finally:
        run.terminate()
        run.wait(timeout=30)
    frames = frame_times(tmp_path / "shown.partial.mp4")  # the fragments up to the last second
    with av.open(str(tmp_path / "shown.partial.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert len(frames) > 10 and frames[-1] >= 1.0


def test_the_display_stays_up_through_a_publisher_restart(tmp_path):
    """The publisher is stopped cleanly (an update mid-operation) and started again: the display shows NO
    SIGNAL in between and the video again after; only a signal to the display itself ends it."""
    endpoint = f"ipc://{tmp_path}/live.sock"
    display = _start("display", "--connect", endpoint, "--headless", "--summary", "display.json", cwd=tmp_path)
    first = _start("run", "--publish", endpoint, "--realtime", "--frames", "45", cwd=tmp_path)
    assert first.wait(timeout=120) == 0
    time.sleep(2.0)  # more than the NO SIGNAL limit (0.5 s) after the publisher's final status
    assert display.poll() is None  # still up
    second = _start("run", "--publish", endpoint, "--realtime", "--frames", "45", cwd=tmp_path)
    assert second.wait(timeout=120) == 0
    time.sleep(1.0)
    display.send_signal(signal.SIGTERM)
    assert display.wait(timeout=30) == 0, display.stderr.read()
    summary = json.loads((tmp_path / "display.json").read_text())
    assert summary["no_signal_screens"] > 0 and summary["frames_shown"] > 45  # video from both runs


def _small_disk():
    """The files this process writes may not pass 300 kB (a full disk, as the kernel tells a writer: EFBIG)."""
    import resource

    _interruptible()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_a_recording_that_cannot_be_written_never_takes_the_picture_down(tmp_path):
    endpoint = f"ipc://{tmp_path}/live.sock"
    display = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "display", "--connect", endpoint, "--headless",
                                "--record", "shown.mp4", "--summary", "display.json"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_small_disk)
    STARTED.append(display)
    run = _start("run", "--publish", endpoint, "--realtime", "--frames", "150", "--size", "1280x720", cwd=tmp_path)
    assert run.wait(timeout=120) == 0
    time.sleep(1.0)
    assert display.poll() is None  # still showing
    display.send_signal(signal.SIGTERM)
    assert display.wait(timeout=30) == 0
    stderr = display.stderr.read()
    assert "recording stopped" in stderr and "Traceback" not in stderr
    summary = json.loads((tmp_path / "display.json").read_text())
    assert summary["frames_shown"] > 100 and summary["recording"] is None  # shown on; no file looks complete
    assert not (tmp_path / "shown.mp4").exists()


def test_replay_on_a_full_disk_says_so_in_one_line(tmp_path):
    from pipeline.sources.phantom import PhantomScene

    video = tmp_path / "case.avi"
    import cv2

    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for frame in range(60):
        writer.write(PhantomScene(640, 360).render(frame)[0])
    writer.release()
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", str(video), "--out", str(tmp_path / "out"),
                             "--no-progress", "--privacy", "off"], capture_output=True, text=True, timeout=300,
                            preexec_fn=_small_disk)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot write its results" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "out" / "case").exists()  # never looks complete
