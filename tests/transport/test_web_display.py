"""The browser display, seen in headless Chromium: the picture moves, a raised alert shows."""
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from pipeline.display.web import serve_web
from pipeline.transport.zeromq import Publisher

ALERT = {"alert_id": 1, "rule": "vessel_contact", "state": "raised", "priority": "high", "frame_id": 0,
         "t_capture_ns": 0, "t_start_ns": 0, "t_end_ns": None, "distance_px": 2.0, "distance_mm": None,
         "location": [40, 40], "message": "instrument touching vessel"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _publish(publisher: Publisher, stop: threading.Event) -> None:
    """A moving picture (a bright square sliding right) with a mask and a raised high alert."""
    publisher.wait_for_subscriber(timeout=10)
    frame_id = 0
    while not stop.is_set():
        image = np.full((240, 320, 3), 60, np.uint8)
        x = (frame_id * 4) % 280
        image[100:140, x:x + 40] = 250
        now = time.time_ns()
        publisher.send_image("video", image, "raw-bgr8", frame_id=frame_id, t_capture_ns=now, fps=30.0)
        class_map = np.zeros((240, 320), np.uint8)
        class_map[100:140, x:x + 40] = 1
        publisher.send_image("mask", class_map, "zlib", frame_id=frame_id, t_capture_ns=now, timings_ms={},
                             classes=[{"value": 1, "name": "instrument", "role": "instrument"}],
                             proximity={"distance_px": None, "distance_mm": None, "mm_per_px": None,
                                        "instrument_point": None, "vessel_point": None},
                             active_alerts=[{**ALERT, "frame_id": frame_id, "t_capture_ns": now}])
        frame_id += 1
        time.sleep(1 / 30)


def _screenshot(chromium: str, url: str, path) -> np.ndarray:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=640,560", f"--screenshot={path}",
                    "--virtual-time-budget=1500", url], capture_output=True, timeout=120)
    return cv2.imread(str(path))


def test_page_snapshot_and_state_in_a_real_browser(free_tcp_endpoint, tmp_path):
    port, stop = _free_port(), threading.Event()
    publisher = Publisher(free_tcp_endpoint)
    summary = {}
    server = threading.Thread(target=lambda: summary.update(serve_web(free_tcp_endpoint, port=port, stop=stop)),
                              daemon=True)
    server.start()
    sender = threading.Thread(target=_publish, args=(publisher, stop), daemon=True)
    sender.start()
    try:
        time.sleep(2)
        base = f"http://127.0.0.1:{port}"
        state = json.loads(urllib.request.urlopen(f"{base}/state.json", timeout=5).read())
        assert state["signal"] == "live" and state["alerts"][0]["priority"] == "high"
        snapshot = cv2.imdecode(np.frombuffer(urllib.request.urlopen(f"{base}/snapshot.jpg", timeout=5).read(),
                                              np.uint8), cv2.IMREAD_COLOR)
        assert snapshot.shape == (240, 320, 3)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            pytest.skip("Chromium is not installed (CI installs it: apt-get install chromium)")
        first = _screenshot(chromium, base + "/", tmp_path / "a.png")
        time.sleep(1.0)
        second = _screenshot(chromium, base + "/", tmp_path / "b.png")
        assert first is not None and second is not None
        assert np.abs(first.astype(int) - second.astype(int)).mean() > 0.05  # the picture moved
        red = np.all(np.abs(second.astype(int) - (0, 0, 230)) < 40, axis=2).sum()
        assert red > 500  # the high alert: the banner in the picture and the badge on the page
    finally:
        stop.set()
        server.join(timeout=10)
        publisher.close()
    assert summary["frames_shown"] > 30
