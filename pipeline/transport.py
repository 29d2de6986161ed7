"""ZeroMQ transport: multipart ``[topic, JSON header, payload...]``, specified in docs/protocol.md.

    publisher = Publisher("tcp://127.0.0.1:5555")
    publisher.send_image("video", image, frame_id=1, t_capture_ns=t, encoding="raw-bgr8")
    receiver = Receiver("tcp://127.0.0.1:5555"); receiver.start()
    message = receiver.wait_newer("video", previous=None, timeout=1.0)
    image = decode_image(message)
"""
from __future__ import annotations

import json
import threading
import time
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import zmq

SCHEMA_VERSION = 1
TOPICS = ("video", "overlay", "mask", "alert", "status")
ENCODINGS = ("raw-bgr8", "jpeg", "png")  # for pictures
MASK_ENCODING = "zlib"  # class-index maps: zlib of the raw bytes (4x faster than PNG at 1080p)
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class TransportError(Exception):
    """An endpoint cannot be bound or connected, or a message breaks the protocol."""


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


class Publisher:
    """Binds a PUB endpoint and sends versioned messages; safe to call from several threads.

    Large payloads go out without a copy; the high-water mark drops messages for a slow
    subscriber instead of letting memory grow.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, stream: str = "orsight", high_water_mark: int = 8):
        self.endpoint, self.stream = endpoint, stream
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.XPUB)  # a PUB that also reports subscriptions
        self.socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self.socket.setsockopt(zmq.LINGER, 200)
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as error:
            self.socket.close()
            raise TransportError(f"cannot publish on {endpoint}: {error.strerror}") from None
        self.lock = threading.Lock()
        self.seq = {topic: 0 for topic in TOPICS}

    def wait_for_subscriber(self, timeout: float = 5.0) -> bool:
        """Block until some subscriber has subscribed (or ``timeout`` seconds pass)."""
        if self.socket.poll(int(timeout * 1000), zmq.POLLIN):
            self.socket.recv()
            return True
        return False

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
        payload = encode_image(image, encoding, jpeg_quality)
        return self.send(topic, {**fields, "shape": list(image.shape), "dtype": "uint8", "encoding": encoding},
                         (payload,))

    def close(self) -> None:
        self.socket.close()


@dataclass(eq=False)  # compared and hashed by identity: each message is one event
class Message:
    """One received message, stamped with its wall-clock receive time."""

    topic: str
    header: dict
    payloads: list[memoryview]
    t_receive_ns: int

    @property
    def delay_ms(self) -> float:
        """Capture-to-receive delay (same host clocks)."""
        return (self.t_receive_ns - self.header["t_capture_ns"]) / 1e6


def decode_image(message: Message) -> np.ndarray:
    """The image carried by an image message (``video``, ``overlay`` or ``mask``)."""
    header, payload = message.header, message.payloads[0]
    shape = tuple(header["shape"])
    if header["encoding"] == "raw-bgr8":
        return np.frombuffer(payload, np.uint8).reshape(shape)
    if header["encoding"] == "zlib":
        return np.frombuffer(zlib.decompress(payload), np.uint8).reshape(shape)
    flags = cv2.IMREAD_UNCHANGED if header["encoding"] == "png" else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), flags)
    if image is None or image.shape != shape:
        raise TransportError(f"{message.topic} payload does not decode to shape {shape}")
    return image


class Receiver:
    """Subscriber thread that drains the socket and keeps the newest message of each topic.

    Every message's capture-to-receive delay is recorded in ``delays_ms[topic]``; the newest
    messages are read with :meth:`newest` or awaited with :meth:`wait_newer`.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topics: tuple[str, ...] = TOPICS):
        self.endpoint, self.topics = endpoint, topics
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, 8)
        self.socket.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as error:
            raise TransportError(f"cannot connect to {endpoint}: {error.strerror}") from None
        self.latest: dict[str, Message] = {}
        self.delays_ms: dict[str, list[float]] = {topic: [] for topic in topics}
        self.counts = {topic: 0 for topic in topics}
        self.changed = threading.Condition()
        self.running = False
        self.thread = threading.Thread(target=self._drain, name="orsight-receiver", daemon=True)

    def start(self) -> Receiver:
        self.running = True
        self.thread.start()
        return self

    def _drain(self) -> None:
        while self.running:
            if not self.socket.poll(50, zmq.POLLIN):
                continue
            batch = {}
            while True:  # take everything queued, keep the newest of each topic
                try:
                    frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)  # payloads not copied
                except zmq.Again:
                    break
                received = time.time_ns()
                topic = frames[0].bytes.decode()
                message = Message(topic, json.loads(frames[1].bytes), [f.buffer for f in frames[2:]], received)
                if "t_capture_ns" in message.header:
                    self.delays_ms[topic].append(message.delay_ms)
                self.counts[topic] += 1
                batch[topic] = message
            with self.changed:
                self.latest.update(batch)
                self.changed.notify_all()
        self.socket.close()

    def newest(self, topic: str) -> Message | None:
        return self.latest.get(topic)

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
