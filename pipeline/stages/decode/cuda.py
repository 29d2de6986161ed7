"""Device-side mask decoding: the CUDA twin of :func:`pipeline.stages.decode.instance.decode_segmentation`.

Prototypes -> instance logits -> model-input resolution -> box crop -> one map per class ->
the source crop -> class map, all on the GPU with the same arithmetic as the CPU path
(bilinear resizes with ``cv2.resize`` semantics: :mod:`pipeline.gpu.kernels`' ``linear_tap``).
Only the candidate table crosses to the host (for non-maximum suppression), and the finished
class map comes back once. Instance logits stay on the device; ``Segmentation.masks`` copies
them only if someone asks.

    decode = CudaInstanceDecode(names, roles)     # reads packet.device.outputs (CuPy)
    packet = decode(packet)                         # packet.segmentation, packet.device.class_map
"""
from __future__ import annotations

import numpy as np

from pipeline.core.packet import FramePacket, Geometry, Segmentation
from pipeline.gpu.kernels import LINEAR_TAP_SOURCE
from pipeline.stages.decode.instance import candidates, crop_to_boxes
from pipeline.stages.decode.stage import Decode

RESIZE_SOURCE = LINEAR_TAP_SOURCE + r"""
// planes (count, in_h, in_w) float -> (count, out_h, out_w), bilinear as cv2.resize INTER_LINEAR,
// reading the window [y0, y0 + in_h) x [x0, x0 + in_w) of a plane of row stride `stride`.
extern "C" __global__ void resize_planes(const float* in, int count, int plane_h, int stride,
                                         int x0, int y0, int in_w, int in_h,
                                         float* out, int out_w, int out_h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int k = blockIdx.z;
    if (x >= out_w || y >= out_h || k >= count) return;
    int u0, u1, v0, v1; float ax, ay;
    linear_tap(x, (float)in_w / (float)out_w, in_w, &u0, &u1, &ax);
    linear_tap(y, (float)in_h / (float)out_h, in_h, &v0, &v1, &ay);
    const float* p = in + (size_t)k * plane_h * stride + (size_t)y0 * stride + x0;
    float top = p[v0 * stride + u0] + ax * (p[v0 * stride + u1] - p[v0 * stride + u0]);
    float bottom = p[v1 * stride + u0] + ax * (p[v1 * stride + u1] - p[v1 * stride + u0]);
    out[((size_t)k * out_h + y) * out_w + x] = top + ay * (bottom - top);
}
"""


class CudaInstanceDecode(Decode):
    """Stage: decode an instance model's device outputs on the device; the class map is on both sides."""

    reads = ("device", "geometry")
    writes = ("segmentation", "device")

    def __init__(self, names: tuple[str, ...], roles: tuple[str, ...], conf: float = 0.25, iou: float = 0.7,
                 max_instances: int = 50):
        import cupy

        super().__init__(names, roles)
        self.cupy = cupy
        self.conf, self.iou, self.max_instances = conf, iou, max_instances
        self.kernel = cupy.RawKernel(RESIZE_SOURCE, "resize_planes")
        self._inside: dict[Geometry, object] = {}

    def _resize(self, planes, window: tuple[int, int, int, int], size: tuple[int, int]):
        """(count, h, w) device planes, window (x0, y0, w, h) of each -> (count, size[1], size[0])."""
        cupy = self.cupy
        planes = cupy.ascontiguousarray(planes, dtype=cupy.float32)
        count, plane_h, stride = planes.shape
        x0, y0, w, h = window
        out = cupy.empty((count, size[1], size[0]), cupy.float32)
        blocks = ((size[0] + 31) // 32, (size[1] + 7) // 8, count)
        i32 = np.int32
        self.kernel(blocks, (32, 8, 1), (planes, i32(count), i32(plane_h), i32(stride), i32(x0), i32(y0), i32(w),
                                         i32(h), out, i32(size[0]), i32(size[1])))
        return out

    def _inside_fov(self, geometry: Geometry):
        if geometry not in self._inside:
            self._inside[geometry] = self.cupy.asarray(geometry.inside_fov(crop_only=True))
        return self._inside[geometry]

    def outputs(self, packet: FramePacket) -> list:
        return packet.device.outputs

    def all_finite(self, outputs: list) -> bool:
        return all(bool(self.cupy.isfinite(output).all()) for output in outputs)

    def decode(self, outputs: list, packet: FramePacket) -> Segmentation:
        segmentation, packet.device.class_map = self._decode(outputs, packet.geometry)
        return segmentation

    def _decode(self, outputs: list, geometry: Geometry):
        """(segmentation with the class map on the host, the class map on the device)."""
        cupy = self.cupy
        predictions = cupy.asnumpy(cupy.asarray(outputs[0], cupy.float32))  # the candidate table only
        protos = cupy.asarray(outputs[1], cupy.float32)
        boxes, scores, class_ids, coefficients = candidates(predictions, len(self.names), protos.shape[1], self.conf,
                                                            self.iou, self.max_instances)
        width, height = geometry.source_size
        if len(scores) == 0:
            return (Segmentation(np.zeros((height, width), np.uint8), self.names, self.roles, class_ids, scores,
                                 np.zeros((0, 4), np.float32), np.zeros((0, 1, 1), np.float32), geometry),
                    cupy.zeros((height, width), cupy.uint8))
        _, nm, mh, mw = protos.shape
        logits = (cupy.asarray(coefficients, cupy.float64) @ protos[0].reshape(nm, -1).astype(cupy.float64))
        logits = logits.reshape(-1, mh, mw).astype(cupy.float32)
        input_w, input_h = geometry.input_size
        logits = self._resize(logits, (0, 0, mw, mh), (input_w, input_h))
        crop_to_boxes(logits, boxes)
        per_class = cupy.full((len(self.names), input_h, input_w), -100.0, cupy.float32)
        for cls in np.unique(class_ids):
            per_class[cls] = logits[cupy.asarray(class_ids == cls)].max(axis=0)
        x0, y0, x1, y1 = geometry.content_box()
        cx, cy, cw, ch = geometry.crop
        crop = self._resize(per_class, (x0, y0, x1 - x0, y1 - y0), (cw, ch))
        best = crop.max(axis=0)
        label = (crop.argmax(axis=0) + 1).astype(cupy.uint8)
        label = cupy.where((best > 0) & self._inside_fov(geometry), label, cupy.uint8(0))
        device_map = cupy.zeros((height, width), cupy.uint8)
        device_map[cy:cy + ch, cx:cx + cw] = label
        class_map = device_map.get()  # the one device -> host copy of the masks (the `mask` topic's)
        source_boxes = np.clip(geometry.to_source(boxes.reshape(-1, 2, 2)).reshape(-1, 4), 0,
                               [width, height, width, height])
        return (Segmentation(class_map, self.names, self.roles, class_ids, scores.astype(np.float32), source_boxes,
                             logits, geometry), device_map)
