"""Export: ultralytics ``.pt`` -> ONNX that :class:`OnnxSegmentationModel` reads.

    export_onnx("best.pt", imgsz=320, out="pipeline/models/orsight-phantom-seg-320.onnx")
"""
from __future__ import annotations

import shutil
from pathlib import Path


def export_onnx(pt: str | Path, imgsz: int, out: str | Path, opset: int | None = None,
                dynamic: bool = False) -> Path:
    """Write ``out`` (static batch 1 unless ``dynamic``); the class names go into its metadata."""
    from pipeline.yolo import YOLO

    exported = YOLO(str(pt), task="segment").export(format="onnx", imgsz=imgsz, opset=opset, dynamic=dynamic,
                                                    simplify=True, verbose=False)
    out = Path(out)
    if Path(exported).resolve() != out.resolve():
        shutil.move(exported, out)
    return out


def export_tensorrt(pt: str | Path, imgsz: int, out: str | Path) -> Path:
    """A TensorRT engine (fp16) where TensorRT and a CUDA device exist; a clear error otherwise."""
    from pipeline.inference import ModelError
    from pipeline.yolo import YOLO

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise ModelError("TensorRT is not installed here (pip install tensorrt, on a CUDA machine)") from None
    exported = YOLO(str(pt), task="segment").export(format="engine", imgsz=imgsz, half=True, device=0,
                                                    verbose=False)
    out = Path(out)
    shutil.move(exported, out)
    return out
