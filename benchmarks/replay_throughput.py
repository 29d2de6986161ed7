"""Replay throughput vs the bare model, and Ray on 2 local workers vs one process.

Same backend (ONNX Runtime, same threads), same input size, same frames, same run:
* bare model: ``model.forward`` on the preprocessed tensors of every frame, nothing else;
* replay: ``orsight replay``'s single-process path (decode, preprocess, model, masks,
  analysis, alerts, overlay, MP4 encode, JSONL), frames/s over the whole video;
* Ray: the same video in chunks on a local Ray with 2 workers (one ORT thread each).

    python benchmarks/replay_throughput.py [--frames 600] [--size 1280x720] [--model PATH] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
from machine import describe_machine, write_results

from pipeline.core.packet import FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.runtime.replay import ReplayOptions, replay_videos
from pipeline.runtime.video import read_frames
from pipeline.sources.phantom import PhantomScene
from pipeline.stages.infer import load_model


def write_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    scene = PhantomScene(*size, scenario="default")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for frame in range(frames):
        writer.write(scene.render(frame)[0])
    writer.release()


def bare_model_fps(video: Path, model_path, threads: int | None) -> float:
    model = load_model(model_path, threads=threads)
    preprocess = build_graph(model, PipelineConfig()).preprocess  # the graph's own
    tensors = [preprocess(FramePacket.capture(image, i, "bench")).tensor.copy() for i, image in read_frames(str(video))]
    model.forward(tensors[0])  # warm-up
    started = time.perf_counter()
    for tensor in tensors:
        model.forward(tensor)
    return len(tensors) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: cores - 1)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    folder = Path(tempfile.mkdtemp(prefix="orsight-replay-bench-"))
    video = folder / "phantom.mp4"
    write_video(video, args.frames, size)

    bare = bare_model_fps(video, args.model, args.threads)
    options = ReplayOptions(progress=False, threads=args.threads)
    (single,), _ = replay_videos([str(video)], folder / "single", args.model, options)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    replay_videos([str(video)], folder / "ray", args.model, ReplayOptions(progress=False, threads=1,
                                                                          chunk_frames=args.frames // 4), use_ray=True)
    ray_fps = args.frames / (time.perf_counter() - started)
    ray.shutdown()
    identical = (folder / "single/phantom/frames.jsonl").read_bytes() == (folder / "ray/phantom/frames.jsonl").read_bytes()
    result = {
        "machine": describe_machine(),
        "video": f"phantom:default {size[0]}x{size[1]}, {args.frames} frames, mp4v",
        "bare_model_fps": round(bare, 2), "replay_fps": single["throughput_fps"],
        "replay_over_bare": round(single["throughput_fps"] / bare, 3),
        "ray_2_workers_fps": round(ray_fps, 2), "ray_over_single": round(ray_fps / single["throughput_fps"], 3),
        "ray_results_identical": identical,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    write_results("replay_throughput", "Replay throughput against the bare model, and on Ray", result,
                  [{k: v for k, v in result.items() if k != "machine"}])


if __name__ == "__main__":
    main()
