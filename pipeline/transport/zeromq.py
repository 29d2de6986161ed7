"""ZeroMQ transport: multipart ``[topic, JSON header, payload...]``, specified in docs/protocol.md.

    publisher = Publisher("tcp://127.0.0.1:5555")
    publisher.send_image("video", image, frame_id=1, t_capture_ns=t, encoding="raw-bgr8")
    receiver = Receiver("tcp://127.0.0.1:5555"); receiver.start()
    message = receiver.wait_newer("video", previous=None, timeout=1.0)
    image = decode_image(message)                       # pipeline.transport.untrusted
"""
from __future__ import annotations

import collections
import json
import mmap
import os
import secrets
import socket
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline.core.latency import Latencies
from pipeline.core.signals import block_stop_signals
from pipeline.transport.curve import secure_publisher, secure_subscriber
from pipeline.transport.endpoint import DEFAULT_ENDPOINT, private_socket_folder
from pipeline.transport.untrusted import (
    RING_PREFIX,
    SHARED_DIR,
    SHARED_ENCODING,
    BadMessage,
    Message,
    TransportError,
    parse,
    validator,
)

SCHEMA_VERSION = 1
TOPICS = ("video", "overlay", "mask", "alert", "status")
ENCODINGS = ("raw-bgr8", "jpeg", "png", SHARED_ENCODING)  # for pictures
MASK_ENCODING = "zlib"  # class-index maps to other hosts: zlib of the raw bytes (4x faster than PNG at 1080p)



QUEUED_MAX = 1024  # messages of a queued topic kept for Receiver.take (alerts: a few per second at most)
SWITCH_INTERVAL_S = 0.0002  # how long a thread that stamps or sends frames waits for the interpreter at most


LOCAL_PREFIXES = ("ipc://", "inproc://", "tcp://127.", "tcp://localhost:", "tcp://[::1]:")  # this host only


def _shared_memory_reaches(endpoint: str) -> bool:
    """Whether every subscriber of ``endpoint`` must be on this host (ipc, loopback) and can read /dev/shm."""
    return endpoint.startswith(LOCAL_PREFIXES) and SHARED_DIR.is_dir()


def default_video_encoding(endpoint: str) -> str:
    """``shm-bgr8`` where every subscriber must be on this host (ipc, loopback), ``raw-bgr8`` elsewhere."""
    return SHARED_ENCODING if _shared_memory_reaches(endpoint) else "raw-bgr8"


def default_mask_encoding(endpoint: str) -> str:
    """``shm-bgr8`` on this host (no compression on the AI's CPU: 2.5 ms a 1080p map), ``zlib`` elsewhere."""
    return SHARED_ENCODING if _shared_memory_reaches(endpoint) else MASK_ENCODING


def encode_image(image: np.ndarray, encoding: str, jpeg_quality: int = 85) -> bytes | memoryview:
    """Payload bytes of ``image`` (BGR or single-channel uint8) in ``encoding``."""
    if encoding == "raw-bgr8":
        return memoryview(np.ascontiguousarray(image)).cast("B")
    if encoding == "zlib":
        return zlib.compress(np.ascontiguousarray(image), 1)
    if encoding == "jpeg":
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    elif encoding == "png":
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise TransportError(f"unknown encoding {encoding!r} (choose from {', '.join(ENCODINGS)})")
    if not ok:
        raise TransportError(f"could not encode image as {encoding}")
    return data.tobytes()


class SharedFrameRing:
    """Writer side of ``shm-bgr8``: a file in /dev/shm holding ``SLOTS`` frames of one shape.

    Each slot is an 8-byte little-endian generation counter followed by the frame's bytes.
    The counter is odd while the slot is being written and even once it is complete (a
    seqlock): a reader copies the frame and keeps it only if the counter still holds the
    generation its message announced. Frames are written round-robin, so a reader has
    ``SLOTS - 1`` frame periods to take its copy.
    """

    SLOTS = 8

    def __init__(self, stream: str, shape: tuple[int, ...]):
        self.shape, self.frame_bytes = shape, int(np.prod(shape))
        self.stride = -(-(8 + self.frame_bytes) // mmap.PAGESIZE) * mmap.PAGESIZE
        # Never the same name twice, even for a restarted publisher with the same pid (containers):
        # a reader keeps old rings mapped by name and would show a dead ring's frames.
        self.path = SHARED_DIR / f"{RING_PREFIX}{stream}-{os.getpid()}-{secrets.token_hex(6)}"
        size = self.stride * self.SLOTS
        # 0600: live patient video is for this user's processes only
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "wb+") as file:
            try:  # reserve the pages now: a full /dev/shm (64 MB in many containers) fails here, not as SIGBUS later
                os.posix_fallocate(file.fileno(), 0, size)
            except OSError as error:
                self.path.unlink(missing_ok=True)
                raise TransportError(f"no room for {size >> 20} MB of frames in {SHARED_DIR}: {error.strerror}") \
                    from None
            self.memory = mmap.mmap(file.fileno(), size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        self.slot, self.generation = 0, 0

    def write(self, image: np.ndarray) -> dict:
        """Copy ``image`` into the next slot; the header fields that locate it."""
        offset = self.slot * self.stride
        self.slot = (self.slot + 1) % self.SLOTS
        self.generation += 2
        counter = np.ndarray((), "<u8", self.memory, offset)
        counter[...] = self.generation - 1
        np.ndarray(self.shape, np.uint8, self.memory, offset + 8)[...] = image
        counter[...] = self.generation
        return {"path": str(self.path), "offset": offset + 8, "generation": self.generation}

    def close(self) -> None:
        self.memory.close()
        self.path.unlink(missing_ok=True)


def _remove_orphaned_rings() -> None:
    """Delete rings left in /dev/shm by orsight publishers that died without closing."""
    for path in SHARED_DIR.glob(f"{RING_PREFIX}*-*-*") if SHARED_DIR.is_dir() else ():
        pid = path.name.split("-")[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)


def _ipc_in_use(endpoint: str) -> bool:
    """Whether a live process listens on this ``ipc://`` path (a leftover file from a dead one does not count)."""
    path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None
    if not path or not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Publisher:
    """Binds a PUB endpoint and sends versioned messages; safe to call from several threads.

    Large payloads go out without a copy; the high-water mark drops messages for a slow
    subscriber instead of letting memory grow. :meth:`wants` tells whether anyone subscribes to
    a topic, so that a picture nobody watches is neither drawn nor encoded.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, stream: str = "orsight", high_water_mark: int = 8,
                 keys: str | Path | None = None, insecure: bool = False):
        """``keys``: a folder of ``orsight keys`` (CurveZMQ, allowed clients only); an endpoint other
        hosts can reach needs it, or ``insecure`` (which warns)."""
        self.endpoint, self.stream = endpoint, stream
        if endpoint.startswith("ipc://"):
            private_socket_folder(Path(endpoint[len("ipc://"):]).parent)
        if _ipc_in_use(endpoint):  # binding would silently take the endpoint over from a running publisher
            raise TransportError(f"cannot publish on {endpoint}: another publisher is using it")
        if keys is None and not endpoint.startswith(LOCAL_PREFIXES):
            if not insecure:
                raise TransportError(f"{endpoint} can be reached from other hosts: publish with --secure KEYS "
                                     "(orsight keys), or --insecure to send patient video unencrypted")
            print(f"orsight: warning: publishing unencrypted to any host that reaches {endpoint}", file=sys.stderr)
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.XPUB)  # a PUB that also reports subscriptions
        if keys is not None:
            secure_publisher(self.socket, keys)
        self.socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self.socket.setsockopt(zmq.SNDBUF, 4 << 20)  # a raw 1080p frame in 2 kernel writes, not 30 (halves its p99)
        self.socket.setsockopt(zmq.LINGER, 200)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.socket.close()
            raise TransportError(f"cannot publish on {endpoint}: {error.strerror}") from None
        self.lock = threading.Lock()
        self.subscriptions: set[bytes] = set()  # topic prefixes some subscriber asked for (XPUB: new ones, last leave)
        self.seq = {topic: 0 for topic in TOPICS}
        self.rings: dict[tuple[str, tuple[int, ...]], SharedFrameRing | None] = {}  # None: no room in /dev/shm

    def wait_for_subscriber(self, timeout: float = 5.0) -> bool:
        """Block until some subscriber has subscribed (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while not self.subscriptions and (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(int(left * 1000), zmq.POLLIN):
                with self.lock:
                    self._take_subscriptions()
        return bool(self.subscriptions)

    def wants(self, topic: str) -> bool:
        """Whether a subscriber subscribes to ``topic`` now (ZeroMQ topics match by prefix)."""
        with self.lock:
            self._take_subscriptions()
            return any(topic.encode().startswith(prefix) for prefix in self.subscriptions)

    def _take_subscriptions(self) -> None:
        """Apply the (un)subscriptions waiting on the socket (byte 1 subscribe, 0 leave; then the prefix)."""
        while True:
            try:
                event = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                self.subscriptions.add(event[1:])
            elif event[:1] == b"\x00":
                self.subscriptions.discard(event[1:])

    def send(self, topic: str, fields: dict, payloads: tuple = ()) -> dict:
        """Send one message; the header gets schema, stream, per-topic seq and publish time."""
        with self.lock:
            header = {"schema_version": SCHEMA_VERSION, "topic": topic, "stream": self.stream,
                      "seq": self.seq[topic], **fields, "t_publish_ns": time.time_ns()}
            self.seq[topic] += 1
            frames = [topic.encode(), json.dumps(header, separators=(",", ":")).encode(), *payloads]
            self.socket.send_multipart(frames, copy=False)
        return header

    def send_image(self, topic: str, image: np.ndarray, encoding: str, jpeg_quality: int = 85, **fields) -> dict:
        """Send an image message; shape, dtype and encoding go into the header."""
        ring = self.ring(topic, image.shape) if encoding == SHARED_ENCODING else None
        if ring is not None:
            fields["shm"], payload = ring.write(image), b""
        else:  # shm-bgr8 without a ring goes through the socket
            encoding = "raw-bgr8" if encoding == SHARED_ENCODING else encoding
            payload = encode_image(image, encoding, jpeg_quality)
        return self.send(topic, {**fields, "shape": list(image.shape), "dtype": "uint8", "encoding": encoding},
                         (payload,))

    def ring(self, topic: str, shape: tuple[int, ...]) -> SharedFrameRing | None:
        """The ring for ``topic`` frames of ``shape`` (one per topic and shape; one thread per topic),
        or None, said once on stderr, when /dev/shm has no room for it. Made on first use; a sender
        that knows its frames' shape calls this first, so its first frame does not wait for it."""
        key = (topic, shape)
        if key not in self.rings:
            if not self.rings:
                _remove_orphaned_rings()
            try:
                self.rings[key] = SharedFrameRing(self.stream, shape)
            except TransportError as error:
                print(f"orsight: {error}; sending {topic} as raw-bgr8", file=sys.stderr)
                self.rings[key] = None
        return self.rings[key]

    def close(self) -> None:
        self.socket.close()
        for ring in filter(None, self.rings.values()):
            ring.close()


class Receiver:
    """Subscriber thread that drains the socket and keeps the newest message of each topic.

    Every message's capture-to-receive delay is recorded in ``delays_ms[topic]`` (its publish-to-
    receive part in ``transit_ms[topic]``, the rest in ``publisher_ms[topic]``; constant memory); the newest
    messages are read with :meth:`newest` or awaited with :meth:`wait_newer`. Topics named in
    ``queued`` (alert transitions, where each one counts) are also kept in order for :meth:`take`.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topics: tuple[str, ...] = TOPICS,
                 keys: str | Path | None = None, queued: tuple[str, ...] = ()):
        self.endpoint, self.topics = endpoint, topics
        validator()  # built now, not on the first frame (it would be shown late)
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        if keys is not None:  # a --secure publisher: this display's client keys
            secure_subscriber(self.socket, keys)
        self.socket.setsockopt(zmq.RCVHWM, 8)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.secure = keys is not None
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                      | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        self.told: set[int] = set()  # handshake failures already said
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as error:
            raise TransportError(f"cannot connect to {endpoint}: {error.strerror}") from None
        self.latest: dict[str, Message] = {}
        self.queues: dict[str, collections.deque[Message]] = {t: collections.deque(maxlen=QUEUED_MAX) for t in queued}
        # constant memory over a whole day: percentiles of all, the newest as they were (core.latency)
        self.delays_ms = {topic: Latencies() for topic in topics}
        self.transit_ms = {topic: Latencies() for topic in topics}
        self.publisher_ms = {topic: Latencies() for topic in topics}  # capture to publish: the publisher's part
        self.counts = {topic: 0 for topic in topics}
        self.rejected: Counter[str] = Counter()  # bad messages by kind
        self.changed = threading.Condition()
        self.running = False
        self.thread = threading.Thread(target=self._drain, name="orsight-receiver", daemon=True)

    def _say_why_nothing_comes(self, event: int) -> None:
        """Once per kind: a publisher this receiver cannot talk to (it would only ever show NO SIGNAL)."""
        if event in self.told:
            return
        self.told.add(event)
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = "refuses this display's key (it is not in the publisher's clients/ folder)"
        elif self.secure:
            why = "is not encrypted, and this display asks for --secure"
        else:
            why = "asks for encryption: connect with --secure KEYS (orsight keys)"
        print(f"orsight: the publisher at {self.endpoint} {why}", file=sys.stderr)

    def start(self) -> Receiver:
        self.running = True
        self.thread.start()
        return self

    def _drain(self) -> None:
        block_stop_signals()
        while self.running:
            if self.monitor.poll(0):
                self._say_why_nothing_comes(recv_monitor_message(self.monitor)["event"])
            if not self.socket.poll(50, zmq.POLLIN):
                continue
            batch = {}
            while True:  # take everything queued, keep the newest of each topic
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)  # payloads not copied
                except zmq.Again:
                    break
                received = time.time_ns()
                try:
                    message = parse(frames, received, self.topics)
                except BadMessage as bad:  # counted, said once per kind, skipped: the receiver never dies
                    self.rejected[bad.kind] += 1
                    if self.rejected[bad.kind] == 1:
                        print(f"orsight: ignoring bad messages ({bad}); further ones of this kind are only counted",
                              file=sys.stderr)
                    continue
                if "t_capture_ns" in message.header:
                    self.delays_ms[message.topic].add(message.delay_ms)
                    self.transit_ms[message.topic].add(message.transit_ms)
                    self.publisher_ms[message.topic].add(message.delay_ms - message.transit_ms)
                self.counts[message.topic] += 1
                batch[message.topic] = message
                if message.topic in self.queues:
                    self.queues[message.topic].append(message)
            with self.changed:
                self.latest.update(batch)
                self.changed.notify_all()
        self.socket.disable_monitor()
        self.monitor.close()
        self.socket.close()

    def newest(self, topic: str) -> Message | None:
        return self.latest.get(topic)

    def take(self, topic: str) -> list[Message]:
        """Every message of a ``queued`` topic received since the last take, oldest first."""
        queue, taken = self.queues[topic], []
        while queue:
            taken.append(queue.popleft())
        return taken

    def wait_newer(self, topic: str, previous: Message | None, timeout: float) -> Message | None:
        """The newest ``topic`` message if it is not ``previous``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                message = self.latest.get(topic)
                if message is not None and message is not previous:
                    return message
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return None
                self.changed.wait(left)

    def stop(self) -> None:
        self.running = False
        if self.thread.is_alive():
            self.thread.join(timeout=2)
