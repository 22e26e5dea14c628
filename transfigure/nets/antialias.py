"""Anti-aliased down- and upsampling (Zhang, "Making convolutional networks
shift-invariant again", 2019), as the CUT authors' networks use them: a
stride-1 conv followed by a fixed binomial blur with stride 2 instead of a
strided conv, and a fixed-filter transposed conv followed by a conv instead
of a learned transposed conv.

The filters are buffers named `filt`, so the authors' state dicts (which
hold them) load strictly; they are constants, never trained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BINOMIAL = {3: (1.0, 2.0, 1.0), 4: (1.0, 3.0, 3.0, 1.0)}


def binomial_filter(size: int) -> torch.Tensor:
    """The normalised 2-D binomial filter of `size` x `size` taps."""
    a = torch.tensor(_BINOMIAL[size], dtype=torch.float64)
    f = a[:, None] * a[None, :]
    return (f / f.sum()).float()


class BlurDownsample(nn.Module):
    """Reflection-pad by 1, blur with the 3x3 binomial filter, keep every second pixel:
    H -> ceil(H / 2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Replicate-pad by 1, transposed conv with the 4x4 binomial filter (times 4, so
    a constant image stays constant) at stride 2, trimmed to exactly 2H x 2W."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", binomial_filter(4)[None, None].repeat(channels, 1, 1, 1) * 4)
        self.pad = nn.ReplicationPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt.to(x.dtype), stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]
