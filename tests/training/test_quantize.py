"""`orsight quantize` and the shipped int8 model: int8 where it counts, the same class map as its float source."""

import cv2
import numpy as np
import onnx
import pytest

from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.infer import DEFAULT_CPU_MODEL, DEFAULT_MODEL, default_model, load_model
from pipeline.training.quantize import float_output_layer, quantize_onnx
from tests.helpers import orsight


def _class_maps(path, frames):
    """The model's class map of each phantom frame (its input's size), through the pipeline's preprocessing."""
    model = load_model(path)
    preprocess = build_graph(model, PipelineConfig(imgsz=None)).preprocess
    return [model.forward(preprocess(FramePacket.capture(image, i, "test")).tensor)[0][0]
            for i, image in enumerate(frames)]


def _phantom_frames(seed, count, size=(1280, 720)):
    scene = PhantomScene(*size, seed=seed)
    return [scene.render(frame)[0] for frame in range(0, 30 * count, 30)]


def _agreement(float_path, int8_path, frames):
    """Share of pixels where the two models give the same class, and the IoU of their instrument masks."""
    same, inter, union = [], 0, 0
    for a, b in zip(_class_maps(float_path, frames), _class_maps(int8_path, frames)):
        same.append(np.mean(a == b))
        inter, union = inter + np.sum((a == 1) & (b == 1)), union + np.sum((a == 1) | (b == 1))
    return float(np.mean(same)), inter / union


def test_quantize_writes_an_int8_model_with_a_float_output_layer(tmp_path):
    calibration = tmp_path / "frames"
    calibration.mkdir()
    for index, image in enumerate(_phantom_frames(seed=3, count=4)):
        cv2.imwrite(str(calibration / f"{index}.jpg"), image)
    out = quantize_onnx(DEFAULT_MODEL, [calibration], tmp_path / "int8.onnx", frames=4)
    assert not list(tmp_path.glob("*.partial"))
    graph = onnx.load(str(out))
    kinds = [node.op_type for node in graph.graph.node]
    assert kinds.count("QuantizeLinear") >= 20 and "ArgMax" in kinds
    float_layer = set(float_output_layer(graph))
    dequantized = {node.output[0] for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    logits = next(node for node in graph.graph.node if node.name in float_layer and node.op_type == "Conv")
    assert logits.input[1] not in dequantized  # float weights
    quantized_inputs = {node.input[0] for node in graph.graph.node if node.op_type == "QuantizeLinear"}
    assert logits.output[0] not in quantized_inputs  # float logits: the argmax is not taken on 8-bit values
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    assert metadata["float_model"] == DEFAULT_MODEL.name and "int8" in metadata["quantization"]
    assert load_model(out).names == load_model(DEFAULT_MODEL).names
    # the float model's validated vessel points and its logits output come along
    assert load_model(out).operating_points == load_model(DEFAULT_MODEL).operating_points is not None
    assert [output.name for output in load_model(out).session.get_outputs()] == ["output0", "logits"]
    same, instrument_iou = _agreement(DEFAULT_MODEL, out, _phantom_frames(seed=8, count=3))
    assert same > 0.97 and instrument_iou > 0.9


def test_the_shipped_cpu_model_is_the_float_model_in_int8():
    assert default_model("cpu") == DEFAULT_CPU_MODEL and default_model("cuda") == DEFAULT_MODEL
    metadata = load_model().session.get_modelmeta().custom_metadata_map
    assert load_model().path == DEFAULT_CPU_MODEL and metadata["float_model"] == DEFAULT_MODEL.name
    same, instrument_iou = _agreement(DEFAULT_MODEL, DEFAULT_CPU_MODEL, _phantom_frames(seed=21, count=4))
    assert same > 0.97 and instrument_iou > 0.9


@pytest.mark.parametrize("arguments, message", [
    (["--model", str(DEFAULT_MODEL.with_suffix(".pt"))], "takes an .onnx export"),
    (["--model", "missing.onnx"], "model file not found"),
    (["--model", str(DEFAULT_MODEL), "--calibration", "no-such-folder"], "no such folder"),
])
def test_quantize_refuses_bad_input_in_one_line(tmp_path, arguments, message):
    result = orsight("quantize", "--calibration", tmp_path, "--out", tmp_path / "out.onnx", *arguments, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.onnx").exists()
