"""The 3D Slicer bridge, received with pyigtl's own client: video, labels, alerts and the closest pair."""
import contextlib
import threading
import time

import numpy as np
import pytest

from pipeline.transport.zeromq import Publisher
from tests.helpers import ALERT, free_port, publish_synthetic

pyigtl = pytest.importorskip("pyigtl")


@contextlib.contextmanager
def _bridge(endpoint: str):
    """A publisher on ``endpoint``, the bridge subscribed to it and pyigtl's client connected to the bridge;
    yields (publisher, client, stop, summary): the bridge's summary is filled once it has stopped."""
    from pipeline.display.igtl import serve_igtl

    port, stop, summary = free_port(), threading.Event(), {}
    publisher = Publisher(endpoint)
    bridge = threading.Thread(target=lambda: summary.update(serve_igtl(endpoint, port, stop=stop)), daemon=True)
    bridge.start()
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
    try:
        yield publisher, client, stop, summary
    finally:
        stop.set()
        client.stop()
        bridge.join(timeout=10)
        publisher.close()


def test_a_slicer_client_receives_image_labels_string_and_points(free_tcp_endpoint):
    with _bridge(free_tcp_endpoint) as (publisher, client, stop, summary):
        threading.Thread(target=publish_synthetic, args=(publisher, stop), daemon=True).start()
        video = client.wait_for_message("orsight_video", timeout=10)
        labels = client.wait_for_message("orsight_labels", timeout=10)
        alert = client.wait_for_message("orsight_alert", timeout=10)
        closest = client.wait_for_message("orsight_closest", timeout=10)
    assert video.image.shape == (1, 240, 320, 3) and labels.image.shape == (1, 240, 320)
    assert set(labels.image.ravel().tolist()) == {0, 1, 255}  # 255: the "possible vessel" region
    assert (labels.image[0, 25:35, 255:295] == 255).all()
    assert alert.string.startswith("HIGH vessel_contact raised")
    assert len(closest.positions) == 2 and closest.names == ["instrument", "vessel"]
    assert summary["sent"]["orsight_video"] >= 1 and summary["messages_rejected"] == {}


def test_every_alert_transition_of_a_burst_is_sent(free_tcp_endpoint):
    """Raised, updated and cleared within a millisecond: three STRING messages go out (alerts are not pictures,
    the newest does not stand for the rest); pyigtl's client keeps the newest per device: the cleared one."""
    with _bridge(free_tcp_endpoint) as (publisher, client, stop, summary):
        assert publisher.wait_for_subscriber(timeout=10)
        time.sleep(0.5)  # the client is connected to the bridge
        for state in ("raised", "updated", "cleared"):
            publisher.send("alert", {**ALERT, "state": state, "t_capture_ns": time.time_ns(), "timings_ms": {}})
        time.sleep(1.0)
        last = client.wait_for_message("orsight_alert", timeout=5)
    assert summary["sent"]["orsight_alert"] == 3
    assert last.string.startswith("HIGH vessel_contact cleared")


def test_a_client_that_leaves_is_one_line_not_a_traceback(free_tcp_endpoint):
    import subprocess
    import sys

    port, stop = free_port(), threading.Event()
    publisher = Publisher(free_tcp_endpoint)
    bridge = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "bridge", "igtl", "--connect", free_tcp_endpoint,
                               "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        threading.Thread(target=publish_synthetic, args=(publisher, stop), daemon=True).start()
        for _ in range(100):  # the bridge's port opens once it has started
            client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
            if client.wait_for_message("orsight_video", timeout=0.2) is not None:
                break
            client.stop()
        client.stop()  # the client leaves while video keeps coming
        time.sleep(2.0)
        assert bridge.poll() is None  # the bridge serves on
    finally:
        stop.set()
        bridge.terminate()
        _, stderr = bridge.communicate(timeout=20)
        publisher.close()
    assert "Traceback" not in stderr


def test_the_image_is_upright_in_slicer_and_scaled_when_the_run_has_a_scale():
    """Slicer's axial view puts the patient's left on the right of the screen and anterior at the top:
    column i must run to the left (-R) and row j to posterior (-A), as PLUS and Slicer's own video do."""
    from pipeline.display.igtl import ijk_to_ras

    unscaled, scaled = ijk_to_ras(None), ijk_to_ras(0.1)
    assert np.array_equal(unscaled @ [1, 0, 0, 1], [-1, 0, 0, 1]) and np.array_equal(unscaled @ [0, 1, 0, 1],
                                                                                      [0, -1, 0, 1])
    assert np.allclose(scaled @ [10, 20, 0, 1], [-1.0, -2.0, 0, 1])  # pixels at 0.1 mm


def test_several_clients_and_a_trickling_one_that_cannot_hold_them_up(free_tcp_endpoint):
    """Two Slicers watch at once while a third client sends one byte every second: both keep getting fresh
    video; a client that declares a huge body is let go."""
    import socket

    with _bridge(free_tcp_endpoint) as (publisher, client, stop, summary):
        threading.Thread(target=publish_synthetic, args=(publisher, stop), daemon=True).start()
        assert client.wait_for_message("orsight_video", timeout=10) is not None
        port = client.port
        trickler = socket.create_connection(("127.0.0.1", port))
        trickler.sendall(b"\x00")  # and it reads nothing of what it is sent
        second = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
        try:
            for _ in range(3):
                time.sleep(1.0)
                with contextlib.suppress(OSError):  # it reads nothing: the bridge may let it go at any time
                    trickler.sendall(b"\x00")  # never a whole message
                fresh = second.wait_for_message("orsight_video", timeout=5)
                assert fresh is not None and time.time() - fresh.timestamp < 1.0  # newest, not a stale queue
            huge = socket.create_connection(("127.0.0.1", port))
            header = bytearray(58)
            header[42:50] = (1 << 40).to_bytes(8, "big")  # a terabyte announced
            huge.sendall(bytes(header))
            huge.settimeout(5)
            deadline, ended = time.monotonic() + 10, False
            while not ended and time.monotonic() < deadline:  # pictures may come first; then the bridge hangs up
                try:
                    ended = not huge.recv(1 << 16)
                except OSError:
                    ended = True
            assert ended
        finally:
            second.stop()
            trickler.close()
