"""Received messages are untrusted input: each is checked before anything reads it.

A message must be ``[topic, header, payload...]`` with a subscribed UTF-8 topic, a header of at
most ``MAX_HEADER_BYTES`` that is a JSON object valid against the protocol's JSON Schema
(``protocol.schema.json``, the one docs/protocol.md prints), pictures of at most
``MAX_PIXELS``, and the payload the header announces. Shared-memory frames are read only from
regular files in the ring directory with orsight's name prefix, opened without following
links, within the file's bounds; decompression stops at the announced size.

    message = parse(frames, received_ns, topics)      # BadMessage(kind, detail) when it is not one
    image = decode_image(message)                      # TransportError when the pixels cannot be had
"""
from __future__ import annotations

import json
import mmap
import os
import stat
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

SHARED_DIR = Path("/dev/shm")
RING_PREFIX = "orsight-"
SHARED_ENCODING = "shm-bgr8"
MAX_HEADER_BYTES = 64 << 10
MAX_PIXELS = 7680 * 4320  # 8K UHD; every picture and mask the pipeline sends is smaller
COUNTER_BYTES = 8  # the generation counter before each shared-memory frame
SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")


class TransportError(Exception):
    """An endpoint cannot be bound or connected, or a message breaks the protocol."""


class BadMessage(TransportError):
    """A received message that is not one of the protocol's; ``kind`` says what was wrong."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


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

    @property
    def transit_ms(self) -> float:
        """Publish-to-receive delay: the network, the publisher's and the receiver's ZeroMQ and the
        receiving thread's wake-up (the rest of :attr:`delay_ms` is the publisher's own)."""
        return (self.t_receive_ns - self.header["t_publish_ns"]) / 1e6


@lru_cache(maxsize=1)
def validator():
    """The protocol's JSON Schema, compiled once."""
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def parse(frames: list, received_ns: int, topics: tuple[str, ...]) -> Message:
    """The checked message of ``frames`` (ZeroMQ frames or bytes), or :class:`BadMessage`."""
    if len(frames) < 2:
        raise BadMessage("too few parts", f"{len(frames)} part(s)")
    raw = [bytes(memoryview(f.buffer if hasattr(f, "buffer") else f)[:MAX_HEADER_BYTES + 1]) for f in frames[:2]]
    try:
        topic = raw[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage("topic not UTF-8", repr(raw[0][:40])) from None
    if topic not in topics:
        raise BadMessage("unknown topic", repr(topic[:40]))
    if len(raw[1]) > MAX_HEADER_BYTES:
        raise BadMessage("header too large", f"over {MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(raw[1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMessage("header not JSON", repr(raw[1][:40])) from None
    if not isinstance(header, dict):
        raise BadMessage("header not an object", type(header).__name__)
    error = next(validator().iter_errors(header), None)
    if error is not None or header.get("topic") != topic:
        where = "/".join(map(str, error.absolute_path)) if error is not None else "topic"
        raise BadMessage("header breaks the schema", f"{where}: {error.message if error else 'differs from frame 0'}"[:200])
    payloads = [f.buffer if hasattr(f, "buffer") else memoryview(f) for f in frames[2:]]
    if "shape" in header:
        _check_picture(header, payloads)
    return Message(topic, header, payloads, received_ns)


def _check_picture(header: dict, payloads: list) -> None:
    shape = header["shape"]
    if int(np.prod(shape, dtype=np.int64)) > MAX_PIXELS * (shape[2] if len(shape) == 3 else 1) or \
            (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise BadMessage("picture too large", str(shape))
    if len(payloads) != 1:
        raise BadMessage("wrong payload count", f"{len(payloads)} payload frames")
    size = int(np.prod(shape))
    if header["encoding"] == "raw-bgr8" and len(payloads[0]) != size:
        raise BadMessage("payload of the wrong length", f"{len(payloads[0])} bytes for shape {shape}")


def decode_image(message: Message) -> np.ndarray:
    """The image carried by a checked image message (``video``, ``overlay`` or ``mask``)."""
    header, payload = message.header, message.payloads[0]
    shape = tuple(header["shape"])
    size = int(np.prod(shape))
    if header["encoding"] == SHARED_ENCODING:
        return read_shared(header)
    if header["encoding"] == "raw-bgr8":
        return np.frombuffer(payload, np.uint8).reshape(shape)
    if header["encoding"] == "zlib":
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(payload, size + 1)  # a bomb stops here: never more than announced
        except zlib.error as error:
            raise TransportError(f"{message.topic} payload is not zlib data: {error}") from None
        if len(data) != size:
            raise TransportError(f"{message.topic} payload inflates to {len(data)} bytes, not {size}")
        return np.frombuffer(data, np.uint8).reshape(shape)
    flags = cv2.IMREAD_UNCHANGED if header["encoding"] == "png" else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), flags)
    if image is None or image.shape != shape:
        raise TransportError(f"{message.topic} payload does not decode to shape {shape}")
    return image


def ring_path(path: str) -> Path:
    """``path`` if it names one of orsight's rings in the ring directory (no links, no ``..``)."""
    candidate = Path(path)
    if candidate.parent != SHARED_DIR or not candidate.name.startswith(RING_PREFIX) or \
            os.path.normpath(path) != str(candidate):
        raise TransportError(f"shared-memory frame outside {SHARED_DIR}/{RING_PREFIX}*: {path[:80]!r}")
    return candidate


@lru_cache(maxsize=8)
def _shared_mapping(path: str) -> mmap.mmap:
    """A read-only view of a publisher's ring (kept while it is in use; rings are few)."""
    try:
        descriptor = os.open(ring_path(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise TransportError(f"shared-memory frame {path} is not readable here ({error.strerror}): "
                             "shm-bgr8 works only on the publisher's host") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            raise TransportError(f"shared-memory frame {path} is not a ring file")
        return mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(descriptor)


def read_shared(header: dict) -> np.ndarray:
    """A private copy of a ``shm-bgr8`` frame, or TransportError if it is out of bounds or was overwritten."""
    where = header["shm"]
    memory = _shared_mapping(where["path"])
    offset, size = where["offset"], int(np.prod(header["shape"]))
    if offset < COUNTER_BYTES or offset + size > len(memory):
        raise TransportError(f"shared-memory frame outside {where['path']} (offset {offset}, {size} bytes)")
    counter = np.ndarray((), "<u8", memory, offset - COUNTER_BYTES)
    image = np.ndarray(tuple(header["shape"]), np.uint8, memory, offset).copy()
    if int(counter) != where["generation"]:
        raise TransportError(f"shared-memory frame {header.get('frame_id')} was overwritten before it was read")
    return image
