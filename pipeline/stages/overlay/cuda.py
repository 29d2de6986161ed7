"""Device-side overlay: masks and contours composited on the GPU, one download per frame.

One CUDA thread per pixel of the frame already on the device (the preprocess stage's upload)
reads the class map and either keeps the pixel, blends the class's role colour into it
(``round(pixel * (1 - opacity) + colour * opacity)``, as the CPU :class:`MaskAnnotator`), or,
within ``band`` pixels of the region's edge, paints the solid contour colour. The finished
picture crosses to the host once; the few vector marks (instance labels, the proximity line,
alert banners) are then drawn on it by the CPU annotators, which cost microseconds.
:func:`reference_mask_layer` is the kernel's arithmetic in NumPy, tested where CUDA is absent.

    overlay = CudaOverlay()               # needs CuPy; reads packet.device.image and .class_map
    packet = overlay(packet)              # packet.overlay is a host (NumPy) picture
"""
from __future__ import annotations

import numpy as np

from pipeline.core.packet import FramePacket, timed
from pipeline.stages.overlay.cpu import annotate_all, colour_table, mark_annotators

LAYER_SOURCE = r"""
extern "C" __global__ void mask_layer(const unsigned char* frame, const unsigned char* labels,
                                      const float* colours, float opacity, int width, int height, int band,
                                      unsigned char* out) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    size_t i = (size_t)y * width + x;
    unsigned char k = labels[i];
    const unsigned char* p = frame + i * 3;
    unsigned char* q = out + i * 3;
    if (k == 0) { q[0] = p[0]; q[1] = p[1]; q[2] = p[2]; return; }
    bool edge = false;  // another label within `band` pixels along a row or column (frame borders are not edges)
    for (int d = 1; d <= band && !edge; ++d) {
        edge = (x >= d && labels[i - d] != k) || (x + d < width && labels[i + d] != k)
            || (y >= d && labels[i - (size_t)d * width] != k) || (y + d < height && labels[i + (size_t)d * width] != k);
    }
    const float* c = colours + k * 3;
    for (int ch = 0; ch < 3; ++ch) {
        float blended = rintf(p[ch] * (1.0f - opacity) + c[ch] * opacity);
        q[ch] = (unsigned char)(edge ? c[ch] : fminf(fmaxf(blended, 0.0f), 255.0f));
    }
}
"""


def reference_mask_layer(frame: np.ndarray, labels: np.ndarray, colours: np.ndarray, opacity: float,
                         band: int) -> np.ndarray:
    """NumPy twin of the ``mask_layer`` kernel."""
    height, width = labels.shape
    padded = np.pad(labels, band, mode="edge")  # edge padding: the frame border is never an edge
    edge = np.zeros(labels.shape, bool)
    for d in range(1, band + 1):
        for dy, dx in ((0, -d), (0, d), (-d, 0), (d, 0)):
            edge |= padded[band + dy:band + dy + height, band + dx:band + dx + width] != labels
    colour = colours[labels]
    blended = np.clip(np.rint(frame * np.float32(1 - opacity) + colour * np.float32(opacity)), 0, 255)
    out = np.where(edge[..., None], colour, blended).astype(np.uint8)
    return np.where((labels > 0)[..., None], out, frame)


class CudaOverlay:
    """Stage: the device mask layer (``packet.device``'s frame and class map), one download,
    then the host's vector annotators."""

    reads = ("device", "segmentation", "proximity", "active_alerts")
    writes = ("overlay",)

    def __init__(self, opacity: float = 0.45, band: int = 2):
        import cupy

        self.cupy, self.opacity, self.band = cupy, opacity, band
        self.kernel = cupy.RawKernel(LAYER_SOURCE, "mask_layer")
        self.vector_marks = mark_annotators()
        self._colours: dict[tuple[str, ...], object] = {}
        self._out = None

    def __call__(self, packet: FramePacket) -> FramePacket:
        segmentation = packet.segmentation
        cupy = self.cupy
        with timed(packet, "overlay"):
            frame, labels = packet.device.image, packet.device.class_map
            height, width = labels.shape
            if self._out is None or self._out.shape != frame.shape:
                self._out = cupy.empty_like(frame)
            if segmentation.roles not in self._colours:
                self._colours[segmentation.roles] = cupy.asarray(colour_table(segmentation.roles), cupy.float32)
            self.kernel(((width + 31) // 32, (height + 7) // 8), (32, 8),
                        (frame, labels, self._colours[segmentation.roles], np.float32(self.opacity),
                         np.int32(width), np.int32(height), np.int32(self.band), self._out))
            packet.overlay = annotate_all(self.vector_marks, self._out.get(), packet)  # the one device -> host copy
        return packet
