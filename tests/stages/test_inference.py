import numpy as np
import pytest

from pipeline.core.classes import class_roles
from pipeline.core.packet import FramePacket
from pipeline.runtime.graph import decode_stage
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.infer import DEFAULT_MODEL, ModelError, load_model
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from tests.helpers import segment


def test_onnx_and_pt_give_the_same_outputs(untrained_models):
    onnx, torch_model = load_model(untrained_models["onnx"]), load_model(untrained_models["pt"])
    assert onnx.names == torch_model.names == ("instrument", "vessel")
    assert onnx.roles == ("instrument", "vessel") and onnx.input_size == (320, 320)
    assert onnx.fixed_input and not torch_model.fixed_input  # a static export runs one shape; torch any
    packet = LetterboxPreprocess(320)(FramePacket.capture(PhantomScene(640, 360).render(3)[0], 0, "phantom"))
    for a, b in zip(onnx.forward(packet.tensor), torch_model.forward(packet.tensor)):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-3


def test_model_and_decode_stages_fill_a_segmentation_in_source_pixels(untrained_models):
    model = load_model(untrained_models["onnx"], conf=0.0001)
    image = PhantomScene(640, 360).render(3)[0]
    packet = model(LetterboxPreprocess(320)(FramePacket.capture(image, 0, "phantom")))
    assert packet.segmentation is None and len(packet.outputs) == 2  # the model gives raw outputs only
    packet = decode_stage(model)(packet)
    segmentation = packet.segmentation
    assert segmentation.class_map.shape == (360, 640) and segmentation.masks.shape[1:] == (360, 640)
    assert {"preprocess", "infer", "decode"} <= set(packet.timings_ms)


def test_wrong_model_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        load_model(junk)
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported model file"):
        load_model(other)


def test_shipped_model_finds_the_instrument_on_a_phantom_frame():
    if not DEFAULT_MODEL.exists():
        pytest.skip("no shipped model")
    model = load_model()
    image, truth = PhantomScene(1280, 720, seed=11).render(40)
    packet = LetterboxPreprocess(model.input_size)(FramePacket.capture(image, 0, "phantom"))
    segmentation = segment(model, packet).segmentation
    found, true = segmentation.role_mask("instrument"), truth.class_map == 1
    assert (found & true).sum() / (found | true).sum() > 0.5


def test_roles_come_from_names_and_overrides():
    assert class_roles(("Grasper", "cystic_artery", "liver")) == ("instrument", "vessel", "other")
    assert class_roles(("tool", "duct"), {"duct": "vessel"}) == ("instrument", "vessel")
    with pytest.raises(ValueError):
        class_roles(("x",), {"x": "organ"})
