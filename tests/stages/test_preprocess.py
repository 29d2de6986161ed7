import cv2
import numpy as np
import pytest

from pipeline.core.packet import FramePacket
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from pipeline.stages.preprocess.geometry import PAD_VALUE, fitted_input, fov_crop, model_input, plan_geometry


def test_geometry_maps_input_corners_back_to_crop_corners():
    geometry = plan_geometry((1920, 1080), (300, 0, 1320, 1080), 320)
    x0, y0, x1, y1 = geometry.content_box()
    corners = geometry.to_source(np.array([[x0, y0], [x1, y1]]))
    assert corners == pytest.approx(np.array([[300, 0], [1620, 1080]]), abs=2)


def test_fov_crop_is_the_circle_square_clipped_to_the_frame():
    assert fov_crop((960, 540, 600), 1920, 1080) == (360, 0, 1200, 1080)
    assert fov_crop(None, 640, 480) == (0, 0, 640, 480)


def test_tensor_is_rgb_scaled_chw_with_grey_bars():
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0], image[..., 2] = 255, 10  # blue picture
    packet = LetterboxPreprocess(64, crop_to_fov=False)(FramePacket.capture(image, 0, "test"))
    tensor = packet.tensor
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert tensor[0, 2, 32, 32] == pytest.approx(1.0) and tensor[0, 0, 32, 32] == pytest.approx(10 / 255)
    assert tensor[0, :, 0, 32] == pytest.approx(PAD_VALUE / 255)  # letterbox bar on top
    assert packet.geometry.pad == (0, 16)


def test_phantom_frame_is_cropped_to_its_field_of_view():
    scene = PhantomScene(1280, 720)
    image, truth = scene.render(0)
    packet = LetterboxPreprocess(320)(FramePacket.capture(image, 0, "phantom"))
    x, y, w, h = packet.geometry.crop
    assert abs(w - 2 * truth.fov[2]) < 4 and abs(x - (truth.fov[0] - truth.fov[2])) < 3
    reference = cv2.resize(image[y:y + h, x:x + w], (320, 320), interpolation=cv2.INTER_LINEAR)
    expected = reference[..., ::-1].transpose(2, 0, 1) / 255
    assert np.abs(packet.tensor[0] - expected).max() < 1e-6


def test_a_fitted_input_spends_the_pixel_budget_on_the_picture():
    assert fitted_input((708, 708), (384, 384)) == (384, 384)  # a scope's circle: square
    assert fitted_input((1280, 720), (384, 384)) == (512, 288)  # full-frame 16:9: no bands, scale 0.4 vs 0.3
    assert fitted_input((770, 480), (384, 384)) == (480, 288)  # Endoscapes' crop: scale 0.6 vs 0.5
    for crop in ((1920, 1080), (640, 480), (480, 640), (1000, 300)):
        width, height = fitted_input(crop, (384, 384))
        assert width % 32 == height % 32 == 0 and width * height <= 384 * 384
        assert min(width / crop[0], height / crop[1]) >= 384 / max(crop)  # never smaller than in the square


def test_the_preprocess_takes_the_picture_shape_only_where_the_model_takes_any_shape():
    class Model:
        input_size, fixed_input = (384, 384), False

    image = np.full((720, 1280, 3), 90, np.uint8)  # no endoscope circle: the whole frame
    packet = LetterboxPreprocess(**model_input(Model()))(FramePacket.capture(image, 0, "x"))
    assert packet.tensor.shape == (1, 3, 288, 512) and packet.geometry.pad == (0, 0)
    Model.fixed_input = True
    assert LetterboxPreprocess(**model_input(Model()))(FramePacket.capture(image, 0, "x")).tensor.shape == \
        (1, 3, 384, 384)
    assert LetterboxPreprocess(**model_input(Model(), 320))(FramePacket.capture(image, 0, "x")).tensor.shape == \
        (1, 3, 320, 320)  # an explicit --imgsz is taken as it is
