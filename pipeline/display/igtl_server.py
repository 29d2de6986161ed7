"""The OpenIGTLink server of ``orsight bridge igtl``: several clients at once, none able to hold up another.

Each client has a thread and an outbox of its own: the newest message of each picture device
(a slow client skips frames, never lags: no queue of stale frames) and every alert (up to
``ALERTS_KEPT``). What a client sends (Slicer's status and capability messages) is read and
dropped, within bounds: a declared body over ``MAX_BODY`` bytes, or a message that takes more
than ``READ_TIMEOUT_S`` to arrive (a client trickling a byte every few seconds), ends that client;
a client that does not take what it is sent within ``SEND_TIMEOUT_S`` is let go. Messages are
packed by pyigtl; this module only moves bytes.

    server = IgtlServer(18944)
    server.send(pyigtl.ImageMessage(...), newest_only=True)   # pictures: newest wins per client
    server.stop()
"""
from __future__ import annotations

import collections
import select
import socketserver
import sys
import threading
import time

HEADER = 58  # OpenIGTLink v1/v2 header: version, type, device name, timestamp, body size (at 42), CRC
MAX_BODY = 1 << 20  # what a client may declare it sends (Slicer's own messages are small)
READ_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 2.0
ALERTS_KEPT = 100


class Outbox:
    """What is due to one client: the newest picture per device, every other message in order."""

    def __init__(self):
        self.ready = threading.Condition()
        self.newest: dict[str, bytes] = {}
        self.queued: collections.deque[bytes] = collections.deque(maxlen=ALERTS_KEPT)

    def put(self, device: str, packed: bytes, newest_only: bool) -> None:
        with self.ready:
            if newest_only:
                self.newest[device] = packed
            else:
                self.queued.append(packed)
            self.ready.notify()

    def take(self, timeout: float) -> list[bytes]:
        with self.ready:
            if not self.newest and not self.queued:
                self.ready.wait(timeout)
            due = list(self.queued) + list(self.newest.values())
            self.queued.clear()
            self.newest.clear()
            return due


class _Client(socketserver.BaseRequestHandler):
    """One client's loop: send what is due, read and drop what it sends (bounded)."""

    def handle(self) -> None:
        outbox, incoming, started = Outbox(), b"", None
        self.server.join(outbox)
        self.request.settimeout(SEND_TIMEOUT_S)
        try:
            while not self.server.stopping.is_set():
                for packed in outbox.take(timeout=0.05):
                    self.request.sendall(packed)
                while select.select([self.request], [], [], 0)[0]:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return  # the client closed: nothing to say
                    started = started or time.monotonic()
                    incoming = _drop_whole_messages(incoming + chunk)
                    started = None if not incoming else started
                if started is not None and time.monotonic() - started > READ_TIMEOUT_S:
                    raise TimeoutError("a message took too long to arrive")
        except (OSError, ValueError) as error:  # left, cut, too slow to read, or sent garbage
            host, port = self.client_address[:2]
            print(f"orsight: OpenIGTLink client {host}:{port} let go ({error.__class__.__name__}: {error})",
                  file=sys.stderr)
        finally:
            self.server.leave(outbox)


def _drop_whole_messages(data: bytes) -> bytes:
    """``data`` without the complete messages at its start; ValueError for a body larger than allowed."""
    while len(data) >= HEADER:
        body = int.from_bytes(data[42:50], "big")
        if body > MAX_BODY:
            raise ValueError(f"a message of {body} bytes declared (at most {MAX_BODY})")
        if len(data) < HEADER + body:
            break
        data = data[HEADER + body:]
    return data


class IgtlServer(socketserver.ThreadingTCPServer):
    """OpenIGTLink on loopback ``port``: several clients, each with its own outbox and thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), _Client)
        self.stopping = threading.Event()
        self.outboxes: set[Outbox] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="orsight-igtl",
                         daemon=True).start()

    def join(self, outbox: Outbox) -> None:
        with self.lock:
            self.outboxes.add(outbox)

    def leave(self, outbox: Outbox) -> None:
        with self.lock:
            self.outboxes.discard(outbox)

    @property
    def clients(self) -> int:
        with self.lock:
            return len(self.outboxes)

    def send(self, message, newest_only: bool) -> None:
        """Pack ``message`` once and put it in every client's outbox."""
        packed = message.pack()
        with self.lock:
            outboxes = list(self.outboxes)
        for outbox in outboxes:
            outbox.put(message.device_name, packed, newest_only)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

