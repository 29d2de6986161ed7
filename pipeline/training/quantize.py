"""Quantize: an fp32 ONNX model -> int8 (ONNX Runtime's static QDQ quantization), calibrated on real frames.

    quantize_onnx("model.onnx", ["frames/train/images"], "model-int8.onnx")

On a CPU with integer dot-product instructions (AVX-VNNI, AVX512-VNNI, AMX; ARM's dotprod) the
int8 model runs the convolutions on 8-bit integers; the output layer stays in float (see
:func:`float_output_layer`). The calibration frames go through the pipeline's own preprocessing,
so the activation ranges are those the model meets at run time.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.sources.capture import IMAGE_SUFFIXES
from pipeline.stages.infer import load_model


def calibration_images(folders: list[str | Path], limit: int) -> list[Path]:
    """Up to ``limit`` image files from ``folders``, spread evenly over each folder's sorted files."""
    chosen = []
    per_folder = max(1, limit // len(folders))
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ValueError(f"no such folder: {folder}")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        chosen += [files[i] for i in np.linspace(0, len(files) - 1, min(per_folder, len(files))).round().astype(int)]
    return chosen


def float_output_layer(model) -> list[str]:
    """Names of the nodes that stay in float: the last convolution (the logits) and all after it.

    The class decision (argmax, or the boxes and mask coefficients) is taken on these outputs;
    8-bit logits would flip pixels where two classes are close, the thin vessel first.
    """
    nodes = list(model.graph.node)
    last_conv = max(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    return [node.name for node in nodes[last_conv:]]


class _Tensors(CalibrationDataReader):
    """ONNX Runtime's calibration reader: one input dictionary at a time, None at the end."""

    def __init__(self, name: str, tensors: list[np.ndarray]):
        self.feeds = iter({name: tensor} for tensor in tensors)

    def get_next(self):
        return next(self.feeds, None)


def quantize_onnx(source: str | Path, folders: list[str | Path], out: str | Path, frames: int = 128) -> Path:
    """Write ``out``: ``source`` with int8 weights (per channel, 7-bit range: CPUs without VNNI saturate on
    8-bit weights) and uint8 activations (calibrated min-max)."""
    model = load_model(source)
    if model.fixed_input:
        raise ValueError(f"{source} has a fixed input; quantize a --dynamic export")
    preprocess = build_graph(model, PipelineConfig(imgsz=None)).preprocess
    paths = calibration_images(folders, frames)
    tensors = []
    for index, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        tensors.append(preprocess(FramePacket.capture(image, index, "calibration")).tensor.copy())
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX's own shape inference and graph optimisation; the symbolic pass cannot follow the
        # dynamic height and width through the decoder's resizes, and is not needed for Conv.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(Path(scratch) / "int8.onnx"), _Tensors(model.input_name, tensors),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=float_output_layer(onnx.load(str(prepared))))
        quantized = onnx.load(str(Path(scratch) / "int8.onnx"))
    metadata = dict(model.session.get_modelmeta().custom_metadata_map)
    metadata["quantization"] = (f"int8 static QDQ (onnxruntime), per-channel weights, calibrated min-max on "
                                f"{len(paths)} frames")
    metadata["float_model"] = Path(source).name  # its float twin (and that one's .pt), looked for beside it
    del quantized.metadata_props[:]
    for key, value in metadata.items():
        quantized.metadata_props.add(key=key, value=value)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(quantized.SerializeToString())
    partial.replace(out)
    return out
