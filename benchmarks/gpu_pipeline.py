"""GPU benchmarks (needs CUDA + CuPy + torch): preprocess kernels and capture -> publish latency.

* preprocess of a 1080p frame to a 640 tensor, CUDA events, p50/p99 over 500 runs:
  the fused CuPy kernel vs the equivalent torch ops vs ultralytics' own preprocessing;
* instrument-vessel distance and the overlay of a 1080p frame: device stages (CUDA events)
  vs the CPU stages (wall clock), p50/p99;
* capture -> publish (overlay received) for 1080p60 phantom input, `--device cuda`, p50/p99.

    python benchmarks/gpu_pipeline.py [--model PATH.pt] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def cuda_events_ms(run, repeat: int = 500) -> dict:
    import torch

    timings = []
    for _ in range(repeat + 20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        timings.append(start.elapsed_time(end))
    p50, p99 = np.percentile(timings[20:], [50, 99])
    return {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4)}


def preprocess_comparison(image: np.ndarray, size: int = 640) -> dict:
    import cupy
    import torch
    import torch.nn.functional as F

    from pipeline.core.packet import FramePacket
    from pipeline.stages.preprocess.cuda import CudaLetterboxPreprocess

    fused = CudaLetterboxPreprocess(size, crop_to_fov=True)
    packet = FramePacket.capture(image, 0, "bench")
    fused(packet)  # geometry, staging buffers, kernel compiled
    device_frame = cupy.asarray(image)
    geometry = fused.plan.geometry
    x0, y0, x1, y1 = geometry.content_box()
    cx, cy, cw, ch = geometry.crop

    def kernel_only():  # the frame already on the device: the kernel alone
        with fused.stream:
            fused.kernel(((size + 31) // 32, (size + 7) // 8), (32, 8), (
                device_frame, np.int32(image.shape[1]), np.int32(image.shape[0]), np.uint64(0), np.uint64(0),
                np.int32(cx), np.int32(cy), np.int32(cw), np.int32(ch), np.int32(x0), np.int32(y0),
                np.int32(x1 - x0), np.int32(y1 - y0), np.float32(0), np.float32(0), np.float32(-1),
                np.float32(114 / 255), fused.tensor, np.int32(size), np.int32(size)))

    torch_frame = torch.from_numpy(image).cuda()

    def torch_ops():
        crop = torch_frame[cy:cy + ch, cx:cx + cw].permute(2, 0, 1)[None].float()
        resized = F.interpolate(crop, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        out = torch.full((1, 3, size, size), 114.0, device="cuda")
        out[:, :, y0:y1, x0:x1] = resized
        return out.flip(1) / 255.0

    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox((size, size), auto=False)

    def ultralytics_preprocess():  # what YOLO.predict does: host letterbox, then to the device
        boxed = letterbox(image=image)
        tensor = torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)))[None].cuda()
        return tensor.float() / 255.0

    return {"fused_cupy_kernel": cuda_events_ms(kernel_only),
            "fused_cupy_with_upload": cuda_events_ms(lambda: fused(FramePacket.capture(image, 0, "b"))),
            "torch_ops": cuda_events_ms(torch_ops), "ultralytics_preprocess": cuda_events_ms(ultralytics_preprocess)}


def postprocess_comparison(scene) -> dict:
    """Distance and overlay of one 1080p phantom frame (its exact masks): device vs CPU stages."""
    import cupy

    from pipeline.core.packet import DeviceBuffers, FramePacket
    from pipeline.stages.analyse.cpu import MeasureProximity
    from pipeline.stages.analyse.cuda import CudaMeasureProximity
    from pipeline.stages.overlay.cpu import Overlay
    from pipeline.stages.overlay.cuda import CudaOverlay

    image, truth = scene.render(125)  # the approach scenario's instrument close to the vessel
    packet = FramePacket.capture(image, 0, "bench")
    packet.segmentation = truth.segmentation()
    packet.device = DeviceBuffers(cupy.cuda.get_current_stream(), cupy.asarray(image),
                                  cupy.zeros((1, 3, 32, 32), cupy.float32), class_map=cupy.asarray(truth.class_map))
    cpu_analyse, cpu_overlay = MeasureProximity(), Overlay()
    cuda_analyse, cuda_overlay = CudaMeasureProximity(), CudaOverlay()

    def wall_ms(run, repeat: int = 100) -> dict:
        timings = []
        for _ in range(repeat + 5):
            started = time.perf_counter()
            run()
            timings.append((time.perf_counter() - started) * 1e3)
        p50, p99 = np.percentile(timings[5:], [50, 99])
        return {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4)}

    return {"distance_cuda": cuda_events_ms(lambda: cuda_analyse(packet), 100),
            "distance_cpu": wall_ms(lambda: cpu_analyse(packet)),
            "overlay_cuda_incl_download": cuda_events_ms(lambda: cuda_overlay(packet), 100),
            "overlay_cpu": wall_ms(lambda: cpu_overlay(packet))}


def capture_to_publish(model_path: str | None, seconds: float = 10.0) -> dict:
    from pipeline.display.viewer import percentiles
    from pipeline.runtime.config import PipelineConfig
    from pipeline.runtime.graph import build_graph
    from pipeline.runtime.live import LiveOptions, run_live
    from pipeline.sources.capture import open_source
    from pipeline.stages.infer import load_model
    from pipeline.transport.zeromq import Publisher, Receiver

    model = load_model(model_path, device="cuda")
    endpoint = f"ipc://{tempfile.mkdtemp()}/gpu.sock"
    publisher, receiver = Publisher(endpoint), None
    try:
        receiver = Receiver(endpoint, topics=("video", "overlay")).start()
        publisher.wait_for_subscriber(10)
        time.sleep(0.3)
        summary = run_live(open_source("phantom", size=(1920, 1080), fps=60), build_graph(model, PipelineConfig(),
                           device="cuda"), publisher, LiveOptions(frames=int(60 * seconds), realtime=True))
        time.sleep(0.3)
    finally:
        if receiver:
            receiver.stop()
        publisher.close()
    return {"fps_ai": summary["fps_ai"], "drops": summary["drops"], "stage_ms_p50": summary["stage_ms_p50"],
            "passthrough_ms": receiver.delays_ms["video"].percentiles(),
            "capture_to_overlay_ms": receiver.delays_ms["overlay"].percentiles()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=".pt (torch on CUDA) or .onnx (ORT CUDA)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_pipeline: no CUDA device here (this benchmark needs one)")

    from pipeline.sources.phantom import PhantomScene

    image = PhantomScene(1920, 1080).render(10)[0]
    result = {"device": torch.cuda.get_device_name(0), "preprocess_1080p_to_640": preprocess_comparison(image),
              "postprocess_1080p": postprocess_comparison(PhantomScene(1920, 1080, scenario="approach")),
              "capture_to_publish_1080p60": capture_to_publish(args.model)}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
