"""What the vessel evidence's temporal filter does to a flickering false vessel, and what it costs.

The phantom's busy scene through the live path's stages, with a false vessel injected into the
model's output (an 80x12-pixel streak of vessel logits 6 above the rest at model input, probability ~0.95
calibrated, away from the scene's vessels) in one frame of every ``--every``; the same frames with and
without the filter, side by side.
Counted: injected streaks that were drawn at all (advisory or HIGH) and that reached HIGH, the
phantom's own vessel frames at HIGH, and the evidence stage's time per frame (1080p).

    python benchmarks/vessel_flicker.py [--frames 300] [--every 10] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from machine import provenance, provenance_lines  # noqa: E402

from pipeline.cli.common import write_json  # noqa: E402
from pipeline.core.packet import FramePacket  # noqa: E402
from pipeline.runtime.config import PipelineConfig  # noqa: E402
from pipeline.runtime.graph import build_graph  # noqa: E402
from pipeline.sources.phantom import PhantomScene  # noqa: E402
from pipeline.stages.evidence import VesselEvidence  # noqa: E402
from pipeline.stages.infer import load_model  # noqa: E402


def inject(packet: FramePacket, rng: np.random.Generator) -> tuple[int, int]:
    """A false vessel streak in the model's outputs (logits and class map); returns its input-pixel corner."""
    class_map, logits = packet.outputs
    height, width = class_map.shape[-2:]
    for _ in range(100):  # away from the scene's own vessels (a streak joining one would be judged with it)
        x, y = int(rng.integers(8, width - 88)), int(rng.integers(8, height - 20))
        if not (class_map[..., y - 8:y + 20, x - 8:x + 88] == 2).any():
            break
    class_map[..., y:y + 12, x:x + 80] = 2
    logits[0, :, y // 4:(y + 12) // 4, x // 4:(x + 80) // 4] = np.array([0.0, 0.0, 6.0], np.float32)[:, None, None]
    return x, y


def run(model, frames: int, every: int, temporal: bool) -> dict:
    graph = build_graph(model, PipelineConfig())
    graph.evidence = VesselEvidence(model.operating_points, temporal=temporal)
    scene, rng = PhantomScene(1920, 1080, fps=30, scenario="default", seed=1), np.random.default_rng(0)
    counts = {"injected": 0, "injected_drawn": 0, "injected_high": 0, "frames_high": 0, "evidence_ms": []}
    for frame in range(frames):
        packet = FramePacket(frame, "phantom", scene.render(frame)[0], int(frame / 30 * 1e9), 0)
        for stage in (*graph.prepare, graph.model):
            packet = stage(packet)
        spot = inject(packet, rng) if frame % every == every // 2 else None
        packet = graph.evidence(graph.decode(packet))
        segmentation = packet.segmentation
        counts["evidence_ms"].append(packet.timings_ms["evidence"])
        counts["frames_high"] += bool((segmentation.class_map == 2).any())
        if spot is None:
            continue
        counts["injected"] += 1
        centre = segmentation.geometry.to_source(np.array([spot[0] + 40, spot[1] + 6], np.float32))
        x, y = int(centre[0]), int(centre[1])
        high = segmentation.class_map[y, x] == 2
        advisory = any(r.box[0] <= x <= r.box[2] and r.box[1] <= y <= r.box[3] for r in segmentation.advisory)
        counts["injected_drawn"] += bool(high or advisory)
        counts["injected_high"] += bool(high)
    times = np.array(counts.pop("evidence_ms"))
    counts["evidence_ms_p50"], counts["evidence_ms_p99"] = (round(float(v), 3) for v in np.percentile(times, [50, 99]))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    model = load_model(args.model)
    rows = {label: run(model, args.frames, args.every, temporal) for label, temporal in
            (("with the filter", True), ("each frame alone", False))}
    result = {**provenance(model=model.description), "frames": args.frames, "every": args.every, "rows": rows}
    out = Path(args.out)
    write_json(out / "vessel_flicker.json", result)
    keys = ("injected", "injected_drawn", "injected_high", "frames_high", "evidence_ms_p50", "evidence_ms_p99")
    lines = [f"# Vessel evidence: a false vessel in 1 frame of {args.every}, with and without the temporal filter",
             "", *provenance_lines(result), f"{model.description}; phantom busy scene, 1080p, {args.frames} frames",
             "", "| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {label} | " + " | ".join(str(row[k]) for k in keys) + " |" for label, row in rows.items()]
    (out / "vessel_flicker.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
