"""CUDA preprocess stage: one fused CuPy kernel from the uint8 BGR frame to the model's input.

Per output pixel, in one pass: optional undistortion (sampling the frame through the
calibration maps), optional blanking outside the endoscope's circle, letterbox resize with
bilinear sampling exactly as ``cv2.resize(INTER_LINEAR)`` (half-pixel centres, clamped
edges), BGR->RGB, scaling to [0, 1], HWC->CHW, fp16 or fp32, written into a preallocated
device buffer. The geometry is :func:`pipeline.stages.preprocess.cpu.plan_geometry`'s, so the CPU stage
(:class:`LetterboxPreprocess`) is the reference; :func:`reference_letterbox` is this kernel's
arithmetic in NumPy, tested against the CPU stage wherever CUDA is absent.

The frame goes host -> pinned staging buffer -> device on a copy stream (double-buffered,
so frame N+1 uploads while frame N is inferred); the kernel and the model run on the compute
stream after the upload's event; the tensor reaches torch / ONNX Runtime by DLPack / pointer,
without a copy and without a host synchronisation.

    preprocess = CudaLetterboxPreprocess(320)           # needs CuPy and a CUDA device
    packet = preprocess(packet)                          # packet.device.tensor: a CuPy array
"""
from __future__ import annotations

import numpy as np

from pipeline.core.packet import DeviceBuffers, FramePacket, Geometry, timed
from pipeline.gpu.kernels import LINEAR_TAP_SOURCE
from pipeline.stages.preprocess.geometry import PAD_VALUE, GeometryPlan

KERNEL_SOURCE = r"""
// One pixel of the picture the letterbox samples: the frame itself, or the frame seen
// through the undistortion maps (bilinear, black outside, as cv2.remap BORDER_CONSTANT).
__device__ void picture_pixel(const unsigned char* frame, int width, int height,
                              const float* map_x, const float* map_y, int u, int v, float bgr[3]) {
    if (map_x == nullptr) {
        const unsigned char* p = frame + ((size_t)v * width + u) * 3;
        bgr[0] = p[0]; bgr[1] = p[1]; bgr[2] = p[2];
        return;
    }
    float sx = map_x[(size_t)v * width + u], sy = map_y[(size_t)v * width + u];
    int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
    float ax = sx - x0, ay = sy - y0;
    bgr[0] = bgr[1] = bgr[2] = 0.0f;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            int x = x0 + dx, y = y0 + dy;
            if (x < 0 || y < 0 || x >= width || y >= height) continue;
            float w = (dx ? ax : 1.0f - ax) * (dy ? ay : 1.0f - ay);
            const unsigned char* p = frame + ((size_t)y * width + x) * 3;
            bgr[0] += w * p[0]; bgr[1] += w * p[1]; bgr[2] += w * p[2];
        }
    }
}

""" + LINEAR_TAP_SOURCE + r"""
extern "C" __global__ void letterbox(
        const unsigned char* frame, int width, int height,
        const float* map_x, const float* map_y,
        int crop_x, int crop_y, int crop_w, int crop_h,
        int pad_x, int pad_y, int content_w, int content_h,
        float fov_cx, float fov_cy, float fov_r2,
        float pad_value, OUT_T* out, int out_w, int out_h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    float rgb[3] = {pad_value, pad_value, pad_value};
    int cx = x - pad_x, cy = y - pad_y;
    if (cx >= 0 && cy >= 0 && cx < content_w && cy < content_h) {
        int u0, u1, v0, v1; float ax, ay;
        linear_tap(cx, (float)crop_w / (float)content_w, crop_w, &u0, &u1, &ax);
        linear_tap(cy, (float)crop_h / (float)content_h, crop_h, &v0, &v1, &ay);
        float p00[3], p01[3], p10[3], p11[3];
        picture_pixel(frame, width, height, map_x, map_y, crop_x + u0, crop_y + v0, p00);
        picture_pixel(frame, width, height, map_x, map_y, crop_x + u1, crop_y + v0, p01);
        picture_pixel(frame, width, height, map_x, map_y, crop_x + u0, crop_y + v1, p10);
        picture_pixel(frame, width, height, map_x, map_y, crop_x + u1, crop_y + v1, p11);
        float sx = crop_x + u0 + ax + 0.5f - fov_cx, sy = crop_y + v0 + ay + 0.5f - fov_cy;
        bool outside = fov_r2 >= 0.0f && sx * sx + sy * sy > fov_r2;
        for (int c = 0; c < 3; ++c) {
            float top = p00[c] + ax * (p01[c] - p00[c]);
            float bottom = p10[c] + ax * (p11[c] - p10[c]);
            rgb[2 - c] = outside ? 0.0f : (top + ay * (bottom - top)) / 255.0f;  // BGR -> RGB
        }
    }
    size_t plane = (size_t)out_w * out_h, at = (size_t)y * out_w + x;
    for (int c = 0; c < 3; ++c) out[c * plane + at] = STORE(rgb[c]);
}
"""


def kernel_source(dtype: str) -> str:
    """The kernel for an fp32 (``float32``) or fp16 (``float16``) output."""
    if dtype == "float16":
        return "#include <cuda_fp16.h>\n" + KERNEL_SOURCE.replace("OUT_T", "__half").replace("STORE(", "__float2half(")
    if dtype == "float32":
        return KERNEL_SOURCE.replace("OUT_T", "float").replace("STORE(", "(float)(")
    raise ValueError(f"output dtype must be float32 or float16, not {dtype}")


def _linear_taps(size_out: int, size_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = (np.arange(size_out, dtype=np.float32) + 0.5) * np.float32(size_in / size_out) - 0.5
    i = np.floor(s).astype(int)
    f = (s - i).astype(np.float32)
    low, high = i < 0, i >= size_in - 1
    f[low | high] = 0.0
    i = np.clip(i, 0, size_in - 1)
    return i, np.minimum(i + 1, size_in - 1), f


def reference_letterbox(image: np.ndarray, geometry: Geometry, maps=None, mask_fov: bool = False) -> np.ndarray:
    """The kernel's arithmetic in NumPy: (1, 3, h, w) float32 for ``image`` under ``geometry``."""
    picture = image.astype(np.float32)
    if maps is not None:  # undistortion, bilinear, black outside
        import cv2

        picture = cv2.remap(picture, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x0, y0, x1, y1 = geometry.content_box()
    cx, cy, cw, ch = geometry.crop
    u0, u1, ax = _linear_taps(x1 - x0, cw)
    v0, v1, ay = _linear_taps(y1 - y0, ch)
    crop = picture[cy:cy + ch, cx:cx + cw]
    top = crop[v0][:, u0] + ax[None, :, None] * (crop[v0][:, u1] - crop[v0][:, u0])
    bottom = crop[v1][:, u0] + ax[None, :, None] * (crop[v1][:, u1] - crop[v1][:, u0])
    content = (top + ay[:, None, None] * (bottom - top)) / 255.0
    if mask_fov and geometry.fov is not None:
        fx, fy, r = geometry.fov
        sx = (cx + u0 + ax + 0.5 - fx)[None, :]
        sy = (cy + v0 + ay + 0.5 - fy)[:, None]
        content[sx**2 + sy**2 > r * r] = 0.0
    width, height = geometry.input_size
    out = np.full((height, width, 3), PAD_VALUE / 255.0, np.float32)
    out[y0:y1, x0:x1] = content[..., ::-1]
    return out.transpose(2, 0, 1)[None]


class CudaLetterboxPreprocess:
    """Stage: the fused kernel; the frame and the model input go to ``packet.device`` (CuPy, ``self.stream``).

    ``maps``: undistortion maps (from :meth:`CameraModel.undistort_maps`) sampled in the
    same pass; ``mask_fov``: blank what lies outside the endoscope's circle.
    """

    reads = ("image",)
    writes = ("geometry", "device")

    def __init__(self, input_size: int | tuple[int, int], crop_to_fov: bool = True, dtype: str = "float32",
                 maps=None, mask_fov: bool = False, fov: tuple[float, float, float] | None = None,
                 fit_aspect: bool = False):
        import cupy

        self.cupy, self.dtype, self.mask_fov = cupy, dtype, mask_fov
        self.kernel = cupy.RawKernel(kernel_source(dtype), "letterbox")
        self.tensor = None  # (1, 3, h, w) on the device, for the current geometry
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        self.stream = cupy.cuda.Stream(non_blocking=True)  # the kernel's, and the model's
        self.maps = tuple(cupy.asarray(m, cupy.float32) for m in maps) if maps is not None else None
        self.plan = GeometryPlan(input_size, crop_to_fov, fov, fit_aspect)
        self.slots: list[dict] = []  # double-buffered pinned host + device frames
        self.turn = 0

    def _slot(self, nbytes: int, shape) -> dict:
        pinned = self.cupy.cuda.alloc_pinned_memory(nbytes)
        return {"host": np.frombuffer(pinned, np.uint8, nbytes).reshape(shape), "pinned": pinned,
                "device": self.cupy.empty(shape, self.cupy.uint8), "uploaded": None}

    def __call__(self, packet: FramePacket) -> FramePacket:
        with timed(packet, "preprocess"):
            geometry, new = self.plan(packet.image)
            input_w, input_h = geometry.input_size
            if new:
                self.slots = [self._slot(packet.image.nbytes, packet.image.shape) for _ in range(2)]
                self.tensor = self.cupy.empty((1, 3, input_h, input_w), self.dtype)
            slot = self.slots[self.turn]
            self.turn ^= 1
            if slot["uploaded"] is not None:
                slot["uploaded"].synchronize()  # the upload from two frames ago, long done
            np.copyto(slot["host"], packet.image)
            slot["device"].set(slot["host"], stream=self.copy_stream)
            slot["uploaded"] = self.copy_stream.record()
            self.stream.wait_event(slot["uploaded"])
            x0, y0, x1, y1 = geometry.content_box()
            cx, cy, cw, ch = geometry.crop
            width, height = geometry.source_size
            fx, fy, r = geometry.fov if (self.mask_fov and geometry.fov) else (0.0, 0.0, -1.0)
            null = np.uint64(0)  # a null pointer: no undistortion
            map_x, map_y = self.maps if self.maps is not None else (null, null)
            threads = (32, 8)
            blocks = ((input_w + 31) // 32, (input_h + 7) // 8)
            i32, f32 = np.int32, np.float32
            with self.stream:
                self.kernel(blocks, threads, (
                    slot["device"], i32(width), i32(height), map_x, map_y,
                    i32(cx), i32(cy), i32(cw), i32(ch), i32(x0), i32(y0), i32(x1 - x0), i32(y1 - y0),
                    f32(fx), f32(fy), f32(r * r if r >= 0 else -1.0), f32(PAD_VALUE / 255.0),
                    self.tensor, i32(input_w), i32(input_h)))
            # the frame on the device stays valid until this slot's next upload, two frames on
            packet.geometry, packet.device = geometry, DeviceBuffers(self.stream, slot["device"], self.tensor)
        return packet
