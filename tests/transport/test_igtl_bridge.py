"""The 3D Slicer bridge, received with pyigtl's own client: video, labels, alerts and the closest pair."""
import threading
import time

import pytest

from pipeline.transport.zeromq import Publisher
from tests.helpers import ALERT, free_port, publish_synthetic

pyigtl = pytest.importorskip("pyigtl")


def test_a_slicer_client_receives_image_labels_string_and_points(free_tcp_endpoint):
    from pipeline.display.igtl import serve_igtl

    port, stop = free_port(), threading.Event()
    publisher = Publisher(free_tcp_endpoint)
    summary = {}
    bridge = threading.Thread(target=lambda: summary.update(serve_igtl(free_tcp_endpoint, port, stop=stop)),
                              daemon=True)
    bridge.start()
    sender = threading.Thread(target=publish_synthetic, args=(publisher, stop), daemon=True)
    sender.start()
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
    try:
        video = client.wait_for_message("orsight_video", timeout=10)
        labels = client.wait_for_message("orsight_labels", timeout=10)
        alert = client.wait_for_message("orsight_alert", timeout=10)
        closest = client.wait_for_message("orsight_closest", timeout=10)
    finally:
        stop.set()
        client.stop()
        bridge.join(timeout=10)
        publisher.close()
    assert video.image.shape == (1, 240, 320, 3) and labels.image.shape == (1, 240, 320)
    assert set(labels.image.ravel().tolist()) == {0, 1}
    assert alert.string.startswith("HIGH vessel_contact raised")
    assert len(closest.positions) == 2 and closest.names == ["instrument", "vessel"]
    assert summary["sent"]["orsight_video"] >= 1 and summary["messages_rejected"] == {}


def test_every_alert_transition_of_a_burst_is_sent(free_tcp_endpoint):
    """Raised, updated and cleared within a millisecond: three STRING messages go out (alerts are not pictures,
    the newest does not stand for the rest); pyigtl's client keeps the newest per device: the cleared one."""
    from pipeline.display.igtl import serve_igtl

    port, stop, summary = free_port(), threading.Event(), {}
    publisher = Publisher(free_tcp_endpoint)
    bridge = threading.Thread(target=lambda: summary.update(serve_igtl(free_tcp_endpoint, port, stop=stop)),
                              daemon=True)
    bridge.start()
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
    try:
        assert publisher.wait_for_subscriber(timeout=10)
        time.sleep(0.5)  # the client is connected to the bridge
        for state in ("raised", "updated", "cleared"):
            publisher.send("alert", {**ALERT, "state": state, "t_capture_ns": time.time_ns(), "timings_ms": {}})
        time.sleep(1.0)
        last = client.wait_for_message("orsight_alert", timeout=5)
    finally:
        stop.set()
        client.stop()
        bridge.join(timeout=10)
        publisher.close()
    assert summary["sent"]["orsight_alert"] == 3
    assert last.string.startswith("HIGH vessel_contact cleared")
