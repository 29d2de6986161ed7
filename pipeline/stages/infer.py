"""Inference stage: one :class:`SegmentationModel` interface, ONNX Runtime and torch backends.

Both backends give the model's raw outputs; the decode stage (:mod:`pipeline.stages.decode`)
turns them into masks the same way, so an exported ``.onnx`` and its ``.pt`` agree.

    model = load_model("pipeline/models/orsight-endoscapes-lite0-sem-320.onnx", device="cpu")
    packet = model(preprocess(packet))     # fills packet.outputs
"""
from __future__ import annotations

import ast
import os
import time
from functools import cached_property
from pathlib import Path

import numpy as np

from pipeline.core.classes import class_roles
from pipeline.core.evidence import OperatingPoints
from pipeline.core.packet import FramePacket
from pipeline.stages.preprocess.geometry import input_dims

DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "orsight-endoscapes-lite0-sem-320.onnx"  # float: on a GPU
DEFAULT_CPU_MODEL = DEFAULT_MODEL.with_name("orsight-endoscapes-lite0-sem-320-int8.onnx")  # its int8 twin: on CPUs


def default_model(device: str = "cpu") -> Path:
    """The shipped model for ``device``: int8 on the CPU (`orsight quantize`), float elsewhere."""
    return DEFAULT_CPU_MODEL if device == "cpu" else DEFAULT_MODEL


class ModelError(Exception):
    """The model file is missing, of the wrong kind, or cannot run here."""


class SegmentationModel:
    """Stage ``packet -> packet``: run the backend on the packet's input tensor, fill its ``outputs``.

    Subclasses implement :meth:`forward` (raw outputs) and set ``names``, ``input_size`` and
    ``task``: ``segment`` (instances: boxes + mask prototypes) or ``semantic`` (a class per
    pixel, class 0 the background). Where the tensor comes from and where the outputs go
    (host, or ``packet.device`` on the CUDA path) is set once by :meth:`place`.
    """

    names: tuple[str, ...]
    input_size: tuple[int, int]  # (width, height); with ``fixed_input`` False, a pixel budget
    fixed_input: bool = False  # True: only this exact input shape runs (a static ONNX export)
    description: str
    task: str = "segment"
    max_batch: int | None = None  # largest batch one forward pass takes (None: any)
    device_input: bool = False  # the tensor is ``packet.device.tensor`` (CuPy), not ``packet.tensor``
    device_outputs: bool = False  # the outputs stay on the GPU, in ``packet.device.outputs``
    cpu_threads: int | None = None  # threads a forward pass takes on the CPU (None: on a GPU, or not known)
    operating_points: OperatingPoints | None = None  # the vessel's validated tiers (``orsight validate``)
    reads = ("tensor",)
    writes = ("outputs",)

    def __init__(self, conf: float = 0.25, iou: float = 0.7, roles: dict[str, str] | None = None):
        self.conf, self.iou, self.role_overrides = conf, iou, roles or {}

    @cached_property
    def roles(self) -> tuple[str, ...]:
        return class_roles(self.names, self.role_overrides)

    def place(self, device_input: bool, device_outputs: bool = False) -> None:
        """Where this model's tensors live (decided once, by the graph builder)."""
        self.device_input, self.device_outputs = device_input, device_outputs
        self.reads = ("device",) if device_input else ("tensor",)
        self.writes = ("device",) if device_outputs else ("outputs",)

    def forward(self, tensor) -> list:
        raise NotImplementedError

    def __call__(self, packet: FramePacket) -> FramePacket:
        return self.forward_batch([packet])[0]

    def forward_batch(self, packets: list[FramePacket]) -> list[FramePacket]:
        """One forward pass over several preprocessed packets; each gets its own ``outputs``."""
        started = time.perf_counter()
        if self.device_input:
            import cupy

            tensors = [packet.device.tensor for packet in packets]
            batch = tensors[0] if len(tensors) == 1 else cupy.concatenate(tensors)
            # A device tensor is consumed with its producer's CUDA stream current (DLPack orders on it).
            with packets[0].device.stream:
                outputs = self.forward(batch)
        else:
            tensors = [packet.tensor for packet in packets]
            outputs = self.forward(tensors[0] if len(tensors) == 1 else np.concatenate(tensors))
        share = (time.perf_counter() - started) * 1e3 / len(packets)
        for index, packet in enumerate(packets):
            mine = [output[index:index + 1] for output in outputs[:2]]
            if self.device_outputs:
                packet.device.outputs = mine
            else:
                packet.outputs = mine
            packet.timings_ms["infer"] = share
        return packets


def _ultralytics_size(imgsz) -> tuple[int, int]:
    """(width, height) from ultralytics' ``imgsz`` or an input's shape: one side, or [height, width]."""
    return input_dims(imgsz if np.isscalar(imgsz) else tuple(imgsz)[::-1])


def _parse_names(text: str, task: str = "segment") -> tuple[str, ...]:
    """The pipeline's class names; a semantic model's class 0 (the background) is not one of them."""
    names = ast.literal_eval(text)  # ultralytics writes a dict literal; never eval'd as code
    names = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
    return names[1:] if task == "semantic" else names


class OnnxSegmentationModel(SegmentationModel):
    """ONNX Runtime backend; CPU by default, CUDA/TensorRT providers when asked and present."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None, **kw):
        super().__init__(**kw)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Leave a core to the video path: on 2 cores, one intra-op thread (see DESIGN.md).
        options.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2) - 1)
        options.inter_op_num_threads = 1
        if not providers:  # on the CPU: ONNX Runtime's pool, or the calling thread alone with one
            self.cpu_threads = options.intra_op_num_threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(f"cannot load ONNX model {path}: {str(error).splitlines()[0][:200]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = self.session.get_inputs()
        self.task = meta.get("task", "segment")
        wanted_outputs = 1 if self.task == "semantic" else 2
        if len(inputs) != 1 or len(self.session.get_outputs()) < wanted_outputs or "names" not in meta \
                or self.task not in ("segment", "semantic"):
            raise ModelError(f"{path} is not an ultralytics segmentation model (needs names, and boxes and "
                             "prototypes or a class map)")
        self.input_name = inputs[0].name
        self.max_batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None
        self.names = _parse_names(meta["names"], self.task)
        self.fixed_input = all(isinstance(d, int) for d in inputs[0].shape[-2:])
        self.input_size = _ultralytics_size(inputs[0].shape[-2:] if self.fixed_input else
                                            ast.literal_eval(meta.get("imgsz", "[640, 640]")))
        self.description = f"{Path(path).name} (onnxruntime)"
        self.path = Path(path)
        self.operating_points = OperatingPoints.from_metadata(meta)

    def forward(self, tensor) -> list[np.ndarray]:
        if not self.device_input:
            return self.session.run(None, {self.input_name: tensor})
        # A CuPy device tensor: bound by pointer, no copy. ONNX Runtime runs on its own stream,
        # so the producer's stream is waited for first (the one synchronisation of this path).
        tensor.__cuda_array_interface__  # noqa: B018  (fails early for anything but a CUDA array)
        import cupy

        cupy.cuda.get_current_stream().synchronize()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", 0, tensor.dtype, list(tensor.shape), tensor.data.ptr)
        for output in self.session.get_outputs():
            binding.bind_output(output.name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


class TorchSegmentationModel(SegmentationModel):
    """Torch backend for ultralytics ``.pt`` checkpoints (CPU or CUDA)."""

    def __init__(self, path: str | Path, device: str = "cpu", **kw):
        super().__init__(**kw)
        try:
            import torch
        except ImportError:
            raise ModelError(f"{path}: running a .pt needs torch: pip install 'orsight[train]' "
                             "(or run its ONNX export)") from None

        from pipeline.core.trust import UntrustedModel, require_trusted
        from pipeline.core.yolo import YOLO

        try:
            require_trusted(path)
        except UntrustedModel as error:
            raise ModelError(str(error)) from None
        try:
            yolo = YOLO(str(path))
        except Exception as error:
            raise ModelError(f"cannot load PyTorch model {path}: {str(error).splitlines()[0][:200]}") from None
        if yolo.task not in ("segment", "semantic"):
            raise ModelError(f"{path} is a {yolo.task} model, not a segmentation model")
        self.task = yolo.task
        self.torch, self.device = torch, torch.device(device)
        self.module = yolo.model.to(self.device).eval()
        self.names = _parse_names(repr(yolo.model.names), self.task)
        self.input_size = _ultralytics_size(getattr(yolo.model, "args", {}).get("imgsz") or 640)  # as trained
        self.description = f"{Path(path).name} (torch {device})"
        self.path = Path(path)
        self.operating_points = OperatingPoints.from_metadata(yolo.ckpt or {})  # the checkpoint's own entry

    def forward(self, tensor) -> list[np.ndarray]:
        """``tensor``: NumPy, or a CUDA array (CuPy) taken over by DLPack without a copy; DLPack
        makes torch's stream wait for the producer's current stream, so nothing blocks the host."""
        x = self.torch.from_dlpack(tensor) if self.device_input else self.torch.from_numpy(tensor)
        with self.torch.inference_mode():
            outputs = self.module(x.to(self.device, non_blocking=True))
        if self.task == "semantic":  # logits at the head's stride: small, decoded on the host
            return [outputs.float().cpu().numpy()]
        predictions, protos = outputs[0]
        if self.device_outputs:  # outputs stay on the GPU, handed to CuPy by DLPack
            import cupy

            return [cupy.from_dlpack(predictions.float()), cupy.from_dlpack(protos.float())]
        return [predictions.float().cpu().numpy(), protos.float().cpu().numpy()]


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The ``orsight_*`` entries of a trusted ``.pt`` checkpoint (e.g. its validated operating points)."""
    from pipeline.core.trust import load_checkpoint

    return {key: value for key, value in load_checkpoint(path).items() if key.startswith("orsight_")}


def load_model(path: str | Path | None = None, device: str = "cpu", threads: int | None = None,
               **kw) -> SegmentationModel:
    """Open ``path`` (``.onnx`` or ``.pt``; default: the shipped model for ``device``) on ``device``."""
    path = Path(path) if path else default_model(device)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else None
        return OnnxSegmentationModel(path, threads=threads, providers=providers, **kw)
    if path.suffix == ".pt":
        return TorchSegmentationModel(path, device=device, **kw)
    raise ModelError(f"unsupported model file {path.name}: expected .onnx or .pt")
