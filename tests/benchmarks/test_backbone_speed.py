"""benchmarks/backbone_speed.py exports and times the three backbones."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_backbone_speed_times_every_backbone_at_every_budget(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backbone_speed.py"), "--budgets", "160,192",
                             "--runs", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "backbone_speed.json").read_text())["rows"]
    expected = [(f"effnetlite{v}-sem", b) for v in (0, 1, 2) for b in (160, 192)]
    assert [(r["arch"], r["budget"]) for r in rows] == expected
    assert all(r["ms"]["p50"] > 0 for r in rows)
    parameters = [r["parameters_m"] for r in rows[::2]]
    assert parameters == sorted(parameters) and parameters[0] < parameters[-1]  # Lite0 < Lite1 < Lite2


def test_backbone_speed_times_the_architectures_asked_for(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backbone_speed.py"), "--budgets", "160",
                             "--archs", "effnetlite2-sem,effnetlite0-sem", "--runs", "2", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "backbone_speed.json").read_text())["rows"]
    assert [r["arch"] for r in rows] == ["effnetlite2-sem", "effnetlite0-sem"]
    assert rows[0]["parameters_m"] > rows[1]["parameters_m"]  # in the order asked for, not the default one
