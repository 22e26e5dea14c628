"""PatchGAN discriminators, layer for layer as junyanz/pytorch-CycleGAN-and-pix2pix."""
from __future__ import annotations

from torch import nn

from .antialias import BlurDownsample
from .common import uses_bias


class NLayerDiscriminator(nn.Module):
    """n_layers=3 is the 70x70 PatchGAN: 4x4 convs, n_layers stride-2 steps, then two
    stride-1 convs; one logit per patch. Channels ndf * min(2**n, 8). `antialias`
    (CUT's default) makes each stride-2 step a stride-1 conv and a blur-pool after the
    activation, as the CUT authors' discriminator."""

    def __init__(self, input_nc, ndf=64, n_layers=3, norm_layer=nn.BatchNorm2d, antialias=False):
        super().__init__()
        use_bias = uses_bias(norm_layer)
        kw, padw = 4, 1
        stride = 1 if antialias else 2
        # The first conv has no norm after it, so it keeps its bias whatever the norm.
        seq = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=stride, padding=padw), nn.LeakyReLU(0.2, True)]
        seq += [BlurDownsample(ndf)] if antialias else []
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=stride, padding=padw, bias=use_bias),
                    norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
            seq += [BlurDownsample(ndf * mult)] if antialias else []
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
                norm_layer(ndf * mult), nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: one logit per pixel (attribute `net`, as upstream)."""

    def __init__(self, input_nc, ndf=64, norm_layer=nn.BatchNorm2d):
        super().__init__()
        use_bias = uses_bias(norm_layer)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias))

    def forward(self, x):
        return self.net(x)


class CartoonGANDiscriminator(nn.Module):
    """CartoonGAN's patch discriminator (Chen et al. 2018): k3n32s1, LReLU;
    k3n64s2, LReLU; k3n128s1, norm, LReLU; k3n128s2, LReLU; k3n256s1, norm,
    LReLU; k3n256s1, norm, LReLU; k3n1s1. `ndf` scales every width (paper: 32)."""

    def __init__(self, input_nc: int = 3, ndf: int = 32, norm_layer=nn.BatchNorm2d, negative_slope: float = 0.2):
        super().__init__()
        bias = uses_bias(norm_layer)

        def lrelu():
            return nn.LeakyReLU(negative_slope, True)

        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 3, 1, 1), lrelu(),
            nn.Conv2d(ndf, ndf * 2, 3, 2, 1), lrelu(),
            nn.Conv2d(ndf * 2, ndf * 4, 3, 1, 1, bias=bias), norm_layer(ndf * 4), lrelu(),
            nn.Conv2d(ndf * 4, ndf * 4, 3, 2, 1), lrelu(),
            nn.Conv2d(ndf * 4, ndf * 8, 3, 1, 1, bias=bias), norm_layer(ndf * 8), lrelu(),
            nn.Conv2d(ndf * 8, ndf * 8, 3, 1, 1, bias=bias), norm_layer(ndf * 8), lrelu(),
            nn.Conv2d(ndf * 8, 1, 3, 1, 1))

    def forward(self, x):
        return self.model(x)
