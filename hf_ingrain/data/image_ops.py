"""Tensor operations on image batches shared by the attacks and the verification protocols."""

import torch
import torch.nn.functional as F

LADDERS = ("occlusion", "noise", "blur", "blend")
"""The degradations of the label-only ladder (`hf_ingrain.verification.label_only.degrade`)."""


def gaussian_blur(pixels: torch.Tensor, sigma: float, radius: int, padding_mode: str = "reflect") -> torch.Tensor:
    """A separable Gaussian blur of `(N, C, H, W)` `pixels` with standard deviation `sigma` pixels, its kernel cut at
    `radius` pixels each side, the borders padded with `padding_mode` (as `torch.nn.functional.pad`)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(device=pixels.device, dtype=pixels.dtype)
    channels = pixels.shape[1]
    blurred = F.pad(pixels, (radius, radius, 0, 0), mode=padding_mode)
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    blurred = F.pad(blurred, (0, 0, radius, radius), mode=padding_mode)
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
