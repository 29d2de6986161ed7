"""Device-side proximity: the CUDA twin of :func:`pipeline.stages.analyse.cpu.closest_pair`.

The closest pair of two disjoint pixel sets joins a boundary pixel of one to a boundary pixel
of the other, so only boundary pixels (a 4-neighbour outside the set) are compared: one CUDA
thread per instrument boundary pixel scans the vessel boundary and keeps the smallest
``squared distance << 32 | vessel index`` key, and one min-reduction picks the pair. Exact,
like the CPU path's precise distance transform; only four integers cross to the host.

    analyse = CudaMeasureProximity(mm_per_px)      # needs CuPy; reads packet.device.class_map
    packet = analyse(packet)
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.core.packet import FramePacket, Proximity, timed
from pipeline.stages.analyse.cpu import set_scale, tiered_proximity

NEAREST_SOURCE = r"""
extern "C" __global__ void nearest(const long long* ay, const long long* ax, int na,
                                   const long long* by, const long long* bx, int nb,
                                   unsigned long long* keys) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= na) return;
    unsigned long long best = 0xFFFFFFFFFFFFFFFFull;
    for (int j = 0; j < nb; ++j) {
        long long dy = ay[i] - by[j], dx = ax[i] - bx[j];
        unsigned long long key = ((unsigned long long)(dy * dy + dx * dx) << 32) | (unsigned long long)j;
        best = key < best ? key : best;
    }
    keys[i] = best;
}
"""


def boundary(mask, xp=np):
    """(ys, xs) of the pixels of the boolean ``mask`` with a 4-neighbour outside it."""
    padded = xp.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return xp.nonzero(mask & ~interior)


def nearest_keys(a, b, chunk: int = 2048) -> np.ndarray:
    """NumPy twin of the ``nearest`` kernel: per point of ``a``, its smallest key to ``b``."""
    (ay, ax), (by, bx) = a, b
    keys = np.empty(len(ay), np.uint64)
    for start in range(0, len(ay), chunk):
        dy = ay[start:start + chunk, None].astype(np.int64) - by[None, :]
        dx = ax[start:start + chunk, None].astype(np.int64) - bx[None, :]
        pair = ((dy * dy + dx * dx).astype(np.uint64) << np.uint64(32)) | np.arange(len(by), dtype=np.uint64)
        keys[start:start + chunk] = pair.min(axis=1)
    return keys


def boundary_pair(instrument, vessel, xp=np, nearest=nearest_keys) -> Proximity:
    """Gap in pixels between two boolean masks (0 when they touch) and its end points.

    ``xp``/``nearest``: NumPy and :func:`nearest_keys`, or CuPy and the CUDA kernel.
    """
    a, b = boundary(instrument, xp), boundary(vessel, xp)
    if not len(a[0]) or not len(b[0]):
        return Proximity(math.inf)
    keys = nearest(a, b)
    i = int(keys.argmin())
    key = int(keys[i])
    j, squared = key & 0xFFFFFFFF, key >> 32
    # Adjacent pixels (centres 1 apart) touch: report the gap between pixels, as the CPU path does.
    return Proximity(max(math.sqrt(squared) - 1.0, 0.0), (int(a[1][i]), int(a[0][i])), (int(b[1][j]), int(b[0][j])))


class CudaMeasureProximity:
    """Stage: instrument-vessel proximity from the device class map (``packet.device.class_map``)."""

    reads = ("segmentation", "device")
    writes = ("proximity",)

    def __init__(self, mm_per_px: float | None = None):
        import cupy

        self.cupy, self.mm_per_px = cupy, mm_per_px
        self.kernel = cupy.RawKernel(NEAREST_SOURCE, "nearest")
        self._role_tables: dict[tuple[tuple[str, ...], str], object] = {}

    def _role_table(self, segmentation, role: str):
        """:meth:`Segmentation.role_table` on the device, as booleans (uploaded once per class set)."""
        key = (segmentation.roles, role)
        if key not in self._role_tables:
            self._role_tables[key] = self.cupy.asarray(segmentation.role_table(role)).view(bool)
        return self._role_tables[key]

    def _nearest(self, a, b):
        cupy = self.cupy
        keys = cupy.empty(len(a[0]), cupy.uint64)
        self.kernel(((len(a[0]) + 255) // 256,), (256,),
                    (a[0], a[1], np.int32(len(a[0])), b[0], b[1], np.int32(len(b[0])), keys))
        return keys

    def __call__(self, packet: FramePacket) -> FramePacket:
        segmentation = packet.segmentation
        with timed(packet, "proximity"):
            instrument, vessel = (self._role_table(segmentation, role)[packet.device.class_map]
                                  for role in ("instrument", "vessel"))
            packet.proximity = tiered_proximity(segmentation, boundary_pair(instrument, vessel, self.cupy,
                                                                            self._nearest))
            set_scale(packet.proximity, self.mm_per_px)
        return packet
