"""CUDA C shared by several kernels of the GPU stages (compiled into each by CuPy's RawKernel).

    kernel = cupy.RawKernel(LINEAR_TAP_SOURCE + MY_KERNEL, "my_kernel")
"""

LINEAR_TAP_SOURCE = r"""
// cv2.resize INTER_LINEAR source coordinate along one axis: half-pixel centres, clamped.
__device__ void linear_tap(int d, float inverse_scale, int size, int* i0, int* i1, float* a) {
    float s = ((float)d + 0.5f) * inverse_scale - 0.5f;
    int i = (int)floorf(s);
    float f = s - (float)i;
    if (i < 0) { i = 0; f = 0.0f; }
    if (i >= size - 1) { i = size - 1; f = 0.0f; }
    *i0 = i; *i1 = min(i + 1, size - 1); *a = f;
}
"""
