"""3D Slicer bridge: ``orsight bridge igtl --connect ENDPOINT [--port 18944]`` serves OpenIGTLink.

A thin subscriber of the documented protocol (no second pipeline), re-sending what it receives
to OpenIGTLink clients (3D Slicer's OpenIGTLinkIF module connects to it; several at once, each
with the newest picture and every alert: ``igtl_server.py``), packed by pyigtl:

| OpenIGTLink device | type | what |
|---|---|---|
| ``orsight_video`` | IMAGE (RGB, 1 x H x W x 3) | each new ``video`` frame (newest wins; out of body: hidden), upright in Slicer's axial view (:func:`ijk_to_ras`), pixels in mm when the run has a scale |
| ``orsight_labels`` | IMAGE (uint8 label map, 1 x H x W) | each new ``mask``: 0 background, class index + 1 (the mask header's ``classes``; colours by role as the overlay's: README); a vessel class there is a HIGH-tier vessel, and ``POSSIBLE_VESSEL`` (255) marks the advisory-tier "possible vessel" regions (docs/alerts.md) |
| ``orsight_alert`` | STRING | each ``alert`` transition: ``PRIORITY rule state: message`` |
| ``orsight_closest`` | POINT | the closest instrument point and vessel point, in the images' RAS (z = 0), when both exist |

    serve_igtl("ipc:///tmp/or.sock", port=18944)     # until Ctrl-C / SIGTERM / the publisher ends
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.core.classes import ROLE_COLOURS
from pipeline.core.privacy import shared_picture
from pipeline.display.igtl_server import IgtlServer
from pipeline.transport.untrusted import TransportError, decode_image
from pipeline.transport.zeromq import Receiver

DEFAULT_PORT = 18944  # OpenIGTLink's registered port
POSSIBLE_VESSEL = 255  # the label of an advisory-tier ("possible vessel") region in ``orsight_labels``
POINT_COLOURS = {"instrument": ROLE_COLOURS["instrument"], "vessel": ROLE_COLOURS["vessel"]}


def serve_igtl(endpoint: str, port: int = DEFAULT_PORT, keys: str | Path | None = None, stop=None) -> dict:
    """Re-send the stream as OpenIGTLink messages until the publisher ends, ``stop``, or a signal."""
    import pyigtl

    try:
        server = IgtlServer(port)
    except OSError as error:
        raise TransportError(f"cannot serve OpenIGTLink on 127.0.0.1:{port}: {error.strerror}") from None
    receiver = Receiver(endpoint, topics=("video", "mask", "alert", "status"), keys=keys, queued=("alert",)).start()
    sent = {"orsight_video": 0, "orsight_labels": 0, "orsight_alert": 0, "orsight_closest": 0}
    newest = {"video": None, "mask": None}
    try:
        while not (stop is not None and stop.is_set()):
            receiver.wait_newer("video", newest["video"], timeout=0.1)
            arrived = []
            for topic in newest:  # pictures: the newest wins
                message = receiver.newest(topic)
                if message is not None and message is not newest[topic]:
                    newest[topic] = message
                    arrived.append((topic, message))
            arrived += [("alert", alert) for alert in receiver.take("alert")]  # transitions: every one
            mask = newest["mask"]
            scale = mask.header.get("proximity", {}).get("mm_per_px") if mask is not None else None
            for topic, message in arrived:
                try:
                    for item in _messages(pyigtl, topic, message, scale):
                        server.send(item, newest_only=topic != "alert")  # pictures: the newest; alerts: each
                        sent[item.device_name] += 1
                except (TransportError, ValueError):  # a frame that cannot be decoded: the next one will
                    continue
            fresh = bool(arrived)
            status = receiver.newest("status")
            if not fresh and status is not None and status.header.get("final"):
                break
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        server.stop()
    return {"sent": sent, "messages_rejected": dict(receiver.rejected)}


def label_map(mask) -> np.ndarray:
    """The mask message's class map with its advisory-tier vessel outlines filled in as ``POSSIBLE_VESSEL``."""
    labels = decode_image(mask).copy()
    for region in mask.header.get("advisory", []):
        cv2.fillPoly(labels, [np.array(p, np.int32).reshape(-1, 2) for p in region["polygons"]], POSSIBLE_VESSEL)
    return labels


def ijk_to_ras(mm_per_px: float | None) -> np.ndarray:
    """A video frame's IJK-to-RAS for Slicer: column i to the patient's left and row j to posterior, so that
    Slicer's axial view (left on the right of the screen, anterior at the top) shows it upright, not turned
    half round as identity does; pixels ``mm_per_px`` wide when a calibration gives the scale, else 1."""
    spacing = mm_per_px or 1.0
    return np.diag([-spacing, -spacing, spacing, 1.0])


def _messages(pyigtl, topic: str, message, mm_per_px: float | None = None) -> list:
    """The OpenIGTLink messages for one orsight message; ``mm_per_px``: the newest mask's scale."""
    header, stamp = message.header, message.header["t_capture_ns"] / 1e9
    if topic == "video":  # out of body: hidden as in every picture that leaves the monitor
        picture = shared_picture(decode_image(message), header.get("privacy"), header.get("privacy_mode", "blur"))
        rgb = picture[..., ::-1]
        return [pyigtl.ImageMessage(np.ascontiguousarray(rgb)[None], ijk_to_world_matrix=ijk_to_ras(mm_per_px),
                                    timestamp=stamp, device_name="orsight_video")]
    if topic == "alert":
        text = f"{header['priority'].upper()} {header['rule']} {header['state']}: {header['message']}"
        return [pyigtl.StringMessage(text, timestamp=stamp, device_name="orsight_alert")]
    out = [pyigtl.ImageMessage(label_map(message)[None], ijk_to_world_matrix=ijk_to_ras(mm_per_px), timestamp=stamp,
                               device_name="orsight_labels")]
    near = header["proximity"]
    if near["instrument_point"] and near["vessel_point"]:
        to_ras = ijk_to_ras(mm_per_px)
        points = [(to_ras @ [*near[key], 0, 1])[:3].tolist() for key in ("instrument_point", "vessel_point")]
        out.append(pyigtl.PointMessage(points,
                                       names=["instrument", "vessel"],
                                       rgba_colors=[[*POINT_COLOURS[role][::-1], 255] for role in ("instrument", "vessel")],
                                       timestamp=stamp, device_name="orsight_closest"))
    return out
