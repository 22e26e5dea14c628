"""CartoonGAN generator (Chen et al., CVPR 2018) in the flat layout of the published
weights (Yijunmaverick/CartoonGAN-Test-Pytorch-Torch `Transformer`), so the Hayao,
Hosoda, Paprika and Shinkai generators load strictly: `conv01_1`, `in01_1.scale/.shift`,
... `deconv03_1`, 94 tensors. The same class builds the paper's training generator
(BatchNorm) and the "improved" variant (InstanceNorm, LeakyReLU) under the same names."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import load_official_state_dict
from ..errors import UsageError

__all__ = ["CartoonGANGenerator", "PublishedInstanceNorm", "read_published_weights", "load_published_weights"]


class PublishedInstanceNorm(nn.Module):
    """The reference implementation's instance norm: per-channel mean and biased variance
    over H,W, (x - mean) / sqrt(var + 1e-9) * scale + shift. Its own class (not
    nn.InstanceNorm2d) because the published keys are `scale`/`shift` and eps is 1e-9."""

    def __init__(self, num_features: int, eps: float = 1e-9):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(num_features))
        self.shift = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        # Same formula folded into one per-channel multiply-add: one pass over x instead of
        # four (2.5x faster on CPU), equal to the unfolded form within float rounding.
        k = self.scale[:, None, None] * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.shift[:, None, None] - mean * k, x, k)


def _norm_layer(norm: str):
    if norm == "published":
        return PublishedInstanceNorm
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "instance":
        # Affine, so swapping BatchNorm for InstanceNorm (the improved variant) changes only
        # where the statistics come from, not the layer's learnable scale and shift.
        return lambda c: nn.InstanceNorm2d(c, affine=True)
    raise UsageError(f"unknown CartoonGAN norm {norm!r}; valid: published, batch, instance")


class CartoonGANGenerator(nn.Module):
    """k7n64 conv, norm, act; [k3n128 s2, k3n128, norm, act]; [k3n256 s2, k3n256, norm, act];
    n_blocks residual blocks (reflect pad 1, k3n256, norm, act, reflect pad 1, k3n256, norm,
    + input); [k3n128 transposed s2, k3n128, norm, act]; [k3n64 transposed s2, k3n64,
    norm, act]; reflect pad 3, k7n3 conv; tanh.

    The default (`norm='published'`, ReLU, 8 blocks) is the published generator exactly.
    Every conv has a bias whatever the norm: the published layout has them, and keeping
    them makes every variant share one key set. Any H, W works, as in the authors' test
    script: the output is H, W rounded up to a multiple of 4 (`size_multiple`), and
    `nets.run_padded` crops it back."""

    size_multiple = 4
    accepts_any_size = True
    min_size = 8  # reflect padding needs sides > 3 at full and > 1 at quarter resolution; run_padded pads up

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 8,
                 norm: str = "published", activation: str = "relu", negative_slope: float = 0.01):
        super().__init__()
        if activation not in ("relu", "leaky_relu"):
            raise UsageError(f"unknown activation {activation!r}; valid: relu, leaky_relu")
        if n_blocks < 0:
            raise UsageError(f"n_blocks must be >= 0, got {n_blocks}")
        # 0.01: the generator slope of the improved-CartoonGAN study (its discriminator used 0.2).
        self.activation, self.negative_slope, self.n_blocks = activation, negative_slope, n_blocks
        norm_layer = _norm_layer(norm)
        c1, c2, c3 = ngf, ngf * 2, ngf * 4
        self.conv01_1 = nn.Conv2d(input_nc, c1, 7)
        self.in01_1 = norm_layer(c1)
        self.conv02_1 = nn.Conv2d(c1, c2, 3, 2, 1)
        self.conv02_2 = nn.Conv2d(c2, c2, 3, 1, 1)
        self.in02_1 = norm_layer(c2)
        self.conv03_1 = nn.Conv2d(c2, c3, 3, 2, 1)
        self.conv03_2 = nn.Conv2d(c3, c3, 3, 1, 1)
        self.in03_1 = norm_layer(c3)
        for i in self._block_ids():
            for j in (1, 2):
                setattr(self, f"conv{i:02d}_{j}", nn.Conv2d(c3, c3, 3))
                setattr(self, f"in{i:02d}_{j}", norm_layer(c3))
        # The published file keeps the numbering in12/in13 after 8 blocks; with another block
        # count the up-path norms follow on from the last block.
        up = 4 + n_blocks
        self._up_norms = (f"in{up:02d}_1", f"in{up + 1:02d}_1")
        self.deconv01_1 = nn.ConvTranspose2d(c3, c2, 3, 2, 1, 1)
        self.deconv01_2 = nn.Conv2d(c2, c2, 3, 1, 1)
        setattr(self, self._up_norms[0], norm_layer(c2))
        self.deconv02_1 = nn.ConvTranspose2d(c2, c1, 3, 2, 1, 1)
        self.deconv02_2 = nn.Conv2d(c1, c1, 3, 1, 1)
        setattr(self, self._up_norms[1], norm_layer(c1))
        self.deconv03_1 = nn.Conv2d(c1, output_nc, 7)

    def _block_ids(self):
        return range(4, 4 + self.n_blocks)

    def _act(self, x):
        return F.relu(x) if self.activation == "relu" else F.leaky_relu(x, self.negative_slope)

    def forward(self, x):
        act = self._act
        y = act(self.in01_1(self.conv01_1(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        y = act(self.in02_1(self.conv02_2(self.conv02_1(y))))
        y = act(self.in03_1(self.conv03_2(self.conv03_1(y))))
        for i in self._block_ids():
            conv1, norm1, conv2, norm2 = (getattr(self, f"{kind}{i:02d}_{j}")
                                          for j in (1, 2) for kind in ("conv", "in"))
            r = act(norm1(conv1(F.pad(y, (1, 1, 1, 1), mode="reflect"))))
            y = y + norm2(conv2(F.pad(r, (1, 1, 1, 1), mode="reflect")))  # no activation after the sum
        up1, up2 = (getattr(self, n) for n in self._up_norms)
        y = act(up1(self.deconv01_2(self.deconv01_1(y))))
        y = act(up2(self.deconv02_2(self.deconv02_1(y))))
        return torch.tanh(self.deconv03_1(F.pad(y, (3, 3, 3, 3), mode="reflect")))


def read_published_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a folder of `<key>.npy` files (one per tensor, PyTorch layout) or from
    a .pth/.pt/.safetensors state dict. Never unpickles objects."""
    path = Path(path)
    if path.is_dir():
        # Hidden names are skipped: partial downloads and editor/OS litter, not weights.
        files = sorted(f for f in path.glob("*.npy") if not f.name.startswith("."))
        if not files:
            raise UsageError(f"{path}: no .npy files in this folder (expected one <key>.npy per tensor, "
                             "e.g. conv01_1.weight.npy)")
        sd = {}
        for f in files:
            try:
                sd[f.stem] = torch.from_numpy(np.load(f, allow_pickle=False))
            except Exception as e:  # truncated file, pickled object array, not a .npy at all
                raise UsageError(f"{f}: cannot read it as a NumPy array ({type(e).__name__}: {e})") from e
        return sd
    if path.is_file():
        if path.suffix.lower() not in (".pth", ".pt", ".safetensors"):
            raise UsageError(f"{path}: expected a folder of .npy files or a .pth/.pt/.safetensors file")
        from ..checkpoint import load_tensor_file  # lazy: keeps nets free of the config/checkpoint imports

        return load_tensor_file(path)
    raise FileNotFoundError(f"{path}: no such weights file or folder")


def load_published_weights(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load published CartoonGAN weights (see `read_published_weights`) strictly into `net`.
    Raises ValueError naming the file or folder and the missing/unexpected keys."""
    sd = read_published_weights(path)
    try:
        return load_official_state_dict(net, sd)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from e
