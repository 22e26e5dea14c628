"""sRGB <-> CIE Lab (D65) on tensors, for the colorization model.

Scaling follows the official colorization code: L/50 - 1 in [-1, 1] and
ab/110 in about [-1, 1]."""
from __future__ import annotations

import torch

_WHITE_D65 = (0.95047, 1.0, 1.08883)
_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_EPSILON = 216 / 24389  # CIE constants: (6/29)^3 and (29/3)^3 / 116 below
_KAPPA = 24389 / 27


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(min=0)
    return torch.where(c > 0.0031308, 1.055 * c ** (1 / 2.4) - 0.055, 12.92 * c)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] sRGB in [0, 1] -> Lab (L in [0, 100])."""
    linear = _srgb_to_linear(rgb.clamp(0, 1))
    xyz = torch.einsum("ij,...jhw->...ihw", _RGB_TO_XYZ.to(rgb), linear)
    white = torch.tensor(_WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _EPSILON, t.clamp(min=1e-12) ** (1 / 3), (_KAPPA * t + 16) / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB in [0, 1] (out-of-gamut colors clipped)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], -3)
    t = torch.where(f ** 3 > _EPSILON, f ** 3, (116 * f - 16) / _KAPPA)
    white = torch.tensor(_WHITE_D65, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    linear = torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(_RGB_TO_XYZ).to(lab), t * white)
    return _linear_to_srgb(linear).clamp(0, 1)


def rgb_to_network_lab(rgb_pm1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB in [-1, 1] -> (L/50 - 1, ab/110): the colorization model's input and target."""
    lab = rgb_to_lab((rgb_pm1 + 1) / 2)
    return lab[..., :1, :, :] / 50 - 1, lab[..., 1:, :, :] / 110


def network_lab_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(L/50 - 1, ab/110) -> RGB in [-1, 1]."""
    lab = torch.cat([(L + 1) * 50, ab * 110], -3)
    return lab_to_rgb(lab) * 2 - 1
