"""The H.264 recorder: colours as given, frames at their times, the final name only when finished."""
import av
import numpy as np
import pytest

from pipeline.display.recorder import Recorder
from tests.helpers import frame_times


def test_recorded_colours_come_back_and_the_file_is_finished_under_its_name(tmp_path):
    picture = np.zeros((120, 160, 3), np.uint8)
    picture[:, :40] = (0, 0, 255)  # red, green, blue and white bars (BGR)
    picture[:, 40:80] = (0, 255, 0)
    picture[:, 80:120] = (255, 0, 0)
    picture[:, 120:] = 255
    path = tmp_path / "shown.mp4"
    recorder = Recorder(path, live=False)
    for index in range(10):
        recorder.write(picture, int(index * 1e9 / 30))
    assert not path.exists()  # still being written: only the .partial file
    recorder.close()
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(decoded) == 10 and frame_times(path)[-1] == pytest.approx(9 / 30, abs=1e-3)
    for bar in range(4):  # inside each bar, away from the chroma edges
        shown = decoded[-1][20:100, bar * 40 + 8:bar * 40 + 32].reshape(-1, 3).mean(0)
        assert np.abs(shown - picture[60, bar * 40 + 20]).max() < 12, (bar, shown)
