"""orsight: real-time segmentation of vessels and instruments in laparoscopic video."""
import os

# Ultralytics phones home and installs packages by default; this pipeline never touches the
# network. Set before anything imports ultralytics (see pipeline/yolo.py for the rest).
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

__version__ = "0.1.0"
