"""PSNR and SSIM of generated images against ground-truth pairs (pix2pix-style
tasks, or synthetic tasks with held-out pairs).

SSIM follows Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 0.01,
K2 0.03, data range 255, computed per RGB channel and averaged over the
valid (unpadded) positions, the convention of skimage's
`structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import list_images, load_image
from ..errors import UsageError


def psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when equal)."""
    mse = float(np.mean((pred.astype(np.float64) - true.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean SSIM of two uint8 HxWx3 (or HxW) images; both sides at least 11 pixels."""
    if pred.shape != true.shape:
        raise UsageError(f"SSIM needs equal shapes, got {pred.shape} and {true.shape}")
    if min(pred.shape[:2]) < 11:
        raise UsageError(f"SSIM needs images of at least 11x11 pixels, got {pred.shape[1]}x{pred.shape[0]}")
    to_tensor = (lambda a: torch.from_numpy(np.array(a, np.float64)).reshape(*a.shape[:2], -1).permute(2, 0, 1)
                 .unsqueeze(1))
    x, y = to_tensor(pred), to_tensor(true)            # [C, 1, H, W]
    w = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx ** 2
    syy = F.conv2d(y * y, w) - my ** 2
    sxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def score_pairs(pred_dir: str | Path, true_dir: str | Path) -> dict:
    """Mean PSNR (dB; identical pairs count as 100 dB) and SSIM of every image in
    `pred_dir` against the file with the same stem in `true_dir`."""
    psnrs, ssims = [], []
    for a, b in image_pairs(pred_dir, true_dir):
        psnrs.append(min(psnr(a, b), 100.0))
        ssims.append(ssim(a, b))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "pairs": len(psnrs)}


def image_pairs(pred_dir: str | Path, true_dir: str | Path):
    """(generated, ground truth) uint8 RGB arrays for every image of `pred_dir`, matched
    by file stem; a generated image without ground truth, or of another size, is an error."""
    truths = {p.stem: p for p in list_images(true_dir, expected="ground-truth images")}
    preds = list_images(pred_dir, expected="generated images")
    missing = [p.name for p in preds if p.stem not in truths]
    if missing:
        raise FileNotFoundError(f"no ground truth in {true_dir} for {', '.join(missing[:3])}"
                                f"{' ...' if len(missing) > 3 else ''} of {pred_dir}")
    for p in preds:
        a, b = (np.array(load_image(f, 3)) for f in (p, truths[p.stem]))
        if a.shape != b.shape:
            raise UsageError(f"{p} is {a.shape[1]}x{a.shape[0]} but its ground truth {truths[p.stem]} is "
                             f"{b.shape[1]}x{b.shape[0]}")
        yield a, b
