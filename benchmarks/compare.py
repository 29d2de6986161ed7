"""orsight side by side with the bare model and with the plain ultralytics loop, quiet and loaded.

Same video (the phantom at 1080p, or --video), same weights (the shipped model: orsight's CPU
default is its int8 ONNX, `orsight quantize`; the float ONNX it was quantized from runs in the
``_float`` rows, and that one's ``.pt`` twin in ultralytics), same input budget, systems
interleaved round by round in one run, each in its own process (CPU and peak RSS are that
process's own):

* ``bare``: the model on preprocessed tensors, nothing else (the ceiling); ``bare_float``: its float twin;
* ``replay``: ``orsight replay`` (every frame: decode, AI, overlay, H.264, records);
* ``live``: ``orsight run --realtime`` (newest frame) with ``orsight display --headless`` subscribed,
  as shipped (the governor may lower the input size to keep masks fresh);
* ``live_fixed``: the same with ``--no-governor``: the model's input budget throughout, as the others;
* ``live_float``: ``live`` with the float ONNX (the very weights ultralytics runs);
* ``ultralytics``: the loop a user writes: ``YOLO(pt).predict(video, stream=True)``,
  ``result.plot()``, a ZeroMQ send of the picture (every frame of the file, as fast as it goes);
* ``ultralytics_live``: the same loop on a live feed: a camera thread plays the video at its own
  rate and keeps only the newest frame (what ultralytics' stream loader does for a camera or RTSP
  source, which a file cannot be made to be), the loop predicts, plots and sends it.

``--load`` runs everything again with a busy process beside it. Latency: capture to published
overlay (live: the mask as the display receives it, which it draws over the video itself, so no
`overlay` picture is drawn or encoded; ultralytics: the loop's frame-to-send time, what it would
add to a live feed at best; ultralytics_live: capture to send, the wait for the loop included, as
orsight live's; bare: one inference). Fresh share: displayed frames whose
mask is at most the stale limit (120 ms) older (ultralytics: its overlays against a display at
the video's rate). JSON and a Markdown table in --out.

    python benchmarks/compare.py [--quick] [--load] [--video FILE | --fps 30] [--rounds 3] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from machine import describe_machine  # noqa: E402

from pipeline.cli.common import stop_display  # noqa: E402
from pipeline.core.packet import FramePacket  # noqa: E402
from pipeline.display.viewer import STALE_MS, percentiles  # noqa: E402
from pipeline.runtime.video import probe  # noqa: E402
from pipeline.stages.infer import default_model  # noqa: E402

SYSTEMS = ("bare", "bare_float", "replay", "live", "live_fixed", "live_float", "ultralytics", "ultralytics_live")
LIVE_SYSTEMS = ("live", "live_fixed", "live_float")
FIELDS = ("fps", "latency_ms", "fresh_share", "cpu_share", "peak_rss_mb")
BUSY = "while True: pass"


def float_twin(model: Path) -> Path:
    """The float ONNX an int8 file was quantized from (beside it, named in its metadata), or the file itself."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_modelmeta().custom_metadata_map.get("float_model")
    return model.with_name(name) if name else model


def model_for(system: str, model: Path) -> Path:
    """The file ``system`` runs: ultralytics the float twin's ``.pt``, the ``_float`` rows the float ONNX."""
    if system.startswith("ultralytics"):
        return float_twin(model).with_suffix(".pt")
    return float_twin(model) if system.endswith("_float") else model


def write_phantom_video(path: Path, frames: int, size=(1920, 1080), fps: float = 30.0) -> None:
    """The phantom's approach scene as an H.264 file (what a recorded case looks like)."""
    from pipeline.display.recorder import Recorder
    from pipeline.sources.phantom import PhantomScene

    scene = PhantomScene(*size, scenario="approach")
    with Recorder(path, fps, live=False) as recorder:
        for frame in range(frames):
            recorder.write(scene.render(frame)[0], round(frame / fps * 1e9))


# ---- workers: each prints one JSON object ----------------------------------------------------
def worker_bare(video: str, model_path: str, budget: int) -> dict:
    from pipeline.runtime.config import PipelineConfig
    from pipeline.runtime.graph import build_graph
    from pipeline.runtime.video import read_frames
    from pipeline.stages.infer import load_model

    model = load_model(model_path)
    preprocess = build_graph(model, PipelineConfig(imgsz=None)).preprocess
    tensors = [preprocess(FramePacket.capture(image, i, "bench")).tensor.copy() for i, image in read_frames(video)]
    model.forward(tensors[0])
    times = []
    for tensor in tensors:
        started = time.perf_counter()
        model.forward(tensor)
        times.append((time.perf_counter() - started) * 1e3)
    return {"fps": len(times) / (sum(times) / 1e3), "latency_ms": percentiles(times), "fresh_share": None,
            "input": list(preprocess.plan.geometry.input_size)}


worker_bare_float = worker_bare


def worker_replay(video: str, model_path: str, budget: int) -> dict:
    from pipeline.runtime.replay import ReplayOptions, replay_videos

    with tempfile.TemporaryDirectory() as out:
        (result,), _ = replay_videos([video], Path(out), model_path, ReplayOptions(progress=False))
    return {"fps": result["throughput_fps"], "latency_ms": None, "fresh_share": None}


def worker_ultralytics(video: str, model_path: str, budget: int) -> dict:
    import zmq

    from pipeline.core.yolo import YOLO

    model = YOLO(model_path)
    socket = zmq.Context.instance().socket(zmq.PUB)
    socket.bind("tcp://127.0.0.1:*")
    sent, took = [], []
    last = time.perf_counter()
    for result in model.predict(video, stream=True, imgsz=budget, verbose=False):
        picture = result.plot()
        socket.send(picture.tobytes(), copy=False)
        now = time.perf_counter()
        sent.append(now)
        took.append((now - last) * 1e3)
        last = now
    socket.close(linger=0)
    took, sent = took[1:], sent[1:]  # the first includes loading
    return {"fps": len(took) / (sum(took) / 1e3), "latency_ms": percentiles(took),
            "fresh_share": _fresh_share_of(np.array(sent), np.array(took) / 1e3, probe(video).fps)}


def worker_ultralytics_live(video: str, model_path: str, budget: int) -> dict:
    import threading

    import cv2
    import zmq

    from pipeline.core.yolo import YOLO

    model = YOLO(model_path)
    capture = cv2.VideoCapture(video)
    period = 1 / probe(video).fps
    model.predict(capture.read()[1], imgsz=budget, verbose=False)  # loaded before the camera starts, as orsight's
    newest, ended = [], threading.Event()  # [(picture, captured at)], at most one: the newest
    arrived = threading.Condition()

    def camera() -> None:
        due = time.perf_counter()
        while (read := capture.read())[0]:
            time.sleep(max(0.0, due - time.perf_counter()))  # the frame comes out of the camera at its time
            due += period
            with arrived:
                newest[:] = [(read[1], time.perf_counter())]
                arrived.notify()
        ended.set()
        with arrived:
            arrived.notify()

    socket = zmq.Context.instance().socket(zmq.PUB)
    socket.bind("tcp://127.0.0.1:*")
    threading.Thread(target=camera, daemon=True).start()
    sent, took = [], []
    while True:
        with arrived:
            arrived.wait_for(lambda: newest or ended.is_set())
            if not newest:
                break
            (frame, captured), = newest
            newest.clear()
        picture = model.predict(frame, imgsz=budget, verbose=False)[0].plot()
        socket.send(picture.tobytes(), copy=False)
        sent.append(time.perf_counter())
        took.append((sent[-1] - captured) * 1e3)
    socket.close(linger=0)
    return {"fps": (len(sent) - 1) / (sent[-1] - sent[0]), "latency_ms": percentiles(took),
            "fresh_share": _fresh_share_of(np.array(sent), np.array(took) / 1e3, 1 / period)}


def _fresh_share_of(sent_s: np.ndarray, latency_s: np.ndarray, fps: float) -> float:
    """Share of display refreshes (at ``fps``) whose newest overlay shows a frame at most the stale limit old."""
    captured = sent_s - latency_s
    shown = np.arange(sent_s[0], sent_s[-1], 1 / fps)
    newest = np.searchsorted(sent_s, shown, side="right") - 1
    return float(np.mean((shown - captured[newest]) * 1e3 <= STALE_MS))


def worker_live(video: str, model_path: str, budget: int, governor: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        endpoint = f"ipc://{folder}/live.sock"
        run_json, display_json = Path(folder) / "run.json", Path(folder) / "display.json"
        display = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "display", "--connect", endpoint,
                                    "--headless", "--summary", str(display_json)], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # the display subscribes before the first frame
        started = time.perf_counter()  # CPU share over the process's whole life, as its CPU time is
        run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--source", video, "--realtime",
                                "--model", model_path, "--publish", endpoint, "--summary", str(run_json),
                                "--governor" if governor else "--no-governor"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(run.pid, 0)
        seconds = time.perf_counter() - started
        stop_display(display)
        live, shown = json.loads(run_json.read_text()), json.loads(display_json.read_text())
    return {"fps": live["fps_ai"], "latency_ms": shown["annotation_delay_ms"],
            "fresh_share": 1 - shown["frames_stale"] / max(1, shown["frames_shown"]),
            "passthrough_ms": shown["passthrough_delay_ms"],
            "operating_point": live["operating_point"], "process": _usage(usage, seconds)}


def worker_live_fixed(video: str, model_path: str, budget: int) -> dict:
    return worker_live(video, model_path, budget, governor=False)


worker_live_float = worker_live


def _usage(usage, seconds: float) -> dict:
    """CPU share of the whole machine and peak RSS of a finished process."""
    return {"cpu_share": round((usage.ru_utime + usage.ru_stime) / seconds / os.cpu_count(), 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


# ---- the run ---------------------------------------------------------------------------------
def measure(system: str, video: Path, model: Path, budget: int, loaded: bool) -> dict:
    """One system running ``model`` (its file: :func:`model_for`) in its own process, beside a busy one when
    ``loaded``; its figures."""
    hog = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
    try:
        started = time.perf_counter()
        worker = subprocess.Popen([sys.executable, __file__, "--worker", system, "--video", str(video),
                                   "--model", str(model), "--budget", str(budget)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        output = worker.stdout.read()
        _, status, usage = os.wait4(worker.pid, 0)
        seconds = time.perf_counter() - started
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if status != 0 or not output.strip():
        raise RuntimeError(f"{system} worker failed (status {status})")
    result = json.loads(output.strip().splitlines()[-1])
    result.update(result.pop("process", None) or _usage(usage, seconds))
    return {**result, "model": model.name}


def summarise(runs: list[dict]) -> dict:
    """Medians over the rounds: fps, latency percentiles, fresh share, CPU share, peak RSS."""
    def median(key, sub=None):
        values = [(r[key] or {}).get(sub) if sub else r[key] for r in runs]
        values = [v for v in values if v is not None]
        return round(float(np.median(values)), 3) if values else None

    return {"fps": median("fps"), "latency_ms": {p: median("latency_ms", p) for p in ("p50", "p95", "p99")},
            "fresh_share": median("fresh_share"), "cpu_share": median("cpu_share"),
            "peak_rss_mb": median("peak_rss_mb"), "model": runs[-1]["model"],
            **({"passthrough_p99_ms": median("passthrough_ms", "p99")} if "passthrough_ms" in runs[0] else {}),
            **({"operating_point": runs[-1]["operating_point"]} if "operating_point" in runs[0] else {})}


def ratios(figures: dict) -> dict:
    """orsight over the ultralytics loop and over the bare model."""
    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    bare, replay, loop = figures["bare"], figures["replay"], figures["ultralytics"]
    against = {}
    for ours in LIVE_SYSTEMS:
        for theirs in ("ultralytics", "ultralytics_live"):
            against[f"{ours}_fps_over_{theirs}"] = ratio(figures[ours]["fps"], figures[theirs]["fps"])
            against[f"{ours}_p99_over_{theirs}_p99"] = ratio(figures[ours]["latency_ms"]["p99"],
                                                             figures[theirs]["latency_ms"]["p99"])
    return {**against, "bare_fps_over_bare_float": ratio(bare["fps"], figures["bare_float"]["fps"]),
            "replay_fps_over_ultralytics": ratio(replay["fps"], loop["fps"]),
            "replay_fps_over_bare": ratio(replay["fps"], bare["fps"]),
            "live_fps_over_bare": ratio(figures["live"]["fps"], bare["fps"])}


def markdown(result: dict) -> str:
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; video: {result['video']}; "
             f"{result['rounds']} round(s), medians.", "",
             "| condition | system | input | fps | latency p50 / p95 / p99 ms | fresh overlay | CPU share | "
             "peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for condition, figures in result["conditions"].items():
        for system in SYSTEMS:
            f = figures[system]
            latency = " / ".join("-" if f["latency_ms"][p] is None else f"{f['latency_ms'][p]:.1f}"
                                 for p in ("p50", "p95", "p99"))
            fresh = "-" if f["fresh_share"] is None else f"{f['fresh_share']:.0%}"
            size = "x".join(map(str, f["operating_point"]["input_size"])) if "operating_point" in f else "budget"
            lines.append(f"| {condition} | {system} | {size} | {f['fps']:.2f} | {latency} | {fresh} | "
                         f"{f['cpu_share']:.0%} | {f['peak_rss_mb']:.0f} |")
    versus = [(ours, theirs) for theirs in ("ultralytics", "ultralytics_live") for ours in LIVE_SYSTEMS]
    lines += ["", "| condition | " + " | ".join(f"{ours} / {theirs} fps, p99" for ours, theirs in versus)
              + " | replay / ultralytics fps | replay / bare fps | bare / bare_float fps |",
              "|---|" + "---|" * (len(versus) + 3)]
    for condition, r in result["ratios"].items():
        pairs = [f"{r[f'{ours}_fps_over_{theirs}']}, {r[f'{ours}_p99_over_{theirs}_p99']}" for ours, theirs in versus]
        lines.append(f"| {condition} | {' | '.join(pairs)} | {r['replay_fps_over_ultralytics']} | "
                     f"{r['replay_fps_over_bare']} | {r['bare_fps_over_bare_float']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: 4 s of video, one round")
    parser.add_argument("--load", action="store_true", help="also with a busy process beside each system")
    parser.add_argument("--video", default=None, help="a video file (default: the phantom at 1080p)")
    parser.add_argument("--seconds", type=float, default=None, help="phantom video length (default 15, --quick 4)")
    parser.add_argument("--fps", type=float, default=30.0, help="phantom video frame rate (a 1080p60 scope: 60)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all systems, interleaved")
    parser.add_argument("--model", default=None,
                        help="orsight's .onnx (default: the shipped CPU model; see float_twin for the others')")
    parser.add_argument("--budget", type=int, default=320, help="model input budget (side) for both")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for compare.json and compare.md")
    parser.add_argument("--worker", choices=SYSTEMS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = Path(args.model) if args.model else default_model("cpu")
    if args.worker:
        print(json.dumps(globals()[f"worker_{args.worker}"](args.video, str(model), args.budget)))
        return
    seconds = args.seconds or (4.0 if args.quick else 15.0)
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as folder:
        video = Path(args.video) if args.video else Path(folder) / "phantom-1080p.mp4"
        if not args.video:
            write_phantom_video(video, int(seconds * args.fps), fps=args.fps)
        conditions = {"quiet": False, **({"loaded": True} if args.load else {})}
        runs = {c: {s: [] for s in SYSTEMS} for c in conditions}
        files = {system: model_for(system, model) for system in SYSTEMS}
        for round_ in range(rounds):
            for condition, loaded in conditions.items():
                for system in SYSTEMS:
                    runs[condition][system].append(measure(system, video, files[system], args.budget, loaded))
                    print(f"round {round_ + 1} {condition} {system}: {runs[condition][system][-1]['fps']:.2f} fps",
                          file=sys.stderr)
    figures = {c: {s: summarise(r) for s, r in systems.items()} for c, systems in runs.items()}
    result = {"machine": describe_machine(model=model.name, budget=args.budget),
              "video": args.video or f"phantom:approach 1920x1080, {seconds:g} s at {args.fps:g} fps, H.264",
              "rounds": rounds, "conditions": figures, "ratios": {c: ratios(f) for c, f in figures.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    (out / "compare.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
