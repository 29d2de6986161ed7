"""CurveZMQ: a --secure publisher gives nothing to a subscriber without an allowed key."""
import shutil
import stat
import threading
import time

import numpy as np
import pytest

from pipeline.transport.curve import make_keys
from pipeline.transport.untrusted import TransportError
from pipeline.transport.zeromq import Publisher, Receiver
from tests.helpers import orsight


def test_only_allowed_clients_receive_from_a_secure_publisher(tmp_path, free_tcp_endpoint):
    keys = make_keys(tmp_path / "keys")
    stranger = make_keys(tmp_path / "stranger")  # keys of its own, not on the allow-list
    shutil.copy(keys / "server.key", stranger / "server.key")  # it even knows the server's public key
    assert stat.S_IMODE((keys / "server.key_secret").stat().st_mode) & 0o077 == 0
    publisher = Publisher(free_tcp_endpoint, keys=keys)
    allowed, plain, unknown = (Receiver(free_tcp_endpoint, keys=keys).start(), Receiver(free_tcp_endpoint).start(),
                               Receiver(free_tcp_endpoint, keys=stranger).start())
    try:
        time.sleep(1.0)
        for frame_id in range(10):
            publisher.send_image("video", np.zeros((24, 32, 3), np.uint8), "raw-bgr8", frame_id=frame_id,
                                 t_capture_ns=time.time_ns(), fps=30.0)
            time.sleep(0.05)
        time.sleep(0.5)
        assert allowed.counts["video"] >= 8
        assert plain.counts["video"] == 0 and unknown.counts["video"] == 0
    finally:
        for receiver in (allowed, plain, unknown):
            receiver.stop()
        publisher.close()


def test_an_endpoint_other_hosts_reach_needs_secure_or_insecure():
    with pytest.raises(TransportError, match="--secure"):
        Publisher("tcp://0.0.0.0:5599")


def test_keys_command_writes_the_key_pairs(tmp_path):
    result = orsight("keys", "--out", str(tmp_path / "k"), timeout=60)
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["client.key", "client.key_secret", "clients",
                                                                  "server.key", "server.key_secret"]


def test_a_plain_display_of_a_secure_publisher_says_why_it_sees_nothing(tmp_path):
    import subprocess
    import sys

    from pipeline.transport.curve import make_keys
    from pipeline.transport.zeromq import Publisher

    keys = make_keys(tmp_path / "keys")
    endpoint = f"ipc://{tmp_path}/live.sock"
    publisher = Publisher(endpoint, keys=keys)
    display = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "display", "--connect", endpoint, "--headless",
                                "--frames", "1"], stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(display.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60  # a busy machine: the display may take a while to start
        while time.monotonic() < deadline and not any("asks for encryption" in line for line in lines):
            time.sleep(0.2)
        time.sleep(2)  # ZeroMQ retries the handshake: it is said once all the same
    finally:
        display.terminate()
        display.wait(timeout=30)
        reader.join(timeout=10)
        publisher.close()
    stderr = "".join(lines)
    assert stderr.count("asks for encryption: connect with --secure KEYS") == 1 and "Traceback" not in stderr
