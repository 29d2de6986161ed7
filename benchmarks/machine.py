"""What a benchmark ran on: recorded beside every figure."""
from __future__ import annotations

import datetime
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
