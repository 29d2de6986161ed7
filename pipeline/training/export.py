"""Export: ultralytics ``.pt`` -> ONNX that :class:`OnnxSegmentationModel` reads (or a TensorRT engine).

    export_onnx("best.pt", imgsz=320, out="pipeline/models/orsight-endoscapes-lite0-sem-320.onnx")
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipeline.stages.preprocess.geometry import input_dims


def _export(pt: str | Path, out: str | Path, **settings) -> Path:
    """Run ultralytics' exporter on a copy of ``pt`` in a scratch folder and move the result to ``out``.

    Ultralytics writes its export next to the checkpoint; working on a copy means a file already
    beside the ``.pt`` (the shipped ONNX) is never overwritten.
    """
    from pipeline.core.trust import require_trusted
    from pipeline.core.yolo import YOLO
    from pipeline.stages.infer import ModelError

    require_trusted(pt)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / Path(pt).name
        shutil.copy(pt, copy)
        try:
            model = YOLO(str(copy))
        except Exception as error:  # ultralytics raises many kinds for a file that is not its checkpoint
            raise ModelError(f"cannot load {pt} as an ultralytics checkpoint: {str(error).splitlines()[0][:200]}") \
                from None
        exported = model.export(verbose=False, **settings)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, out)
    return out


def export_onnx(pt: str | Path, imgsz: int | tuple[int, int], out: str | Path, opset: int | None = None,
                dynamic: bool = False) -> Path:
    """Write ``out`` (static batch 1 unless ``dynamic``); the class names go into its metadata.

    ``imgsz``: one side, or (width, height) for a rectangular input (a model trained on squares
    runs on any multiple of 32: a 16:9 picture needs no padding bands).
    """
    width, height = input_dims(imgsz)
    out = _export(pt, out, format="onnx", imgsz=[height, width], opset=opset, dynamic=dynamic, simplify=True)
    _class_map_at_input_size(out, width, height)
    add_logits_output(out)
    _carry_operating_points(pt, out)
    return out


def add_logits_output(path: str | Path) -> bool:
    """Give a semantic model's ONNX file a second output, ``logits``: the head's logits at its own stride,
    before the resize and argmax baked into the graph (a few kilobytes a frame). The vessel evidence
    (``pipeline.stages.evidence``) needs probabilities, not only the class map. False when there is
    nothing to add (an instance model, or the output is already there)."""
    import onnx

    model = onnx.load(str(path))
    argmax = [node for node in model.graph.node if node.op_type == "ArgMax"]
    resize = [node for node in model.graph.node if node.op_type == "Resize" and argmax
              and node.output[0] == argmax[-1].input[0]]
    if not resize or any(output.name == "logits" for output in model.graph.output):
        return False
    logits = resize[0].input[0]
    for node in model.graph.node:  # the tensor is renamed where it is made and wherever it is read
        node.output[:] = ["logits" if name == logits else name for name in node.output]
        node.input[:] = ["logits" if name == logits else name for name in node.input]
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        "logits", onnx.TensorProto.FLOAT, ["batch", "classes", "logits_height", "logits_width"]))
    onnx.save(model, str(path))
    return True


def _carry_operating_points(pt: str | Path, out: Path) -> None:
    """The validated vessel operating points a checkpoint carries (``orsight validate``) go into the ONNX
    file's metadata."""
    import onnx

    from pipeline.core.evidence import METADATA_KEY
    from pipeline.stages.infer import checkpoint_metadata

    points = checkpoint_metadata(pt).get(METADATA_KEY)
    if points:
        model = onnx.load(str(out))
        model.metadata_props.add(key=METADATA_KEY, value=points)
        onnx.save(model, str(out))


def _class_map_at_input_size(path: Path, width: int, height: int) -> None:
    """Make a semantic model's class map the size of its input.

    Ultralytics' semantic head upsamples its logits by 8 (its own stride) before the argmax it
    bakes into the ONNX graph; orsight's stride-4 head would come out at twice the input size,
    and the extra upsample and argmax cost ~6 ms a frame on the CPU. The factor is set to the
    head's real stride. Instance models have no such node and are left as they are.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    argmax = [node for node in model.graph.node if node.op_type == "ArgMax"]
    resize = [node for node in model.graph.node if node.op_type == "Resize" and argmax
              and node.output[0] == argmax[-1].input[0]]
    if not resize:
        return
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)  # a static copy (batch 1, this input size): a dynamic export's shapes are symbols
    del fixed.graph.value_info[:]
    for dim, value in zip(fixed.graph.input[0].type.tensor_type.shape.dim, (1, 3, height, width)):
        dim.Clear()
        dim.dim_value = value
    shapes = {v.name: v.type.tensor_type.shape.dim for v in onnx.shape_inference.infer_shapes(fixed).graph.value_info}
    logits_height = shapes[resize[0].input[0]][2].dim_value
    scales = next(i for i in model.graph.initializer if i.name == resize[0].input[2])
    factor = numpy_helper.to_array(scales)[2]
    if not logits_height or logits_height * factor == height:
        return
    stride = height / logits_height
    scales.CopyFrom(numpy_helper.from_array(np.array([1, 1, stride, stride], np.float32), scales.name))
    for dim in model.graph.output[0].type.tensor_type.shape.dim[-2:]:
        if dim.dim_value:
            dim.dim_value = int(dim.dim_value * stride / factor)
    onnx.save(model, str(path))


def export_tensorrt(pt: str | Path, imgsz: int | tuple[int, int], out: str | Path) -> Path:
    """A TensorRT engine (fp16) where TensorRT and a CUDA device exist; a clear error otherwise."""
    from pipeline.stages.infer import ModelError

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise ModelError("TensorRT is not installed here (pip install tensorrt, on a CUDA machine)") from None
    width, height = input_dims(imgsz)
    return _export(pt, out, format="engine", imgsz=[height, width], half=True, device=0)
