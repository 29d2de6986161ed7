"""Camera model of the endoscope: field of view (and, later, intrinsics and pixel scale)."""
