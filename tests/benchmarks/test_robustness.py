"""benchmarks/robustness.py: every condition alters the picture and nothing else, and the run reports each."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from robustness import CONDITIONS  # noqa: E402


@pytest.mark.parametrize("name", [n for n, transform in CONDITIONS.items() if transform is not None])
def test_each_condition_changes_the_picture_keeps_its_shape_and_repeats(name):
    image = np.random.default_rng(0).integers(40, 200, (120, 160, 3), dtype=np.uint8)
    changed = CONDITIONS[name](image.copy(), 3)
    assert changed.shape == image.shape and changed.dtype == np.uint8
    assert np.abs(changed.astype(int) - image).mean() > 1.0
    assert np.array_equal(changed, CONDITIONS[name](image.copy(), 3))  # the same for every model compared


def test_the_benchmark_scores_every_condition_asked_for(tmp_path):
    from pipeline.training.dataset import write_phantom_dataset

    write_phantom_dataset(tmp_path / "ph", n=10, size=160)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"), "--data", str(tmp_path / "ph"),
                             "--image-glob", "images/val/*", "--mask-pattern", "masks/val/{stem}.png",
                             "--mapping", "1:0,2:1", "--ignore", "255", "--conditions", "original,smoke,jpeg 30",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert [row["condition"] for row in report["rows"]] == ["original", "smoke", "jpeg 30"]
    for row in report["rows"]:
        assert set(row["classes"]) == {"instrument", "vessel"} and row["frames"] >= 1
        for figures in row["classes"].values():
            assert set(figures) == {"iou", "precision", "recall", "detection_rate", "false_alarm_rate"}
    assert report["rows"][0]["classes"]["instrument"]["iou"] > 0.5  # the shipped model sees the phantom
    table = (tmp_path / "out" / "robustness.md").read_text()
    assert "| smoke |" in table and "instrument IoU (change)" in table
