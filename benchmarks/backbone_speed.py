"""EfficientNet-Lite0/1/2 side by side: the same decoder and head, exported to ONNX, timed in
ONNX Runtime on one thread at each input budget (the speed half of picking the backbone); or any
architectures given with ``--archs`` (e.g. a decoder variant against the shipped one).

Weights are the ImageNet backbones with an untrained decoder: inference time does not depend
on the values. Each model is timed round-robin (one run of each in turn) so drift hits all alike.

    python benchmarks/backbone_speed.py [--budgets 256,320,384] [--runs 60] [--out benchmarks/results]
    python benchmarks/backbone_speed.py --archs effnetlite0-sem,yolo26n-sem-p2 --out /tmp/decoders
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from machine import describe_machine  # noqa: E402

from pipeline.display.viewer import percentiles  # noqa: E402
from pipeline.stages.preprocess.geometry import fitted_input  # noqa: E402

ARCHS = ("effnetlite0-sem", "effnetlite1-sem", "effnetlite2-sem")
PICTURE = (770, 480)  # Endoscapes' picture (width, height): each budget is fitted to it as the pipeline does
WARM_UP = 3  # untimed rounds first


def build_sessions(folder: Path, archs: list[str], budgets: list[int]) -> dict:
    import onnxruntime as ort

    from pipeline.core.trust import trust
    from pipeline.training.build import model_from_yaml
    from pipeline.training.efficientnet import register
    from pipeline.training.export import export_onnx

    register()
    os.environ["ORSIGHT_TRUSTED_MODELS"] = str(folder / "trusted.txt")  # the checkpoints written here, nothing else
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {}
    for arch in archs:
        model = model_from_yaml(arch, names=("instrument", "vessel"))  # the shipped classes
        parameters = sum(p.numel() for p in model.model.parameters())
        pt = folder / f"{arch}.pt"
        model.save(str(pt))
        trust(pt)
        for budget in budgets:
            size = fitted_input(PICTURE, (budget, budget))  # (width, height), as the pipeline fits it
            onnx = export_onnx(pt, size, folder / f"{arch}-{budget}.onnx")
            session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
            sessions[(arch, budget)] = (session, size, parameters)
    return sessions


def time_sessions(sessions: dict, runs: int) -> dict:
    """Round-robin timing: one inference of each model in turn, ``runs`` rounds after a warm-up."""
    feeds = {key: {s.get_inputs()[0].name: np.random.rand(1, 3, height, width).astype(np.float32)}
             for key, (s, (width, height), _) in sessions.items()}
    took = {key: [] for key in sessions}
    for round_index in range(runs + WARM_UP):
        for key, (session, _, _) in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds[key])
            if round_index >= WARM_UP:
                took[key].append((time.perf_counter() - start) * 1e3)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="256,320,384", help="input budgets (side of the square pixel count)")
    parser.add_argument("--archs", default=",".join(ARCHS), help="architectures to time (orsight's names)")
    parser.add_argument("--runs", type=int, default=60, help="timed inferences per model and budget")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for backbone_speed.json/.md")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        sessions = build_sessions(Path(folder), args.archs.split(","), budgets)
        took = time_sessions(sessions, args.runs)
    rows = [{"arch": arch, "budget": budget, "input": "x".join(map(str, size)),
             "parameters_m": round(parameters / 1e6, 2), "ms": percentiles(took[(arch, budget)])}
            for (arch, budget), (_, size, parameters) in sessions.items()]
    machine = describe_machine()
    result = {"machine": machine, "runs": args.runs, "rows": rows}
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores, ONNX Runtime {machine['onnxruntime']}, "
             f"one thread, {args.runs} runs each, round-robin.", "",
             "| backbone | parameters (M) | budget | input | p50 ms | p95 ms | p99 ms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['parameters_m']} | {r['budget']} | {r['input']} | {r['ms']['p50']} | "
              f"{r['ms']['p95']} | {r['ms']['p99']} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backbone_speed.json").write_text(json.dumps(result, indent=2))
    (out / "backbone_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
