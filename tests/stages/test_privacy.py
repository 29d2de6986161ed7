"""The privacy stage: out-of-body frames found at once, left only after several inside ones, hidden when
shared."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.packet import FramePacket
from pipeline.core.privacy import BLANK, INSIDE, OUTSIDE, pseudonym, shared_picture
from pipeline.sources.phantom import PhantomScene
from pipeline.sources.room import RoomScene
from pipeline.stages.privacy import RETURN_AFTER, OutOfBodyModel, PrivacyGate
from tests.helpers import orsight

OUT_OF_BODY = Path(__file__).resolve().parents[3] / "shared" / "data" / "outofbody"


@pytest.fixture(scope="module")
def model():
    return OutOfBodyModel()


def _detail(image: np.ndarray) -> int:
    """The largest difference between a picture and a smooth copy of it: edges, features, faces."""
    return int(np.abs(image.astype(int) - cv2.GaussianBlur(image, (0, 0), 8).astype(int)).max())


def test_an_outside_picture_is_hidden_in_every_mode_but_off():
    room = RoomScene(640, 360).render(0, 30.0)
    blurred = shared_picture(room, OUTSIDE, "blur")
    top = slice(0, 360 // 3)  # above the banner: the lamp, the face
    assert _detail(room[top]) > 60 and _detail(blurred[top]) < 10  # no face, no edge left, only colours
    assert (np.abs(blurred.astype(int) - (0, 191, 255)).max(axis=2) < 60).sum() > 100  # the amber banner
    blank = shared_picture(room, OUTSIDE, "blank")
    assert (blank.max(axis=2) == 0).mean() > 0.8
    assert shared_picture(room, OUTSIDE, "off") is room
    assert shared_picture(room, INSIDE, "blur") is room and shared_picture(room, BLANK, "blur") is room


def test_the_gate_goes_out_at_once_and_back_in_only_after_confident_frames(model):
    scene = PhantomScene(640, 360, fps=30.0, scenario="outside")  # the room from 2 s (frame 60) to 4 s (120)
    gate = PrivacyGate(model, every=1)
    states = {i: gate(FramePacket(i, "phantom", scene.render(i)[0], 0, 0)).privacy for i in range(50, 135)}
    assert all(states[i] == INSIDE for i in range(50, 60))
    assert all(states[i] == OUTSIDE for i in range(60, 120))  # the first room frame: outside
    first_inside = min(i for i in range(120, 135) if states[i] == INSIDE)
    assert first_inside == 120 + RETURN_AFTER - 1  # the inside view came back: held out for RETURN_AFTER judgements


def test_judged_every_third_frame_it_is_out_within_three_frames(model):
    scene = PhantomScene(640, 360, fps=30.0, scenario="outside")
    gate = PrivacyGate(model, every=3)
    states = [gate(FramePacket(i, "phantom", scene.render(i)[0], 0, 0)).privacy for i in range(58, 70)]
    assert states.index(OUTSIDE) <= 2 + 2  # frame 60 is the room's first; judged at 58, 61, 64...


def test_uniform_frames_are_blank_and_caught_between_judgements(model):
    gate = PrivacyGate(model, every=5)
    tissue = PhantomScene(320, 180).render(0)[0]
    menu = np.full((180, 320, 3), (200, 140, 70), np.uint8)
    cv2.rectangle(menu, (150, 80), (170, 100), (255, 255, 255), -1)  # a recorder's menu: an icon on blue
    assert gate(FramePacket(0, "x", tissue, 0, 0)).privacy == INSIDE
    assert gate(FramePacket(1, "x", np.zeros_like(tissue), 0, 0)).privacy == BLANK  # not a judged frame
    assert model.judge(menu).state(model.threshold) == BLANK


def test_a_pseudonym_is_stable_keyed_and_free_of_the_name(tmp_path):
    first, second = tmp_path / "Smith_John_MRN1234.mp4", tmp_path / "copy.mp4"
    first.write_bytes(b"frames" * 1000)
    second.write_bytes(b"frames" * 1000)
    name = pseudonym(first, b"k" * 32)
    assert name == pseudonym(second, b"k" * 32) != pseudonym(first, b"j" * 32)
    assert "Smith" not in name and "1234" not in name


def _labelled_folder(folder: Path) -> Path:
    """Phantom tissue (inside), the synthetic room (outside) and black frames (blank), with labels.csv."""
    folder.mkdir()
    scene, room = PhantomScene(640, 360, fps=30.0), RoomScene(640, 360)
    rows = []
    for i in range(4):
        for label, image in (("inside", scene.render(i * 7)[0]), ("outside", room.render(i * 40, 30.0)),
                             ("blank", np.full((360, 640, 3), 3 * i, np.uint8))):
            cv2.imwrite(str(folder / f"{label}{i}.jpg"), image)
            rows.append({"file": f"{label}{i}.jpg", "label": label})
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_eval_privacy_writes_the_figures(tmp_path):
    folder = _labelled_folder(tmp_path / "frames")
    result = orsight("eval-privacy", "--data", str(folder), "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["outside_recall"] == 1.0 and metrics["inside_false_blank"] == 0.0
    assert metrics["confusion"]["blank"]["blank"] == 4


def test_eval_privacy_refuses_an_unknown_label_in_one_line(tmp_path):
    folder = _labelled_folder(tmp_path / "frames")
    (folder / "labels.csv").write_text("file,label\ninside0.jpg,in-body\n")
    result = orsight("eval-privacy", "--data", str(folder))
    assert result.returncode == 2 and "in-body" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not OUT_OF_BODY.is_dir(), reason="../shared/data/outofbody not present")
def test_the_shipped_model_on_the_real_out_of_body_frames(tmp_path):
    """The frames it was trained on (the held-out figures are the model card's): a check that it loads and
    reads real frames as the training did, not a measure of generalisation."""
    result = orsight("eval-privacy", "--data", str(OUT_OF_BODY), "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["outside_recall"] >= 0.95 and metrics["inside_false_blank"] <= 0.03
