"""What a benchmark ran on, recorded beside every figure, and the results files it writes."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import onnxruntime


def describe_machine(**extra) -> dict:
    """CPU, cores, Python and ONNX Runtime versions, plus ``extra`` (model, input...)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, **extra}


def provenance(**extra) -> dict:
    """What a results file states beside its figures: date, commit, machine and the command that wrote it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    return {"date": datetime.date.today().isoformat(), "commit": commit, "machine": describe_machine(**extra),
            "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])}


def provenance_lines(facts: dict) -> list[str]:
    """The provenance as the first lines of a results Markdown file."""
    machine = facts["machine"]
    return [f"{facts['date']}, commit {facts['commit']}, {machine['cpu']} with {machine['cores']} cores, Python "
            f"{machine['python']}, ONNX Runtime {machine['onnxruntime']}", f"`{facts['command']}`", ""]


RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, title: str, result: dict, rows: list[dict], out: Path = RESULTS) -> None:
    """``out/NAME.json`` (everything) and ``out/NAME.md``: the title, the provenance and ``rows`` as a table
    (nested figures such as percentiles flattened to ``p50 / p95 / p99``)."""
    out.mkdir(parents=True, exist_ok=True)
    facts = {**provenance(), **result}
    (out / f"{name}.json").write_text(json.dumps(facts, indent=2))

    def cell(value) -> str:
        return " / ".join(str(v) for v in value.values()) if isinstance(value, dict) else str(value)

    keys = list(rows[0]) if rows else []
    lines = [f"# {title}", "", *provenance_lines(facts), "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row[key]) for key in keys) + " |" for row in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
