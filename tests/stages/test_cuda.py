"""The CUDA path: the fused preprocess's arithmetic against the CPU stage everywhere; the kernels
compiled by NVRTC where CuPy is installed; preprocess and mask decoding on a GPU where there is one."""
import site
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.evidence import OperatingPoint, OperatingPoints
from pipeline.core.packet import DeviceBuffers, FramePacket
from pipeline.runtime.config import PipelineConfig
from pipeline.runtime.graph import build_graph
from pipeline.sources.phantom import INSTRUMENT, VESSEL, PhantomScene, PhantomTruth
from pipeline.stages.analyse.cpu import closest_pair
from pipeline.stages.analyse.cuda import boundary_pair
from pipeline.stages.overlay.cpu import MaskAnnotator
from pipeline.stages.overlay.cuda import colour_table, reference_mask_layer
from pipeline.stages.preprocess.cpu import LetterboxPreprocess
from pipeline.stages.preprocess.cuda import kernel_source, reference_letterbox
from pipeline.stages.preprocess.geometry import model_input
from pipeline.stages.undistort import Undistort
from tests.helpers import PINHOLE, segment

CUDA_INCLUDE_DIRS = [Path(p) / "nvidia" / v / "include" for p in site.getsitepackages() for v in ("cu13", "cu12")]
FRAMES = [("phantom 1920x1080", PhantomScene(1920, 1080).render(5)[0]),
          ("phantom 854x480", PhantomScene(854, 480, seed=2).render(9)[0]),
          ("phantom 720x720", PhantomScene(720, 720, seed=3).render(1)[0]),
          ("random 333x517", np.random.default_rng(0).integers(0, 256, (517, 333, 3), dtype=np.uint8)),
          ("random 1280x400", np.random.default_rng(1).integers(0, 256, (400, 1280, 3), dtype=np.uint8))]

EVERY_VESSEL_HIGH = OperatingPoints(1.0, OperatingPoint(1e-12, 1.0, 0.0), OperatingPoint(1e-12, 1.0, 0.0), "test", 1, 1,
                                    1.0)  # every vessel region HIGH: the class map as the model gave it


def _phantom_truths():
    """Class maps where instrument and vessel are far apart, close, touching and overlapping borders."""
    scene = PhantomScene(640, 360, scenario="approach", seed=4)
    events = scene.approach_events()
    frames = [0, events["touch"] - 20, events["touch"] + 5, events["release"] - 5, events["away"]]
    return [scene.render(frame)[1].class_map for frame in frames]


def _random_blobs(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    class_map = np.zeros((height, width), np.uint8)
    for value in (INSTRUMENT, VESSEL):
        for _ in range(3):
            y, x = rng.integers(0, height), rng.integers(0, width)
            class_map[y:y + rng.integers(1, 30), x:x + rng.integers(1, 30)] = value
    return class_map


CLASS_MAPS = _phantom_truths() + [_random_blobs(seed) for seed in range(6)] + \
    [_random_blobs(seed, 119, 157) for seed in range(6, 30)]  # sizes no multiple of the coarse cell


@pytest.mark.parametrize("index", range(len(CLASS_MAPS)))
def test_boundary_pair_arithmetic_matches_the_cpu_distance(index):
    class_map = CLASS_MAPS[index]
    instrument, vessel = class_map == INSTRUMENT, class_map == VESSEL
    reference, twin = closest_pair(instrument, vessel), boundary_pair(instrument, vessel)
    assert twin.distance_px == pytest.approx(reference.distance_px, abs=1e-3)  # cv2 works in float32
    if np.isfinite(twin.distance_px):
        (ix, iy), (vx, vy) = twin.instrument_point, twin.vessel_point
        assert instrument[iy, ix] and vessel[vy, vx]
        assert max(np.hypot(ix - vx, iy - vy) - 1, 0) == pytest.approx(twin.distance_px)


def test_device_mask_layer_arithmetic_matches_the_cpu_blend():
    image, truth = PhantomScene(640, 360, scenario="approach", seed=4).render(40)
    segmentation = truth.segmentation()
    packet = FramePacket.capture(image, 0, "phantom")
    packet.segmentation = segmentation
    cpu = MaskAnnotator(0.45).annotate(image.copy(), packet)
    twin = reference_mask_layer(image, truth.class_map, colour_table(segmentation.roles), 0.45, band=2)
    labels = truth.class_map
    covered = labels > 0
    assert np.array_equal(twin[~covered], image[~covered])  # nothing drawn outside the masks
    interior = covered.copy()
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1), (0, 2), (0, -2), (1, 2), (1, -2)):
        interior &= np.roll(labels, shift, axis) == labels
    assert np.abs(twin[interior].astype(int) - cpu[interior]).max() <= 1  # the blend, as cv2.addWeighted
    edge = covered & ~interior
    assert edge.any() and np.array_equal(twin[edge], colour_table(segmentation.roles)[labels[edge]])


def _cuda_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.parametrize("name, image", FRAMES, ids=[f[0] for f in FRAMES])
@pytest.mark.parametrize("size", [320, 640])
def test_kernel_arithmetic_matches_the_cpu_stage(name, image, size):
    cpu = LetterboxPreprocess(size)(FramePacket.capture(image, 0, name))
    twin = reference_letterbox(image, cpu.geometry)
    assert twin.shape == cpu.tensor.shape and np.abs(twin - cpu.tensor).max() <= 1 / 255


def test_kernel_arithmetic_with_undistortion_matches_undistort_then_letterbox():
    image = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image = (image // 32 * 32).astype(np.uint8)  # flat patches: the CPU path's intermediate rounding stays small
    cpu = LetterboxPreprocess(320)(Undistort(PINHOLE)(FramePacket.capture(image, 0, "x")))
    twin = reference_letterbox(image, cpu.geometry, maps=PINHOLE.undistort_maps())
    assert np.abs(twin - cpu.tensor).max() <= 1.5 / 255


def test_fov_masking_blanks_only_outside_the_circle():
    image = PhantomScene(1280, 720).render(0)[0]
    geometry = LetterboxPreprocess(320)(FramePacket.capture(image, 0, "x")).geometry
    masked = reference_letterbox(image, geometry, mask_fov=True)
    plain = reference_letterbox(image, geometry)
    assert masked[0, :, 160, 160].tolist() == plain[0, :, 160, 160].tolist()
    assert masked[0, :, 2, 2].max() == 0  # a corner of the square crop lies outside the circle


def _sources():
    from pipeline.stages.analyse.cuda import NEAREST_SOURCE
    from pipeline.stages.decode.cuda import RESIZE_SOURCE
    from pipeline.stages.overlay.cuda import LAYER_SOURCE

    return {"letterbox float32": (kernel_source("float32"), "letterbox"),
            "letterbox float16": (kernel_source("float16"), "letterbox"),
            "resize_planes": (RESIZE_SOURCE, "resize_planes"), "nearest": (NEAREST_SOURCE, "nearest"),
            "mask_layer": (LAYER_SOURCE, "mask_layer")}


@pytest.mark.parametrize("which", ["letterbox float32", "letterbox float16", "resize_planes", "nearest",
                                   "mask_layer"])
def test_kernels_compile_with_nvrtc(which):
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="CuPy (the gpu extra) is not installed")
    source, name = _sources()[which]
    try:
        program = nvrtc.createProgram(source, "kernel.cu", [], [])
    except Exception as error:  # the NVRTC library itself is missing
        pytest.skip(f"NVRTC unavailable: {error}")
    headers = [f"-I{path}" for path in CUDA_INCLUDE_DIRS if (path / "cuda_fp16.h").is_file()]
    if "float16" in which and not headers:
        pytest.skip("no CUDA headers (cuda_fp16.h) here")
    try:
        nvrtc.compileProgram(program, ["--gpu-architecture=compute_80", "-default-device", *headers])
    except Exception:
        pytest.fail(nvrtc.getProgramLog(program))
    ptx = nvrtc.getPTX(program)
    assert name in (ptx.decode() if isinstance(ptx, bytes) else ptx)


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("name, image", FRAMES, ids=[f[0] for f in FRAMES])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gpu_preprocess_matches_the_cpu_stage(name, image, dtype):
    from pipeline.stages.preprocess.cuda import CudaLetterboxPreprocess

    cpu = LetterboxPreprocess(320)(FramePacket.capture(image, 0, name))
    gpu = CudaLetterboxPreprocess(320, dtype=dtype)
    for _ in range(3):  # both staging slots, and reuse of the first
        tensor = gpu(FramePacket.capture(image, 0, name)).device.tensor
    gpu.stream.synchronize()
    tolerance = 1 / 255 if dtype == "float32" else 1 / 255 + 1e-3
    assert np.abs(tensor.get().astype(np.float32) - cpu.tensor).max() <= tolerance


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
def test_gpu_preprocess_with_undistortion_matches_the_cpu_path():
    from pipeline.stages.preprocess.cuda import CudaLetterboxPreprocess

    image = (np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8) // 32 * 32).astype(np.uint8)
    cpu = LetterboxPreprocess(320)(Undistort(PINHOLE)(FramePacket.capture(image, 0, "x")))
    gpu = CudaLetterboxPreprocess(320, maps=PINHOLE.undistort_maps(), fov=cpu.geometry.fov)
    tensor = gpu(FramePacket.capture(image, 0, "x")).device.tensor
    gpu.stream.synchronize()
    assert np.abs(tensor.get() - cpu.tensor).max() <= 1.5 / 255


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
def test_device_mask_decoding_matches_the_cpu(untrained_models):
    import cupy

    from pipeline.stages.decode.cuda import CudaInstanceDecode
    from pipeline.stages.decode.instance import decode_segmentation
    from pipeline.stages.infer import load_model

    model = load_model(untrained_models["onnx"], conf=0.002)
    decode = CudaInstanceDecode(model.names, model.roles, conf=0.002)
    for name, image in FRAMES[:3]:
        packet = LetterboxPreprocess(320)(FramePacket.capture(image, 0, name))
        outputs = model.forward(packet.tensor)
        cpu = decode_segmentation(outputs, packet.geometry, model.names, model.roles, conf=0.002)
        packet.device = DeviceBuffers(cupy.cuda.get_current_stream(), cupy.asarray(image), cupy.asarray(packet.tensor),
                                      outputs=[cupy.asarray(o) for o in outputs])
        gpu = decode(packet).segmentation
        assert packet.device.class_map is not None
        assert list(gpu.class_ids) == list(cpu.class_ids)
        for value in (1, 2):
            a, b = cpu.class_map == value, gpu.class_map == value
            assert (a & b).sum() >= 0.99 * max((a | b).sum(), 1)
        assert np.abs(gpu.masks.astype(int) - cpu.masks.astype(int)).mean() < 0.01


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
def test_device_distance_and_mask_layer_match_their_cpu_twins():
    import cupy

    from pipeline.stages.analyse.cuda import CudaMeasureProximity
    from pipeline.stages.overlay.cuda import CudaOverlay

    analyse, overlay = CudaMeasureProximity(), CudaOverlay()
    for class_map in CLASS_MAPS:
        packet = FramePacket.capture(np.random.default_rng(0).integers(0, 256, (*class_map.shape, 3), np.uint8),
                                     0, "x")
        packet.segmentation = PhantomTruth(class_map, (0, 0, 1)).segmentation()
        packet.device = DeviceBuffers(cupy.cuda.get_current_stream(), cupy.asarray(packet.image),
                                      cupy.zeros((1, 3, 32, 32), cupy.float32), class_map=cupy.asarray(class_map))
        distance = analyse(packet).proximity.distance_px
        assert distance == pytest.approx(closest_pair(class_map == INSTRUMENT, class_map == VESSEL).distance_px)
        overlay.vector_marks = []  # the mask layer alone
        twin = reference_mask_layer(packet.image, class_map, colour_table(packet.segmentation.roles), 0.45, 2)
        assert np.abs(overlay(packet).overlay.astype(int) - twin).max() <= 1


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
def test_whole_live_path_runs_on_the_device(untrained_models):
    from pipeline.stages.infer import load_model

    model = load_model(untrained_models["pt"], device="cuda", conf=0.002)
    model.operating_points = EVERY_VESSEL_HIGH  # the class map as the model gave it
    stages = build_graph(model, PipelineConfig(), device="cuda")
    image, _ = PhantomScene(1280, 720, scenario="approach").render(30)
    packet = FramePacket.capture(image, 0, "phantom")
    for stage in stages:
        packet = stage(packet)
    assert packet.device.class_map is not None and packet.overlay.shape == image.shape
    assert packet.proximity.distance_px == pytest.approx(closest_pair(
        packet.segmentation.role_mask("instrument"), packet.segmentation.role_mask("vessel")).distance_px)


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
def test_semantic_model_runs_the_device_path_and_matches_the_cpu(untrained_semantic_models):
    from pipeline.stages.infer import load_model

    gpu_model, cpu_model = load_model(untrained_semantic_models["pt"], device="cuda"), \
        load_model(untrained_semantic_models["pt"])
    image, _ = PhantomScene(1280, 720, scenario="approach").render(30)
    packet = FramePacket.capture(image, 0, "phantom")
    for stage in build_graph(gpu_model, PipelineConfig(), device="cuda"):
        packet = stage(packet)
    cpu_packet = LetterboxPreprocess(**model_input(cpu_model))(FramePacket.capture(image, 0, "phantom"))
    cpu = segment(cpu_model, cpu_packet).segmentation
    assert packet.overlay.shape == image.shape and packet.proximity is not None
    assert (packet.segmentation.class_map == cpu.class_map).mean() > 0.99
