"""Soak: the live path for minutes on end; latency and memory per minute must stay flat, no alert lost.

`orsight run` (1080p phantom at ``--fps`` (60), the `approach` scenario, which raises and clears
alerts over and over) and `orsight display --headless` in processes of their own; this process
subscribes too: passthrough and annotation delays per row (p50 / p99), the resident memory (RSS)
of the publisher and of the display at each row and its slope (MB per minute, least squares over
the rows after the first, the warm-up), and the `alert` topic's `seq` numbers (a gap is a lost
alert message).

    python benchmarks/soak.py [--minutes 30] [--row-seconds 60] [--fps 60] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from machine import describe_machine, write_results

from pipeline.cli.common import stop_display
from pipeline.core.latency import Latencies
from pipeline.transport.zeromq import Receiver


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def alert_seqs(endpoint: str, seen: list[int], stop: threading.Event) -> None:
    """Every ``alert`` message's ``seq``, in arrival order (a subscriber of its own: none is skipped)."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"alert")
    socket.setsockopt(zmq.RCVHWM, 100000)
    socket.connect(endpoint)
    while not stop.is_set():
        if socket.poll(100):
            seen.append(json.loads(socket.recv_multipart()[1])["seq"])
    socket.close()


def percentile_pair(values: Latencies) -> list[float | None]:
    return [round(values.percentile(q), 2) if values.count else None for q in (50, 99)]


def slope_mb_per_min(rows: list[dict], key: str) -> float | None:
    """Least-squares RSS slope over the rows after the first (the warm-up), MB per minute."""
    points = [(row["t_s"] / 60, row[key]) for row in rows[1:]]
    if len(points) < 2:
        return None
    return round(float(np.polyfit(*zip(*points), 1)[0]), 4)


def soak(minutes: float, row_seconds: float, fps: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="orsight-soak-"))
    endpoint = f"ipc://{folder}/soak.sock"
    receiver = Receiver(endpoint, topics=("video", "overlay", "status")).start()
    seqs, stop = [], threading.Event()
    listener = threading.Thread(target=alert_seqs, args=(endpoint, seqs, stop), daemon=True)
    listener.start()
    display = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "display", "--connect", endpoint, "--headless",
                                "--summary", str(folder / "display.json")], stdout=subprocess.DEVNULL)
    publisher = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--source", "phantom:approach",
                                  "--size", "1920x1080", "--fps", str(fps), "--realtime", "--publish", endpoint,
                                  "--summary", str(folder / "run.json")], stdout=subprocess.DEVNULL)
    rows = []
    try:
        while receiver.newest("video") is None:  # the model loaded, the first frame out
            time.sleep(0.2)
        started = time.monotonic()
        for row in range(max(1, round(minutes * 60 / row_seconds))):
            time.sleep(max(0.0, started + (row + 1) * row_seconds - time.monotonic()))
            delays = {}
            for topic in ("video", "overlay"):  # this row's: a fresh set for the next
                delays[topic], receiver.delays_ms[topic] = receiver.delays_ms[topic], Latencies()
            rows.append({"t_s": round(time.monotonic() - started), "rss_mb": round(rss_mb(publisher.pid), 1),
                         "display_rss_mb": round(rss_mb(display.pid), 1),
                         "passthrough_p50_p99_ms": percentile_pair(delays["video"]),
                         "annotation_p50_p99_ms": percentile_pair(delays["overlay"]),
                         "frames": delays["video"].count, "overlays": delays["overlay"].count})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        publisher.send_signal(signal.SIGTERM)
        publisher.wait(timeout=60)
        stop_display(display)
        time.sleep(0.5)
        stop.set()
        listener.join()
        receiver.stop()
    lost = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if b > a + 1) + (seqs[0] if seqs else 0)
    first, last = rows[0], rows[-1]
    return {
        "machine": describe_machine(), "minutes": minutes, "rows": rows,
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
        "run_rss_slope_mb_per_min": slope_mb_per_min(rows, "rss_mb"),
        "display_rss_slope_mb_per_min": slope_mb_per_min(rows, "display_rss_mb"),
        "display_exit": display.returncode, "fps": fps,
        "passthrough_p99_last_over_first": _ratio(last["passthrough_p50_p99_ms"][1], first["passthrough_p50_p99_ms"][1]),
        "annotation_p99_last_over_first": _ratio(last["annotation_p50_p99_ms"][1], first["annotation_p50_p99_ms"][1]),
        "alert_messages": len(seqs), "alert_messages_lost": lost,
        "publisher_exit": publisher.returncode,
    }


def _ratio(a, b):
    return round(a / b, 3) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--row-seconds", type=float, default=60.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = soak(args.minutes, args.row_seconds, args.fps)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    write_results("soak", "Soak: latency and memory over time", result, result["rows"])


if __name__ == "__main__":
    main()
