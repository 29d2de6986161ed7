"""What the privacy stage costs per frame at 1080p, and how fast it hides the room.

The phantom's ``outside`` scenario at 1920x1080 (the scope withdrawn into a synthetic operating
room from 2 s to 4 s of every 6), through the privacy stage as live runs it: the model on every
frame, on every 3rd (the live default) and on every 5th, side by side in one run. Per setting:
the stage's time per frame (mean, which is what the capture thread pays on average, and
percentiles), the frames from the room's first frame to the first frame judged outside (worst
over every phase of the judgements against the room's start), and the inside frames judged
outside (on the way back in: the bias to safety).

    python benchmarks/privacy_cost.py [--frames 360] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from machine import write_results  # noqa: E402

from pipeline.core.packet import FramePacket  # noqa: E402
from pipeline.core.privacy import INSIDE, OUTSIDE  # noqa: E402
from pipeline.sources.phantom import PhantomScene  # noqa: E402
from pipeline.stages.privacy import OutOfBodyModel, PrivacyGate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=360)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    scene = PhantomScene(1920, 1080, fps=30.0, scenario="outside")
    frames = [scene.render(i) for i in range(args.frames)]
    model = OutOfBodyModel()
    rows = []
    truth = [t.outside for _, t in frames]
    entries = [i for i in range(1, len(truth)) if truth[i] and not truth[i - 1]]
    for every in (1, 3, 5):
        late, times = [], []
        for phase in range(every):  # the room may start on any frame between two judgements
            gate, states = PrivacyGate(model, every), {}
            for index, (image, _) in enumerate(frames[phase:], start=phase):
                packet = gate(FramePacket(index, "phantom:outside", image, 0, 0))
                states[index] = packet.privacy
                if phase == 0:
                    times.append(packet.timings_ms["privacy"])
            late += [next(j for j in range(i, len(frames)) if states[j] == OUTSIDE) - i for i in entries]
            if phase == 0:
                missed = sum(truth[i] and s == INSIDE for i, s in states.items())
                wrong = sum((not truth[i]) and s != INSIDE for i, s in states.items())
        rows.append({"model every": f"{every} frame{'s' if every > 1 else ''}",
                     "ms per frame: mean": round(float(np.mean(times)), 3),
                     "p50 / p95 / p99": " / ".join(f"{np.percentile(times, q):.2f}" for q in (50, 95, 99)),
                     "frames late into the room: worst of every phase": max(late),
                     "room frames shown as inside": missed, "inside frames hidden (the way back)": wrong})
    write_results("privacy_cost", "Privacy stage: cost per 1080p frame and delay to hide the room",
                  {"frames": args.frames, "size": [1920, 1080]}, rows, args.out)
    print((args.out / "privacy_cost.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
