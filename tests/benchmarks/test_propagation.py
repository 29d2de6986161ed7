"""benchmarks/propagation.py runs end to end on a few frames and reports every figure."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_propagation_reports_held_and_moved_for_every_ai_rate(tmp_path):
    out = tmp_path / "propagation.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "propagation.py"), "--seconds", "0.5",
                             "--size", "320x180", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {"cpu", "cores"} <= set(report["machine"]) and set(report["runs"]) == {"still", "moving"}
    for rows in report["runs"].values():
        assert [row["ai_fps"] for row in rows] == [30.0, 15.0, 10.0]
        for row in rows:
            assert row["frames_scored"] > 0 and row["cost_ms"]["p99"] > 0
            for way in ("held", "moved"):
                assert all(0 <= row["iou"][way][name] <= 1 for name in ("instrument", "vessel"))
    moving = report["runs"]["moving"][-1]["iou"]
    assert moving["moved"]["instrument"] > moving["held"]["instrument"]  # the scope moved: moving the mask helps
    assert "| moving | 10 |" in out.with_suffix(".md").read_text()
