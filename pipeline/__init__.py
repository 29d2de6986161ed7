"""orsight: real-time segmentation of vessels and instruments in laparoscopic video."""
import os

# Ultralytics phones home and installs packages by default; this pipeline never touches the
# network. Set before anything imports ultralytics (see pipeline/core/yolo.py for the rest).
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
# OpenCV's capture back-ends print warnings of their own; errors reach the user as one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg inside OpenCV: quiet

from pipeline.core.version import __version__  # noqa: E402,F401  (after the environment above)


def __getattr__(name: str):
    """``from pipeline import Analyzer, Result``: the Python API (pipeline/api.py), loaded on first use."""
    if name in ("Analyzer", "Result"):
        from pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
