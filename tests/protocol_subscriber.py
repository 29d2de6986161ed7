"""A subscriber written from docs/protocol.md alone: validates every header it receives.

    python tests/protocol_subscriber.py ENDPOINT SECONDS REPORT.json
Reads the JSON Schema block of docs/protocol.md; writes counts, violations and seq gaps.
"""
import json
import mmap
import re
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import zmq

TOPICS = ("video", "overlay", "mask", "alert", "status")


def _shared_frame_errors(topic: str, header: dict, payload: bytes) -> list[str]:
    """Read a shm-bgr8 frame as the protocol says: mmap the file, copy, check the generation."""
    where, size = header["shm"], int(np.prod(header["shape"]))
    with open(where["path"], "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as memory:
        pixels = bytes(memory[where["offset"]:where["offset"] + size])
        counter = int.from_bytes(memory[where["offset"] - 8:where["offset"]], "little")
    errors = [f"{topic}: shm-bgr8 with a {len(payload)}-byte payload"] if payload else []
    if len(pixels) != size:
        errors.append(f"{topic}: shared frame of {len(pixels)} bytes for shape {header['shape']}")
    if counter < where["generation"] or counter % 2:
        errors.append(f"{topic}: generation {counter} in the slot, {where['generation']} announced")
    return errors


def main(endpoint: str, seconds: float, report: str) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    schema = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))
    validator = jsonschema.Draft202012Validator(schema)
    socket = zmq.Context().socket(zmq.SUB)
    for topic in TOPICS:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    socket.connect(endpoint)
    counts, errors, last_seq, gaps, final = {t: 0 for t in TOPICS}, [], {}, 0, False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not final:
        if not socket.poll(100):
            continue
        frames = socket.recv_multipart()
        topic, header = frames[0].decode(), json.loads(frames[1].decode("utf-8"))
        counts[topic] = counts.get(topic, 0) + 1
        errors += [f"{topic}: {e.message}" for e in validator.iter_errors(header)]
        if header.get("topic") != topic:
            errors.append(f"{topic}: header topic {header.get('topic')}")
        if topic in last_seq and header["seq"] != last_seq[topic] + 1:
            gaps += 1
            if header["seq"] <= last_seq[topic]:
                errors.append(f"{topic}: seq went from {last_seq[topic]} to {header['seq']}")
        last_seq[topic] = header["seq"]
        expected_payloads = 1 if topic in ("video", "overlay", "mask") else 0
        if len(frames) - 2 != expected_payloads:
            errors.append(f"{topic}: {len(frames) - 2} payload frames")
        if header.get("encoding") == "raw-bgr8" and len(frames[2]) != int(np.prod(header["shape"])):
            errors.append(f"{topic}: raw payload of {len(frames[2])} bytes for shape {header['shape']}")
        if header.get("encoding") == "shm-bgr8":
            errors += _shared_frame_errors(topic, header, frames[2])
        final = topic == "status" and header.get("final", False)
    Path(report).write_text(json.dumps({"counts": counts, "errors": errors[:50], "gaps": gaps, "final": final}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
