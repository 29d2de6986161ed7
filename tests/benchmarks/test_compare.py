"""benchmarks/compare.py runs end to end on a few frames and reports every figure."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)


def test_compare_reports_every_field_quiet_and_loaded(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--seconds", "1",
                             "--fps", "25", "--load", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "compare.json").read_text())
    assert {"cpu", "cores"} <= set(report["machine"]) and "at 25 fps" in report["video"]
    for condition in ("quiet", "loaded"):
        for system in compare.SYSTEMS:
            figures = report["conditions"][condition][system]
            assert set(compare.FIELDS) <= set(figures)
            assert figures["fps"] > 0 and 0 < figures["cpu_share"] <= 1 and figures["peak_rss_mb"] > 50
            if system in (*compare.LIVE_SYSTEMS, "ultralytics", "ultralytics_live"):
                assert figures["latency_ms"]["p99"] > 0 and 0 <= figures["fresh_share"] <= 1
        models = {system: figures["model"] for system, figures in report["conditions"][condition].items()}
        assert models["live"] == models["bare"] == "orsight-endoscapes-lite0-sem-320-int8.onnx"  # the CPU default
        assert models["live_float"] == models["bare_float"] == "orsight-endoscapes-lite0-sem-320.onnx"
        assert models["ultralytics"] == models["ultralytics_live"] == "orsight-endoscapes-lite0-sem-320.pt"
        assert report["conditions"][condition]["live"]["operating_point"]["input_size"]
        assert "steps" not in report["conditions"][condition]["live_fixed"]["operating_point"]  # no governor
        assert all(value is not None and value > 0 for value in report["ratios"][condition].values())
    table = (tmp_path / "compare.md").read_text()
    assert "| loaded | ultralytics |" in table and "| loaded | ultralytics_live |" in table
