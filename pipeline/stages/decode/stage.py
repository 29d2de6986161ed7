"""The decode stage: raw model outputs -> ``packet.segmentation`` in source pixels.

One decoder per kind of output, chosen once when the graph is built: instances from boxes and
mask prototypes (:mod:`.instance`), a class per pixel (:mod:`.semantic`), or instances decoded
on the GPU (:mod:`.cuda`). An exported ``.onnx`` and the ``.pt`` it came from decode alike.

    decode = InstanceDecode(model.names, model.roles, conf=0.25, iou=0.7)
    packet = decode(model(preprocess(packet)))
"""
from __future__ import annotations

import numpy as np

from pipeline.core.packet import FramePacket, Segmentation, timed
from pipeline.stages.infer import ModelError


class Decode:
    """Stage base: checks the outputs are finite, times the work as ``decode``; subclasses decode."""

    reads = ("outputs", "geometry")
    writes = ("segmentation",)

    def __init__(self, names: tuple[str, ...], roles: tuple[str, ...]):
        self.names, self.roles = names, roles

    def outputs(self, packet: FramePacket) -> list:
        return packet.outputs

    def all_finite(self, outputs: list) -> bool:
        return all(bool(np.isfinite(output).all()) for output in outputs)

    def decode(self, outputs: list, packet: FramePacket) -> Segmentation:
        raise NotImplementedError

    def class_map_only(self) -> Decode:
        """This decoder where nothing reads the instances, only the class map: itself, unless the instances
        are work of their own (a class-map model's connected regions)."""
        return self

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "decode"):
            outputs = self.outputs(packet)
            if not self.all_finite(outputs):
                raise ModelError("model output contains NaN or infinity")
            packet.segmentation = self.decode(outputs, packet)
        return packet
