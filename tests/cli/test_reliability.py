"""Inputs that must not run: crafted checkpoints, bad settings, sources that give nothing (exit status 2)."""
import os

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import orsight


class _Payload:
    """Unpickling this runs a shell command: what a crafted .pt can do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_never_runs(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "it-ran"
    torch.save({"model": _Payload(marker)}, evil)
    for command in (["run", "--model", str(evil), "--frames", "1"],
                    ["replay", "x.mp4", "--out", str(tmp_path / "out"), "--model", str(evil)],
                    ["eval", "--data", str(tmp_path), "--model", str(evil)],
                    ["export", "--model", str(evil), "--imgsz", "320", "--out", str(tmp_path / "m.onnx")]):
        result = orsight(*command)
        assert result.returncode == 2 and "not trusted" in result.stderr, result.stderr
        assert not marker.exists()
    asked = orsight("trust", str(evil))
    assert asked.returncode == 2 and "--yes" in asked.stderr and "sha256" in asked.stdout  # shown, not trusted
    assert "not trusted" in orsight("run", "--model", str(evil), "--frames", "1").stderr
    trusted = orsight("trust", str(evil), "--yes")
    assert trusted.returncode == 0 and "trusted (sha256" in trusted.stdout  # the user's own, deliberate choice
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle, not a zip archive
    assert "not a torch checkpoint" in orsight("trust", str(tmp_path / "legacy.pt"), "--yes").stderr


@pytest.mark.parametrize("setting, words", [
    ('conf: "high"', "conf must be a number"), ("conf: 7", "conf must be in (0, 1]"), ("iou: -1", "iou must be in"),
    ("stale_ms: -5", "stale_ms must be in"), ('mm_per_px: "abc"', "mm_per_px must be a number"),
    ("overlay_view: sideways", "overlay_view must be one of"), ("crop_to_fov: 3", "crop_to_fov must be true or false"),
    ("alerts: {vessel_proximity: {nonsense: 1}}", "alert rule vessel_proximity"),
])
def test_a_bad_setting_is_named_before_anything_runs(tmp_path, setting, words):
    (tmp_path / "c.yaml").write_text(setting + "\n")
    result = orsight("run", "--config", str(tmp_path / "c.yaml"), "--frames", "1")
    assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unreadable_image_mid_folder_ends_the_run_with_status_2(tmp_path):
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((120, 160, 3), 80, np.uint8))
    (tmp_path / "1.png").write_bytes(b"not a picture")
    result = orsight("run", "--source", str(tmp_path), "--publish", "ipc://" + str(tmp_path / "s"))
    assert result.returncode == 2 and "cannot read image" in result.stderr


def test_a_truncated_video_is_reported_not_taken_for_its_end(tmp_path):
    path = tmp_path / "clip.avi"  # MJPEG in AVI: frames stay decodable up to the cut
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for index in range(60):
        writer.write(np.full((120, 160, 3), index * 4, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = orsight("run", "--source", str(path), "--publish", "ipc://" + str(tmp_path / "s"))
    assert result.returncode == 2 and "truncated" in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize("args, words", [
    (["run", "--frames", "1", "--summary", "/proc/no/such/summary.json"], "cannot write --summary"),
    (["display", "--headless", "--record", "/proc/no/such/shown.mp4"], "cannot write --record"),
    (["run", "--frames", "1", "--size", "99999x99999"], "size must be between"),
])
def test_outputs_and_sizes_are_checked_before_the_work(args, words):
    result = orsight(*args, timeout=60)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_replay_and_calibration_inputs_that_are_not_what_they_claim(tmp_path):
    (tmp_path / "results").write_text("a file where a folder should be")
    (tmp_path / "scope.yaml").write_text("x: [\n")
    for args, words in ((["replay", "x.mp4", "--out", str(tmp_path / "results")], "is a file, not a folder"),
                        (["run", "--frames", "1", "--calibration", str(tmp_path / "scope.yaml")],
                         "not an OpenCV YAML calibration file")):
        result = orsight(*args, timeout=60)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
