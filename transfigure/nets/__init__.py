"""Networks: the official CycleGAN/pix2pix generators and discriminators, built by name,
with loaders for their published state dicts and helpers for arbitrary image sizes."""
from __future__ import annotations

import math
import re

from torch import nn

from .common import (clean_official_state_dict, describe_state_dict, get_norm_layer, init_weights,
                     load_official_state_dict, run_padded, size_multiple)
from .cartoongan import CartoonGANGenerator
from .patchgan import CartoonGANDiscriminator, NLayerDiscriminator, PixelDiscriminator
from .resnet import ResnetBlock, ResnetGenerator
from .unet import UnetGenerator, UnetSkipConnectionBlock
from ..errors import UsageError

__all__ = ["define_G", "define_D", "init_weights", "get_norm_layer", "size_multiple", "run_padded",
           "clean_official_state_dict", "load_official_state_dict", "describe_state_dict",
           "ResnetGenerator", "ResnetBlock", "UnetGenerator", "UnetSkipConnectionBlock",
           "NLayerDiscriminator", "PixelDiscriminator", "CartoonGANGenerator", "CartoonGANDiscriminator",
           "GENERATOR_NAMES", "DISCRIMINATOR_NAMES"]

GENERATOR_NAMES = ("resnet_9blocks, resnet_6blocks, resnet_<N>blocks (N >= 1), unet_32, unet_64, unet_128, "
                   "unet_256, cartoongan (8 blocks), cartoongan_<N>blocks")
DISCRIMINATOR_NAMES = "basic, n_layers, pixel, cartoongan"


def define_G(input_nc, output_nc, ngf=64, netG="resnet_9blocks", norm="instance", use_dropout=False,
             init_type="normal", init_gain=0.02, activation="relu", negative_slope=0.01,
             antialias=False, antialias_up=False) -> nn.Module:
    """A generator by its official name, initialised as upstream does. unet_<S> has
    log2(S) downsamplings (S a power of two >= 32): unet_256 = 8, unet_128 = 7.
    cartoongan[_<N>blocks] is CartoonGAN's generator in the published layout;
    `activation` and `negative_slope` apply to it only. `antialias`/`antialias_up`
    (CUT's blur-pool sampling) apply to the resnet generators only."""
    if (antialias or antialias_up) and not re.fullmatch(r"resnet_\d+blocks", netG):
        raise UsageError(f"--netG {netG}: anti-aliased sampling (--no_antialias false, --no_antialias_up false) "
                         "exists for the resnet generators only; pass --no_antialias --no_antialias_up")
    if m := re.fullmatch(r"cartoongan(?:_(\d+)blocks)?", netG):
        if norm not in ("batch", "instance"):
            raise UsageError(f"--norm {norm!r}: the CartoonGAN generator takes batch (paper) or instance")
        net = CartoonGANGenerator(input_nc, output_nc, ngf, int(m.group(1) or 8), norm, activation, negative_slope)
        return init_weights(net, init_type, init_gain)
    norm_layer = get_norm_layer(norm)
    if m := re.fullmatch(r"resnet_(\d+)blocks", netG):
        if int(m.group(1)) < 1:
            raise UsageError(f"{netG!r} needs at least one block; valid generators: {GENERATOR_NAMES}")
        net = ResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, n_blocks=int(m.group(1)),
                              antialias_down=antialias, antialias_up=antialias_up)
    elif (m := re.fullmatch(r"unet_(\d+)", netG)) and int(m.group(1)) >= 32 and \
            int(m.group(1)) & (int(m.group(1)) - 1) == 0:
        net = UnetGenerator(input_nc, output_nc, int(math.log2(int(m.group(1)))), ngf, norm_layer, use_dropout)
    else:
        raise UsageError(f"unknown generator {netG!r}; valid: {GENERATOR_NAMES}")
    return init_weights(net, init_type, init_gain)


def define_D(input_nc, ndf=64, netD="basic", n_layers_D=3, norm="instance", init_type="normal",
             init_gain=0.02, antialias=False) -> nn.Module:
    """A discriminator by its official name: basic (70x70 PatchGAN = 3 layers),
    n_layers (n_layers_D stride-2 convs), pixel (1x1 PatchGAN). `antialias`: the
    PatchGANs with CUT's blur-pool downsampling."""
    norm_layer = get_norm_layer(norm)
    if netD in ("basic", "n_layers"):
        n = 3 if netD == "basic" else int(n_layers_D)
        if n < 1:
            raise UsageError(f"n_layers_D must be >= 1, got {n_layers_D}")
        net = NLayerDiscriminator(input_nc, ndf, n, norm_layer, antialias=antialias)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm_layer)
    elif netD == "cartoongan":
        net = CartoonGANDiscriminator(input_nc, ndf, norm_layer)
    else:
        raise UsageError(f"unknown discriminator {netD!r}; valid: {DISCRIMINATOR_NAMES}")
    return init_weights(net, init_type, init_gain)
