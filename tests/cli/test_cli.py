"""The command line as a user meets it: real processes, exit status 2 on bad input."""
import json

import pytest

from tests.helpers import frame_times, orsight


@pytest.mark.parametrize("args, words", [
    (["run", "--source", "nowhere.mp4"], "no such file"),
    (["run", "--source", "bogus://x"], "unknown source scheme"),
    (["run", "--source", "/dev/video42"], "no such video device"),
    (["run", "--device", "cuda"], "no CUDA device"),
    (["run", "--frames", "many"], "must be a whole number above 0"),
    (["run", "--fps", "0", "--realtime"], "must be a number above 0"),
    (["run", "--imgsz", "0", "--frames", "1"], "input size must be"),
    (["run", "--source", "7"], "cannot open camera 7"),
    (["run", "--source", "99999999999999999999"], "out of range"),
    (["run", "--source", "rtsp://127.0.0.1:9/none"], "cannot open rtsp://"),
    (["run", "--ai-niceness", "99"], "from 0 to 19"),
    (["demo", "--frames", "-3"], "must be a whole number above 0"),
    (["display", "--web", "--port", "70000"], "from 1 to 65535"),
    (["dataset", "phantom", "--n", "0", "--out", "nowhere"], "must be a whole number above 0"),
    (["replay", "x.mp4", "--out", "nowhere", "--chunk-frames", "0"], "must be a whole number above 0"),
    (["export", "--model", "x.pt", "--imgsz", "-5", "--out", "x.onnx"], "input size must be"),
    (["train", "--data", "x.yaml", "--out", "nowhere", "--hours", "-1"], "must be a number above 0"),
    (["train", "--data", "x.yaml", "--out", "nowhere", "--batch", "0"], "must be a whole number above 0"),
])
def test_bad_input_is_one_line_and_status_2(args, words):
    result = orsight(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr


def test_wrong_model_file_and_bad_config(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_text("not onnx")
    result = orsight("run", "--model", str(model))
    assert result.returncode == 2 and "cannot load ONNX model" in result.stderr
    config = tmp_path / "config.yaml"
    config.write_text("alert_enter_px: 10\nfavourite_colour: blue\n")
    result = orsight("run", "--config", str(config))
    assert result.returncode == 2 and "favourite_colour" in result.stderr


@pytest.mark.parametrize("option, words", [(("--init", "no.pt"), "no such checkpoint"),
                                           (("--degrees", "200"), "0-180 degrees"),
                                           (("--average", "-1"), "epochs to average"),
                                           (("--photometric", "-1"), "photometric strength"),
                                           (("--weight-decay", "-1"), "weight decay")])
def test_a_bad_training_option_is_one_line_and_status_2(tmp_path, option, words):
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: {0: instrument, 1: vessel}\n")
    result = orsight("train", "--data", str(data), "--out", str(tmp_path / "run"), *option)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_is_status_2(untrained_models, free_tcp_endpoint):
    from pipeline.transport.zeromq import Publisher

    holder = Publisher(free_tcp_endpoint)
    try:
        result = orsight("run", "--model", str(untrained_models["onnx"]), "--publish", free_tcp_endpoint,
                         "--frames", "5")
    finally:
        holder.close()
    assert result.returncode == 2 and "cannot publish on" in result.stderr.strip().splitlines()[-1]


def test_run_on_a_video_file_ends_cleanly_with_a_summary(untrained_models, free_tcp_endpoint, tmp_path):
    from tests.helpers import write_video

    video = tmp_path / "clip.mp4"
    write_video(video, frames=15)
    result = orsight("run", "--source", str(video), "--model", str(untrained_models["onnx"]),
                     "--publish", free_tcp_endpoint, "--summary", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_captured"] == 15 == summary["frames_analysed"] and summary["state"] == "ended"


def test_demo_writes_video_and_summary(untrained_models, tmp_path):
    result = orsight("demo", "--frames", "45", "--out", str(tmp_path), "--model", str(untrained_models["onnx"]))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    # a busy display skips frames (the newest wins): what counts is that it followed the video to its last frame
    assert summary["frames"] == 45 and 1 <= summary["frames_shown"] <= 45
    assert summary["passthrough_delay_ms"]["p99"] is not None
    parts = summary["passthrough_publisher_ms"]["p50"], summary["passthrough_transit_ms"]["p50"]
    assert all(part is not None and part >= 0 for part in parts)  # where the video's delay is spent
    assert summary["annotation_delay_ms"]["p50"] >= summary["annotation_transit_ms"]["p50"] >= 0
    times = frame_times(tmp_path / "display.mp4")  # H.264, timed by the capture clock: 45 frames at 30 fps
    assert len(times) >= summary["frames_shown"]  # and NO SIGNAL pictures once the video ended, if any
    shown = times[:summary["frames_shown"]]
    assert all(a < b for a, b in zip(shown, shown[1:]))  # in capture order, never a frame twice
    assert shown[-1] == pytest.approx(44 / 30, abs=0.3)  # up to the video's last frame
    assert "passthrough_delay_ms" in result.stdout


def test_run_with_a_calibration_undistorts_and_gives_millimetres(untrained_models, free_tcp_endpoint, tmp_path):
    from tests.helpers import PINHOLE

    calibration = tmp_path / "scope.yaml"
    PINHOLE.save(calibration)
    result = orsight("run", "--model", str(untrained_models["onnx"]), "--publish", free_tcp_endpoint,
                     "--calibration", str(calibration), "--working-distance", "60", "--size", "640x480",
                     "--frames", "5", "--summary", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_analysed"] == 5 and summary["errors"] == 0
    assert "undistort" in summary["stage_ms_p50"] and "redistort" in summary["stage_ms_p50"]
    result = orsight("run", "--model", str(untrained_models["onnx"]), "--calibration", str(calibration))
    assert result.returncode == 2 and "is for 640x480 frames, the source gives 1280x720" in result.stderr
    result = orsight("run", "--working-distance", "50")
    assert result.returncode == 2 and "needs --calibration" in result.stderr


def test_resuming_a_semantic_run_without_its_recorded_loss_is_refused(tmp_path):
    """A run folder from before orsight recorded the loss: resuming would silently switch to ultralytics' default
    loss, so it is one line and status 2 instead."""
    import shutil

    from pipeline.core.trust import SHIPPED

    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(SHIPPED / "orsight-endoscapes-lite0-sem-320.pt", weights / "last.pt")  # trusted: the shipped hash
    result = orsight("train", "--data", "x.yaml", "--out", str(tmp_path / "run"), "--resume")
    assert result.returncode == 2 and "orsight-recipe.yaml" in result.stderr and "Traceback" not in result.stderr


def test_the_readmes_cholecseg8k_eval_works_as_written_and_the_default_mapping_is_refused(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "video01" / "video01_00080"
    folder.mkdir(parents=True)
    for frame in (1, 2):
        cv2.imwrite(str(folder / f"frame_{frame}_endo.png"), np.full((64, 64, 3), 90, np.uint8))
        mask = np.full((64, 64, 3), 50, np.uint8)  # CholecSeg8k's watershed masks: grey saved as colour
        mask[:, 20:40] = 31  # grasper
        cv2.imwrite(str(folder / f"frame_{frame}_endo_watershed_mask.png"), mask)
    nested = ("--image-glob", "**/*_endo.png", "--mask-pattern", "{dir}/{stem}_watershed_mask.png")
    refused = orsight("eval", "--data", tmp_path, *nested)
    assert refused.returncode == 2 and "31 (2560 px)" in refused.stderr and "Traceback" not in refused.stderr
    scored = orsight("eval", "--data", tmp_path, *nested, "--mapping", "31:0,32:0", "--allow-unmapped")
    assert scored.returncode == 0, scored.stderr
    assert "2 frames" in scored.stdout


def test_keys_are_never_replaced_without_force(tmp_path):
    assert orsight("keys", "--out", tmp_path / "keys").returncode == 0
    secret = (tmp_path / "keys" / "server.key_secret").read_bytes()
    again = orsight("keys", "--out", tmp_path / "keys")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "keys" / "server.key_secret").read_bytes() == secret
    assert orsight("keys", "--out", tmp_path / "keys", "--force").returncode == 0
    assert (tmp_path / "keys" / "server.key_secret").read_bytes() != secret
