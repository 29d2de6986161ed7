"""Live latency: passthrough and annotation delay, fps and drops for 1080p30 phantom input.

Runs the real live path (capture thread, AI worker, ZeroMQ publisher) and the real display
(`orsight display --headless`, its own process) over `ipc://` and `tcp://127.0.0.1` (video in shared
memory, the default on both) and over TCP with 6 MB `raw-bgr8` frames, with the
model at full speed and slowed to 10 fps. Delays are capture -> display receive (wall clock).

    python benchmarks/live_latency.py [--seconds 20] [--model PATH] [--json FILE]
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine, write_results

from pipeline.cli.common import stop_display
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.runtime.live import LiveOptions, run_live
from pipeline.sources.capture import open_source
from pipeline.stages.infer import load_model
from pipeline.transport.zeromq import Publisher, default_video_encoding


class PacedModel:
    """The model, held back so that it starts at most once per ``period``: the AI runs at 1/period fps."""

    def __init__(self, model, period: float):
        self.model, self.period, self.next_start = model, period, 0.0
        self.reads, self.writes = model.reads, model.writes  # a stage like the model it wraps

    def __call__(self, packet):
        time.sleep(max(0.0, self.next_start - time.perf_counter()))
        self.next_start = time.perf_counter() + self.period
        return self.model(packet)


RECEIVE_ONLY = """
import json, sys, time
from pipeline.display.viewer import percentiles
from pipeline.transport.zeromq import Receiver
receiver = Receiver(sys.argv[1], topics=("video", "overlay", "status")).start()
while not ((s := receiver.newest("status")) and s.header.get("final")):
    time.sleep(0.05)
receiver.stop()
json.dump({"received": receiver.counts, "passthrough_delay_ms": receiver.delays_ms["video"].percentiles(),
           "annotation_delay_ms": receiver.delays_ms["overlay"].percentiles()}, open(sys.argv[2], "w"))
"""


def measure(model, endpoint: str, seconds: float, period: float | None, size=(1920, 1080), fps=30.0,
            compose_display: bool = True, video_encoding: str = "auto") -> dict:
    stages = build_graph(model, PipelineConfig())
    if period:
        stages.model = PacedModel(model, period)
    publisher = Publisher(endpoint)
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "display.json"
        command = ["-m", "pipeline.cli", "display", "--connect", endpoint, "--headless", "--summary", str(report)] \
            if compose_display else ["-c", RECEIVE_ONLY, endpoint, str(report)]
        display = subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL)
        try:
            publisher.wait_for_subscriber(timeout=30)
            time.sleep(0.5)
            live = run_live(open_source("phantom:default", size=size, fps=fps), stages, publisher,
                            LiveOptions(frames=int(seconds * fps), realtime=True,
                                                   video_encoding=video_encoding))
            stop_display(display) if compose_display else display.wait(timeout=60)
        finally:
            publisher.close()
            if display.poll() is None:
                display.kill()
        shown = json.loads(report.read_text())
    encoding = default_video_encoding(endpoint) if video_encoding == "auto" else video_encoding
    return {"endpoint": endpoint.split(":")[0], "video_encoding": encoding, "model_speed": f"slowed to {1 / period:.0f} fps" if period else "full",
            "subscriber": "orsight display (composites, same host)" if compose_display else "receiver only",
            "fps_capture": live["fps_capture"], "fps_ai": live["fps_ai"], "drops": live["drops"],
            "frames": live["frames_captured"], "received_video": shown["received"]["video"],
            "passthrough_ms": shown["passthrough_delay_ms"], "annotation_ms": shown["annotation_delay_ms"],
            "stage_ms_p50": live["stage_ms_p50"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = load_model(args.model)
    socket_dir = tempfile.mkdtemp(prefix="orsight-bench-")
    rows = []
    links = ((f"ipc://{socket_dir}/live.sock", "auto"), ("tcp://127.0.0.1:5591", "auto"),
             ("tcp://127.0.0.1:5591", "raw-bgr8"))  # the defaults (shared memory), and 6 MB frames through TCP
    for compose_display, (endpoint, encoding), period in itertools.product((True, False), links, (None, 0.1)):
        r = measure(model, endpoint, args.seconds, period, compose_display=compose_display, video_encoding=encoding)
        rows.append(r)
        print(f"{r['subscriber'][:14]:14s} {r['endpoint']:4s} {r['video_encoding']:8s} {r['model_speed']:18s} fps {r['fps_capture']:5.1f}/"
              f"{r['fps_ai']:5.1f} drops {r['drops']:4d}  passthrough p50/p95/p99 {r['passthrough_ms']['p50']}/"
              f"{r['passthrough_ms']['p95']}/{r['passthrough_ms']['p99']} ms  annotation p50/p95/p99 "
              f"{r['annotation_ms']['p50']}/{r['annotation_ms']['p95']}/{r['annotation_ms']['p99']} ms", flush=True)
    machine = describe_machine(model=model.description, input="phantom:default 1920x1080 @ 30 fps, realtime")
    result = {"machine": machine, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    write_results("live_latency", "Live latency: capture -> display, ms (p50 / p95 / p99)", result, rows)


if __name__ == "__main__":
    main()
