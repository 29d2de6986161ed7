"""What a benchmark ran on: recorded beside every figure."""
from __future__ import annotations

import os
import platform

import onnxruntime


def describe_machine(**extra) -> dict:
    """CPU, cores, Python and ONNX Runtime versions, plus ``extra`` (model, input...)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, **extra}
