"""Sources: where frames come from. The choice of source stays out of the pipeline graph.

``SRC`` is ``phantom[:SCENARIO]``, a video file, an image folder, a camera index,
``/dev/videoN`` (V4L2), ``rtsp://...`` or ``gst:PIPELINE``. Every source gives
``read() -> (image, truth) | None`` (``None``: the source ended); a live source that fails
raises :class:`SourceLost` and can be ``reopen()``-ed.

    source = open_source("phantom:approach", size=(1920, 1080), fps=30)
    image, truth = source.read()
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from pipeline.sources.phantom import PhantomScene, parse_phantom

MAX_CAMERA_INDEX = 4095  # V4L2 numbers devices well below this; a larger index is a typo
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class SourceError(Exception):
    """The source cannot be opened or read at all."""


class SourceLost(Exception):
    """A live source stopped delivering frames; it may come back."""


class Source:
    """A stream of BGR frames. ``live``: frames arrive at their own pace and may be lost."""

    name: str
    fps: float
    frame_size: tuple[int, int]  # (width, height) of the first frame
    live: bool = False

    def read(self) -> tuple[np.ndarray, object] | None:
        raise NotImplementedError

    def reopen(self) -> None:
        """Open a lost live source again (raises :class:`SourceError` while it is still gone)."""

    def close(self) -> None:
        """Release the device or file."""


class PhantomSource(Source):
    """The synthetic scene, frame after frame, with its ground truth."""

    def __init__(self, scenario: str, size: tuple[int, int], fps: float, seed: int = 0):
        try:
            self.scene = PhantomScene(size[0], size[1], fps=fps, scenario=scenario, seed=seed)
        except ValueError as error:
            raise SourceError(str(error)) from None
        self.name, self.fps, self.frame = f"phantom:{scenario}", fps, 0
        self.frame_size = (self.scene.width, self.scene.height)

    def read(self):
        image, truth = self.scene.render(self.frame)
        self.frame += 1
        return image, truth


class ImageFolderSource(Source):
    """Every image of a folder, in name order."""

    def __init__(self, folder: Path, fps: float):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
        self.name, self.fps, self.index = str(folder), fps, 0
        first = cv2.imread(str(self.paths[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise SourceError(f"cannot read image {self.paths[0]}")
        self.frame_size = (first.shape[1], first.shape[0])

    def read(self):
        if self.index >= len(self.paths):
            return None
        path = self.paths[self.index]
        self.index += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {path}")
        return image, None


class CaptureSource(Source):
    """OpenCV ``VideoCapture``: video files, cameras, V4L2 devices, RTSP, GStreamer."""

    def __init__(self, target, backend: int, name: str, live: bool, size=None, fps=None, fourcc=None):
        self.target, self.backend, self.name, self.live = target, backend, name, live
        self.requested = (size, fps, fourcc)
        self.capture = self._open()
        first = self.capture.read()
        if not first[0]:
            self.capture.release()
            raise SourceError(f"{name}: opened, but no frame could be read (corrupt or empty?)")
        self.pending = first[1]
        self.frame_size = (self.pending.shape[1], self.pending.shape[0])
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or fps or 30.0
        self.claimed = 0 if live else int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))  # what a file says it holds
        self.frames_read = 1

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.target, self.backend)
        if not capture.isOpened():
            raise SourceError(f"cannot open {self.name}")
        size, fps, fourcc = self.requested
        if self.live:
            if fourcc:
                capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
            if size:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            if fps:
                capture.set(cv2.CAP_PROP_FPS, fps)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a queue of old ones
        return capture

    def read(self):
        if self.pending is not None:
            image, self.pending = self.pending, None
            return image, None
        ok, image = self.capture.read()
        if ok:
            self.frames_read += 1
            return image, None
        if self.live:
            raise SourceLost(f"{self.name} stopped delivering frames")
        if self.frames_read < self.claimed - 1:  # container counts may be off by one, never by more
            raise SourceError(f"{self.name} ended after {self.frames_read} of its {self.claimed} frames "
                              "(truncated or corrupt)")
        return None

    def reopen(self) -> None:
        self.capture.release()
        self.capture = self._open()

    def close(self) -> None:
        self.capture.release()


def _has_gstreamer() -> bool:
    return re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) is not None


def open_source(spec: str, size: tuple[int, int] = (1280, 720), fps: float = 30.0,
                fourcc: str | None = None, seed: int = 0) -> Source:
    """Open ``spec``; ``size``/``fps`` shape the phantom and are requested from cameras."""
    if not fps > 0 or min(size) <= 0:
        raise SourceError(f"frame rate and size must be positive, not {fps:g} fps at {size[0]}x{size[1]}")
    if spec == "phantom" or spec.startswith("phantom:"):
        return PhantomSource(parse_phantom(spec), size, fps, seed)
    if spec.startswith("gst:"):
        if not _has_gstreamer():
            raise SourceError("this OpenCV build has no GStreamer support; install an OpenCV built with it")
        return CaptureSource(spec[4:], cv2.CAP_GSTREAMER, "GStreamer pipeline", live=True)
    if spec.startswith(("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://")):
        return CaptureSource(spec, cv2.CAP_FFMPEG, spec, live=True)
    if spec.isdigit() or spec.startswith("/dev/video"):
        if spec.isdigit() and int(spec) > MAX_CAMERA_INDEX:
            raise SourceError(f"camera index {spec} is out of range (0-{MAX_CAMERA_INDEX})")
        target = int(spec) if spec.isdigit() else spec
        if isinstance(target, str) and not Path(target).exists():
            raise SourceError(f"no such video device: {spec}")
        return CaptureSource(target, cv2.CAP_V4L2, f"camera {spec}", live=True, size=size, fps=fps, fourcc=fourcc)
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec) or (":" in spec and not Path(spec).exists() and "/" not in spec):
        raise SourceError(f"unknown source scheme in {spec!r}; use phantom[:SCENARIO], a file, a folder, "
                          "a camera index, /dev/videoN, rtsp://... or gst:PIPELINE")
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"no such file or folder: {spec}")
    if path.is_dir():
        return ImageFolderSource(path, fps)
    return CaptureSource(str(path), cv2.CAP_FFMPEG, str(path), live=False)
