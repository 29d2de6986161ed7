"""Patient privacy: what a frame shows (inside the body, outside it, blank) and how a shared copy hides it.

Everything that leaves the surgeon's own monitor (recordings, the web display and its snapshot,
the OpenIGTLink IMAGE, replay's annotated video, thumbnails and report, the API's plot) goes
through :func:`shared_picture`: an outside frame is blurred beyond recognition (``blur``, the
default) or replaced by black (``blank``), with an "OUT OF BODY" banner either way; ``off``
passes it unchanged (said at start and written to the audit log). Blank frames (black, a
uniform colour, a recorder's menu) pass as they are.

    shared = shared_picture(frame, packet.privacy, mode="blur")
    name = pseudonym("/data/Smith_John_MRN1234.mp4", key)      # "video-3f9c2a71d0e4": no path, no name
"""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.keys import site_key

INSIDE, OUTSIDE, BLANK = "inside", "outside", "blank"
STATES = (INSIDE, OUTSIDE, BLANK)
MODES = ("blur", "blank", "off")
BANNER = "OUT OF BODY"
BLUR_CELLS = 12  # the blurred picture keeps this many cells across: colours, no shapes, no faces
FINGERPRINT_BYTES = 1 << 20  # a video's pseudonym is keyed on its size and its first MiB
KEY_FILE = Path("~/.config/orsight/pseudonym.key")  # the site's pseudonym key: made on first use, 0600


def shared_picture(image: np.ndarray, state: str | None, mode: str = "blur") -> np.ndarray:
    """``image`` as it may leave the monitor: unchanged unless ``state`` is outside and ``mode`` is not off."""
    if state != OUTSIDE or mode == "off":
        return image
    height, width = image.shape[:2]
    if mode == "blank":
        hidden = np.zeros_like(image)
    else:
        rows = max(1, BLUR_CELLS * height // width)
        cells = cv2.resize(image, (BLUR_CELLS, rows), interpolation=cv2.INTER_AREA)
        smooth = cv2.GaussianBlur(cv2.resize(cells, (8 * BLUR_CELLS, 8 * rows), interpolation=cv2.INTER_LINEAR),
                                  (0, 0), 4)  # blurred small, then enlarged: milliseconds at any size
        hidden = cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)
    mark(hidden, BANNER)
    return hidden


def out_of_body(counts: dict[str, int], fps: float) -> dict:
    """Frames judged outside the body and blank (``counts``), and their seconds at ``fps``: for status and
    summaries."""
    return {**{f"{state}_frames": n for state, n in counts.items()},
            **{f"{state}_s": round(n / fps, 2) for state, n in counts.items()}}


def mark(image: np.ndarray, text: str) -> None:
    """A black band across the middle with ``text`` in amber, sized to the picture (drawn in place)."""
    height, width = image.shape[:2]
    scale = max(0.5, width / 900)
    thickness = max(1, round(scale * 2))
    (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = height // 2 - text_h
    cv2.rectangle(image, (0, top - text_h // 2), (width, top + 2 * text_h + base), (0, 0, 0), -1)
    cv2.putText(image, text, ((width - text_w) // 2, top + text_h + base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 191, 255), thickness, cv2.LINE_AA)


def pseudonym(path: str | Path, key: bytes) -> str:
    """A stable name for a video that tells nothing of its path or file name: a keyed hash of its
    size and first MiB (the same file gives the same name wherever it lies; without the key the
    name cannot be traced back by hashing candidate files)."""
    path = Path(path)
    digest = hmac.new(key, str(path.stat().st_size).encode(), hashlib.sha256)
    with path.open("rb") as file:
        digest.update(file.read(FINGERPRINT_BYTES))
    return f"video-{digest.hexdigest()[:12]}"


def pseudonym_key(path: str | Path | None = None) -> bytes:
    """The pseudonym key in ``path`` (default ``KEY_FILE``), made (32 random bytes, mode 0600) when absent.
    Keep it apart from what is shared: with it, a video's pseudonym can be recomputed from the video."""
    return site_key(path or KEY_FILE)
