"""Photometric jitter for training batches: the changes between theatres, scopes and procedures
(the light's colour, surgical smoke, focus, sensor noise) that a general model must not lean on.

    jitter = PhotometricJitter(strength=1.0, seed=0)
    images = jitter(images)  # float [B, 3, H, W] in 0-1, training batches only; the masks are unchanged

Each picture independently: a colour cast (each channel's gain 1 +- 0.2 x strength, half the
pictures), a haze (blended with a light grey, up to 40 % x strength, a quarter), a defocus blur
(sigma 0.5-1.5 px x strength, a quarter) and sensor noise (sd up to 0.03 x strength, a quarter);
ultralytics' own HSV jitter (hue, saturation, brightness) runs before it. Seeded: a run repeats.
"""
from __future__ import annotations

import math

import torch
from torchvision.transforms.v2.functional import gaussian_blur

CAST, HAZE, BLUR, NOISE = 0.5, 0.25, 0.25, 0.25  # the share of pictures each change is applied to


class PhotometricJitter:
    """Random colour cast, haze, blur and noise per picture, scaled by ``strength`` (0: none)."""

    def __init__(self, strength: float = 1.0, seed: int = 0):
        self.strength = strength
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, shape, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def _chosen(self, count: int, share: float) -> torch.Tensor:
        return torch.rand(count, generator=self.generator) < share

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        count, strength = images.shape[0], self.strength
        gains = 1 + strength * self._uniform((count, 3), -0.2, 0.2) * self._chosen(count, CAST)[:, None]
        haze = strength * self._uniform(count, 0.0, 0.4) * self._chosen(count, HAZE)
        grey = self._uniform(count, 0.6, 0.9)
        sigmas = strength * self._uniform(count, 0.5, 1.5) * self._chosen(count, BLUR)
        noise_sd = strength * self._uniform(count, 0.0, 0.03) * self._chosen(count, NOISE)
        noise = torch.randn(images.shape, generator=self.generator) * noise_sd[:, None, None, None]
        device = images.device
        images = images * gains[:, :, None, None].to(device)
        haze, grey = haze[:, None, None, None].to(device), grey[:, None, None, None].to(device)
        images = images * (1 - haze) + grey * haze
        blurred = [gaussian_blur(image, [2 * math.ceil(3 * sigma) + 1] * 2, [float(sigma)] * 2) if sigma > 0 else image
                   for image, sigma in zip(images, sigmas.tolist())]
        return (torch.stack(blurred) + noise.to(device)).clamp(0, 1)
