"""ResnetGenerator, layer for layer as junyanz/pytorch-CycleGAN-and-pix2pix so that
published CycleGAN weights load strictly (keys `model.<i>...`, see DESIGN.md), and
with CUT's anti-aliased sampling as taesungp/contrastive-unpaired-translation
builds it, so that published CUT weights load strictly too."""
from __future__ import annotations

from torch import nn

from .antialias import BlurDownsample, BlurUpsample
from .common import uses_bias
from ..errors import UsageError


def _pad(padding_type: str):
    """(padding module or None, conv padding) for a 3x3 conv keeping the size."""
    if padding_type == "reflect":
        return nn.ReflectionPad2d(1), 0
    if padding_type == "replicate":
        return nn.ReplicationPad2d(1), 0
    if padding_type == "zero":
        return None, 1
    raise UsageError(f"unknown padding_type {padding_type!r}; valid: reflect, replicate, zero")


class ResnetBlock(nn.Module):
    """x + conv_block(x); conv_block = [pad, conv3, norm, ReLU, (Dropout), pad, conv3, norm]."""

    def __init__(self, dim, padding_type="reflect", norm_layer=nn.BatchNorm2d, use_dropout=False, use_bias=True):
        super().__init__()
        layers = []
        for second in (False, True):
            pad, p = _pad(padding_type)
            layers += [pad] if pad is not None else []
            layers += [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
            if not second:
                layers += [nn.ReLU(True)] + ([nn.Dropout(0.5)] if use_dropout else [])
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 downsamplings, n_blocks residual blocks, two transposed-conv
    upsamplings, c7s1-output_nc, tanh. `antialias_down` (CUT's default) makes each
    downsampling a stride-1 conv, norm, ReLU and a blur-pool; `antialias_up` makes each
    upsampling a fixed blur upsampling, then a conv, norm and ReLU."""

    def __init__(self, input_nc, output_nc, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False,
                 n_blocks=6, padding_type="reflect", antialias_down=False, antialias_up=False):
        super().__init__()
        if n_blocks < 0:
            raise UsageError(f"n_blocks must be >= 0, got {n_blocks}")
        use_bias = uses_bias(norm_layer)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
                 norm_layer(ngf), nn.ReLU(True)]
        n_down = 2
        for i in range(n_down):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=1 if antialias_down else 2,
                                padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
            model += [BlurDownsample(ngf * mult * 2)] if antialias_down else []
        mult = 2 ** n_down
        model += [ResnetBlock(ngf * mult, padding_type, norm_layer, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            if antialias_up:
                model += [BlurUpsample(ngf * mult),
                          nn.Conv2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=1, padding=1, bias=use_bias)]
            else:
                model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                             output_padding=1, bias=use_bias)]
            model += [norm_layer(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)
        # Two stride-2 steps: the stride grid is 4 px. Any H, W works: the output is H, W
        # rounded up to a multiple of 4 (run_padded crops the extra at the bottom/right).
        self.size_multiple = 2 ** n_down
        self.accepts_any_size = True
        # The bottleneck (1/4 size) must be >= 2 px for the blocks' ReflectionPad2d(1).
        self.min_size = 2 * self.size_multiple

    def forward(self, x):
        return self.model(x)

    def check_layers(self, layers: list[int]) -> None:
        if not layers or min(layers) < 0 or max(layers) >= len(self.model) or sorted(set(layers)) != list(layers):
            raise UsageError(f"--nce_layers {','.join(map(str, layers))}: give ascending layer indices from 0 to "
                             f"{len(self.model) - 1} (this generator has {len(self.model)} layers)")

    def feature_channels(self, layers: list[int]) -> list[int]:
        """The channels of the outputs of `layers` (indices into `model`), known from the
        architecture alone: a conv sets them, every other layer keeps them."""
        self.check_layers(layers)
        channels, found = self.model[1].in_channels, {}
        for index, layer in enumerate(self.model):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                channels = layer.out_channels
            found[index] = channels
        return [found[i] for i in layers]

    def features(self, x, layers: list[int]) -> list:
        """The outputs of `layers` (indices into `model`, ascending), running the net only
        as far as the last of them (CUT's encode_only pass)."""
        wanted, last, out = set(layers), max(layers), []
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in wanted:
                out.append(x)
            if index == last:
                break
        return out

