"""Export: ultralytics ``.pt`` -> ONNX that :class:`OnnxSegmentationModel` reads (or a TensorRT engine).

    export_onnx("best.pt", imgsz=384, out="pipeline/models/orsight-endoscapes-seg-384.onnx")
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def _export(pt: str | Path, out: str | Path, **settings) -> Path:
    """Run ultralytics' exporter on a copy of ``pt`` in a scratch folder and move the result to ``out``.

    Ultralytics writes its export next to the checkpoint; working on a copy means a file already
    beside the ``.pt`` (the shipped ONNX) is never overwritten.
    """
    from pipeline.yolo import YOLO

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / Path(pt).name
        shutil.copy(pt, copy)
        exported = YOLO(str(copy)).export(verbose=False, **settings)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    return out


def export_onnx(pt: str | Path, imgsz: int, out: str | Path, opset: int | None = None,
                dynamic: bool = False) -> Path:
    """Write ``out`` (static batch 1 unless ``dynamic``); the class names go into its metadata."""
    return _export(pt, out, format="onnx", imgsz=imgsz, opset=opset, dynamic=dynamic, simplify=True)


def export_tensorrt(pt: str | Path, imgsz: int, out: str | Path) -> Path:
    """A TensorRT engine (fp16) where TensorRT and a CUDA device exist; a clear error otherwise."""
    from pipeline.inference import ModelError

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise ModelError("TensorRT is not installed here (pip install tensorrt, on a CUDA machine)") from None
    return _export(pt, out, format="engine", imgsz=imgsz, half=True, device=0)
