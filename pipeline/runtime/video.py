"""Recorded videos for replay: what a file holds, its frames in order, chunks cut at keyframes.

A folder of images (in name order, at ``IMAGE_FOLDER_FPS``) is replayed like a video; a folder
of videos stands for its videos (:func:`expand_inputs`); a live recording (``orsight run --record
DIR``: ``video.mp4`` with ``frames.csv``) is replayed on its capture times.

    info = probe("case12.mp4")                       # fps, frame count, size, field of view
    for index, image in read_frames(info.path, 0, 300): ...
    chunks = plan_chunks(info.path, info.frame_count, 300)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from pipeline.sources.capture import IMAGE_SUFFIXES
from pipeline.stages.preprocess.fov import detect_fov

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts")
IMAGE_FOLDER_FPS = 30.0
RECORDED_VIDEO, RECORDED_TIMES = "video.mp4", "frames.csv"  # what `orsight run --record DIR` writes


class ReplayError(Exception):
    """A video cannot be analysed at all."""


@dataclass
class VideoInfo:
    path: str
    fps: float
    frame_count: int  # as the container claims
    size: tuple[int, int]
    fov: tuple[float, float, float] | None = None  # endoscope circle, detected once per recording
    times_ns: list[int] | None = None  # a live recording's capture times, from its first frame

    def time_ns(self, index: int) -> int:
        """Frame ``index``'s media time: its capture time in a live recording, else its place at ``fps``."""
        if self.times_ns is not None and index < len(self.times_ns):
            return self.times_ns[index]
        return int(index / self.fps * 1e9)


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, claimed frame count, size and field of view; :class:`ReplayError` when unreadable.

    The field of view is detected once, on the first frame, and used for every chunk, so that
    every frame is cropped the same way however the video is split.
    """
    if is_live_recording(Path(path)):
        return _probe_recording(Path(path))
    if Path(path).is_dir():
        return _probe_images(Path(path))
    if not Path(path).is_file():
        raise ReplayError(f"no such video: {path}")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    info = VideoInfo(str(path), fps, count if count > 1 or not ok else _counted_frames(str(path), fps),
                     (frame.shape[1], frame.shape[0]) if ok else (0, 0), detect_fov(frame) if ok else None)
    capture.release()
    if not ok:
        raise ReplayError(f"cannot read video {path}: not a video, or no decodable frame")
    return info


def is_live_recording(folder: Path) -> bool:
    return (folder / RECORDED_VIDEO).is_file() and (folder / RECORDED_TIMES).is_file()


def _probe_recording(folder: Path) -> VideoInfo:
    """A live recording: its video, with the capture time of each frame (``frames.csv``: frame, t_capture_ns)."""
    info = probe(folder / RECORDED_VIDEO)
    with (folder / RECORDED_TIMES).open() as table:
        captured = [int(row.split(",")[1]) for row in table.read().splitlines()[1:] if row.count(",") >= 1]
    info.times_ns = [t - captured[0] for t in captured] if captured else None
    return info


def first_file(path: str | Path) -> Path:
    """The file that stands for a recording (a pseudonym is keyed on it): the video, or a folder's first image."""
    return images_of(Path(path))[0] if Path(path).is_dir() else Path(path)


def images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def expand_inputs(paths: list[str]) -> list[str]:
    """Replay's inputs: files as they are; a folder of videos -> its videos in name order; a folder
    of images stays (one recording)."""
    out = []
    for path in paths:
        folder = Path(path)
        if is_live_recording(folder):
            out.append(path)
            continue
        videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if folder.is_dir() else []
        out += [str(v) for v in videos] if videos and not images_of(folder) else [path]
    return out


def _probe_images(folder: Path) -> VideoInfo:
    images = images_of(folder)
    first = cv2.imread(str(images[0]), cv2.IMREAD_COLOR) if images else None
    if first is None:
        raise ReplayError(f"no readable image or video in folder {folder}")
    return VideoInfo(str(folder), IMAGE_FOLDER_FPS, len(images), (first.shape[1], first.shape[0]), detect_fov(first))


def _counted_frames(path: str, fps: float) -> int:
    """The frame count of a file whose index does not say (a fragmented MP4, as the display records)."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            return stream.frames or sum(1 for _ in container.demux(stream) if _.size)
    except (av.error.FFmpegError, IndexError):
        return 0


def decode_errors(path: str) -> int:
    """Packets the decoder refused and frames it marked corrupt (FFmpeg conceals both, and OpenCV says
    nothing of them): a pass over the file with PyAV. 0 for a folder of images."""
    if Path(path).is_dir():
        return 0
    import av

    errors = 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                try:
                    errors += sum(frame.is_corrupt for frame in packet.decode())
                except av.error.FFmpegError:
                    errors += 1
    except (av.error.FFmpegError, IndexError):
        return 1  # the container itself cannot be read as it should
    return errors


def read_frames(path: str, start: int = 0, stop: int | None = None):
    """(index, BGR image) from ``start`` up to ``stop`` (exclusive) or the last readable frame."""
    if Path(path).is_dir():
        for index, image_path in enumerate(images_of(Path(path))[start:stop], start=start):
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image is None:
                return  # an unreadable image ends the recording there: the result is partial
            yield index, image
        return
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if start:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    index = start
    try:
        while stop is None or index < stop:
            ok, image = capture.read()
            if not ok:
                return
            yield index, image
            index += 1
    finally:
        capture.release()


def keyframes(path: str) -> list[int]:
    """Indices of the video's keyframes (from the container's packets, nothing decoded); every image
    of a folder is one."""
    if Path(path).is_dir():
        return list(range(len(images_of(Path(path)))))
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        start = stream.start_time or 0
        found = [round(float((packet.pts - start) * stream.time_base) * rate)
                 for packet in container.demux(stream) if packet.is_keyframe and packet.pts is not None]
    return sorted(set(found))


def plan_chunks(path: str, frame_count: int, chunk_frames: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering every frame, each start on a keyframe where possible."""
    try:
        starts = keyframes(path)
    except Exception:  # no keyframe index: fall back to frame-accurate seeking anywhere
        starts = list(range(0, frame_count, chunk_frames))
    cuts = sorted({0, *(next((k for k in starts if k >= target), target)
                        for target in range(chunk_frames, frame_count, chunk_frames))} - {frame_count})
    cuts = [c for c in cuts if c < frame_count]
    return list(zip(cuts, cuts[1:] + [frame_count]))
