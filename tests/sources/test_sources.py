import cv2
import numpy as np
import pytest

from pipeline.sources.capture import SourceError, open_source
from tests.helpers import write_video


def test_video_file_gives_every_frame_then_ends(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path)
    source = open_source(str(path))
    frames = []
    while (item := source.read()) is not None:
        frames.append(item[0])
    source.close()
    assert len(frames) == 12 and frames[0].shape == (120, 160, 3)
    assert source.fps == pytest.approx(25) and not source.live
    assert frames[5].mean() == pytest.approx(100, abs=6)


def test_image_folder_in_name_order(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    source = open_source(str(tmp_path), fps=10)
    means = [source.read()[0].mean() for _ in range(3)]
    assert means == [0, 50, 100] and source.read() is None


def test_phantom_source_carries_truth():
    source = open_source("phantom:approach", size=(320, 240), fps=15)
    image, truth = source.read()
    assert image.shape == (240, 320, 3) and truth.class_map.shape == (240, 320) and source.fps == 15


@pytest.mark.parametrize("spec, message", [
    ("missing-video.mp4", "no such file"),
    ("foo://camera", "unknown source scheme"),
    ("phantom:nope", "unknown phantom scenario"),
    ("/dev/video99", "no such video device"),
])
def test_bad_sources_are_clear_errors(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_corrupt_video_is_refused(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(SourceError):
        open_source(str(path))


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))
