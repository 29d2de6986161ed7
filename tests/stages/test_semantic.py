import numpy as np
import pytest

from pipeline.core.packet import FramePacket, Geometry
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.decode.semantic import decode_semantic
from pipeline.stages.infer import load_model
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from tests.helpers import segment

NAMES, ROLES = ("instrument", "vessel"), ("instrument", "vessel")
# 640x480 source, its central 480x480 square scaled 0.8 into a 384x384 input, no padding
GEOMETRY = Geometry((640, 480), (80, 0, 480, 480), 0.8, (0, 0), (384, 384))


def test_a_class_map_at_twice_the_input_size_lands_in_source_pixels():
    output = np.zeros((1, 768, 768), np.uint8)
    output[0, 200:400, 100:300] = 2  # vessel, input pixels 50-150 x 100-200
    output[0, 600:700, 600:700] = 1  # instrument
    segmentation = decode_semantic([output], GEOMETRY, NAMES, ROLES)
    expected = np.zeros((480, 640), np.uint8)
    expected[125:250, 80 + 62:80 + 188] = 2  # (input / 0.8) + crop origin
    found = segmentation.class_map == 2
    assert (found & (expected == 2)).sum() / (found | (expected == 2)).sum() > 0.97
    assert segmentation.class_ids.tolist() == [1, 0]  # largest region first
    assert segmentation.scores.tolist() == [1.0, 1.0]  # a class map carries no confidence
    assert np.allclose(segmentation.boxes[0], [142.5, 125, 267.5, 250], atol=1)
    assert segmentation.masks.shape == (2, 480, 640) and (segmentation.masks[0] == found).mean() > 0.999


def test_logits_give_regions_with_their_mean_probability_and_padding_is_never_a_finding():
    geometry = Geometry((640, 360), (0, 0, 640, 360), 0.6, (0, 84), (384, 384))  # letterboxed, bands of 84 px
    logits = np.zeros((1, 3, 96, 96), np.float32)
    logits[0, 0] = 2.0
    logits[0, 1, 40:50, 10:30] = 4.0  # an instrument in the picture
    logits[0, 2, 0:10, 40:60] = 9.0  # a "vessel" in the top padding band
    segmentation = decode_semantic([logits], geometry, NAMES, ROLES)
    assert segmentation.class_ids.tolist() == [0] and not (segmentation.class_map == 2).any()
    assert 0.5 < segmentation.scores[0] < np.exp(4) / (np.exp(4) + np.exp(2) + 1)  # the inner pixels, edges less
    ys, xs = np.nonzero(segmentation.class_map == 1)
    assert abs(ys.mean() - (45 * 4 - 84) / 0.6) < 3 and abs(xs.mean() - 20 * 4 / 0.6) < 3


def test_out_of_range_classes_and_the_endoscope_circle():
    geometry = Geometry((480, 480), (0, 0, 480, 480), 0.8, (0, 0), (384, 384), fov=(240, 240, 200))
    output = np.full((1, 384, 384), 7, np.uint8)  # a class the model names do not have
    output[0, :20, :20] = 1  # instrument, but outside the circle
    segmentation = decode_semantic([output], geometry, NAMES, ROLES)
    assert not segmentation.class_map.any()


def test_semantic_onnx_and_pt_agree_and_load_as_semantic(untrained_semantic_models):
    onnx, pt = load_model(untrained_semantic_models["onnx"]), load_model(untrained_semantic_models["pt"])
    assert onnx.task == pt.task == "semantic"
    assert onnx.names == pt.names == NAMES and onnx.input_size == (320, 320)
    assert onnx.forward(np.zeros((1, 3, 320, 320), np.float32))[0].shape == (1, 320, 320)  # not ultralytics' 2x
    for frame in (0, 50):
        image = PhantomScene(640, 360).render(frame)[0]
        a = segment(pt, LetterboxPreprocess(320)(FramePacket.capture(image, 0, "p"))).segmentation
        b = segment(onnx, LetterboxPreprocess(320)(FramePacket.capture(image, 0, "p"))).segmentation
        assert a.class_map.shape == (360, 640) and (a.class_map == b.class_map).mean() > 0.99


def test_a_semantic_architecture_needs_the_semantic_dataset_file(tmp_path):
    from pipeline.training.dataset import write_phantom_dataset
    from pipeline.training.train import train

    data = write_phantom_dataset(tmp_path / "ph", n=4, size=128)
    semantic = (tmp_path / "ph" / "semantic.yaml").read_text()
    assert "masks_dir: masks" in semantic and "0: background" in semantic
    with pytest.raises(ValueError, match="semantic.yaml"):
        train(data, tmp_path / "run", arch="yolo26n-sem-p2", epochs=1)
