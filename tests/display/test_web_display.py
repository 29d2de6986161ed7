"""The browser display, seen in headless Chromium and Firefox: the picture moves, a raised alert shows."""
import contextlib
import json
import shutil
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
from tests.helpers import free_port, publish_synthetic

BROWSERS = {"chromium": ("chromium", "chromium-browser"), "firefox": ("firefox-esr", "firefox")}


def _screenshot(browser: str, executable: str, url: str, path) -> np.ndarray:
    profile = tempfile.mkdtemp()
    if browser == "chromium":
        command = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--window-size=640,560", f"--screenshot={path}",
                   "--virtual-time-budget=1500", url]
    else:
        command = [executable, "--headless", "--no-remote", "--profile", profile, "--window-size=640,560",
                   "--screenshot", str(path), url]
    subprocess.run(command, capture_output=True, timeout=120)
    return cv2.imread(str(path))


@pytest.mark.parametrize("browser", list(BROWSERS))
def test_page_snapshot_and_state_in_a_real_browser(free_tcp_endpoint, tmp_path, browser):
    port, stop = free_port(), threading.Event()
    publisher = Publisher(free_tcp_endpoint)
    summary, addresses = {}, []
    server = threading.Thread(target=lambda: summary.update(serve_web(free_tcp_endpoint, port=port, stop=stop,
                                                                      ready=addresses.append)), daemon=True)
    server.start()
    sender = threading.Thread(target=publish_synthetic, args=(publisher, stop), daemon=True)
    sender.start()
    try:
        time.sleep(2)
        page = addresses[0]  # http://127.0.0.1:PORT/?token=...
        base, token = page.split("/?")
        state = json.loads(urllib.request.urlopen(f"{base}/state.json?{token}", timeout=5).read())
        assert state["signal"] == "live" and state["alerts"][0]["priority"] == "high"
        snapshot = cv2.imdecode(np.frombuffer(urllib.request.urlopen(f"{base}/snapshot.jpg?{token}", timeout=5).read(),
                                              np.uint8), cv2.IMREAD_COLOR)
        assert snapshot.shape == (240, 320, 3)
        executable = next(filter(None, map(shutil.which, BROWSERS[browser])), None)
        if executable is None:
            pytest.skip(f"{browser} is not installed (CI installs it: apt-get install chromium firefox-esr)")
        first = _screenshot(browser, executable, page, tmp_path / "a.png")
        time.sleep(1.0)
        second = _screenshot(browser, executable, page, tmp_path / "b.png")
        assert first is not None and second is not None
        assert np.abs(first.astype(int) - second.astype(int)).mean() > 0.05  # the picture moved
        red = np.all(np.abs(second.astype(int) - (0, 0, 230)) < 40, axis=2).sum()
        assert red > 500  # the high alert: the banner in the picture and the badge on the page
    finally:
        stop.set()
        server.join(timeout=10)
        publisher.close()
    assert summary["frames_shown"] > 30


@contextlib.contextmanager
def _served(endpoint: str):
    """The web display on a free port until the block ends; yields (base address, ``token=...``, port)."""
    port, stop, addresses = free_port(), threading.Event(), []
    server = threading.Thread(target=lambda: serve_web(endpoint, port=port, stop=stop, ready=addresses.append),
                              daemon=True)
    server.start()
    try:
        for _ in range(50):
            if addresses:
                break
            time.sleep(0.1)
        base, token = addresses[0].split("/?")
        yield base, token, port
    finally:
        stop.set()
        server.join(timeout=10)


def test_without_the_token_or_under_another_name_nothing_is_served(free_tcp_endpoint):
    """Another local user (no token), a page of another site that rebinds its name to 127.0.0.1 (wrong Host):
    403, no picture, no state."""
    import urllib.error

    with _served(free_tcp_endpoint) as (base, token, _):
        for path, host in (("/snapshot.jpg", None), ("/state.json", None), (f"/state.json?{token}", "evil.example:80"),
                           ("/?token=wrong", None)):
            request = urllib.request.Request(base + path, headers={"Host": host} if host else {})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403
        opened = urllib.request.urlopen(f"{base}/?{token}", timeout=5)
        cookie = opened.headers["Set-Cookie"]
        assert opened.status == 200 and "HttpOnly" in cookie
        again = urllib.request.Request(base + "/state.json", headers={"Cookie": cookie.split(";")[0]})
        assert urllib.request.urlopen(again, timeout=5).status == 200  # the page's own requests: by the cookie


def test_idle_connections_are_dropped_and_capped(free_tcp_endpoint):
    import socket

    from pipeline.display import web

    original = web.REQUEST_TIMEOUT_S
    web.REQUEST_TIMEOUT_S = 1.0
    idle = []
    try:
        with _served(free_tcp_endpoint) as (base, token, port):
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(web.MAX_CONNECTIONS + 10)]
            time.sleep(2.5)  # past the idle limit: the server has let go of them
            assert urllib.request.urlopen(f"{base}/state.json?{token}", timeout=5).status == 200
    finally:
        web.REQUEST_TIMEOUT_S = original
        for connection in idle:
            connection.close()

def test_text_from_the_wire_is_never_read_as_html():
    """An alert message is text a publisher sent: the page puts it in with textContent, never innerHTML (a
    message like <img src=x onerror=...> would otherwise run in every browser watching)."""
    from pipeline.display.web import PAGE

    assert "innerHTML" not in PAGE and "outerHTML" not in PAGE and "insertAdjacentHTML" not in PAGE
    assert "badge.textContent" in PAGE
