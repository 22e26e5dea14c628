"""The official preprocess modes (--preprocess), with explicit randomness.

Official code draws crops and flips from the global `random` module, so a
sample depends on which worker process made it and on everything drawn
before. Here the random choices are made once per sample by `get_params`
from a `random.Random` the dataset seeds with (seed, epoch, index), and
`apply_transform` is a pure function of (image, options, params); aligned
datasets pass the same params to A and B (official get_params pattern).
"""
from __future__ import annotations

import random

import torch
from PIL import Image

from .images import image_to_tensor

BICUBIC = Image.Resampling.BICUBIC  # official default for photos (and labels)


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator for one sample. A str seed is hashed with SHA-512 by
    `random.Random` (not Python's salted hash()), so it is the same in every
    process and never collides between (epoch, index) pairs as sums can."""
    return random.Random(f"transfigure/{seed}/{epoch}/{index}")


def scaled_size(opt, width: int, height: int) -> tuple[int, int]:
    """Image size after the scaling step of opt.preprocess, before cropping."""
    w, h, mode = width, height, opt.preprocess
    if mode.startswith("resize"):
        w = h = opt.load_size
    elif mode.startswith("scale_width"):
        # Official __scale_width: width to load_size keeping the aspect ratio, height at least crop_size.
        w, h = opt.load_size, int(max(opt.load_size * height / width, opt.crop_size))
    elif mode == "none":
        # Official __make_power_2(base=4): nearest multiple of 4 so the down/up-sampling nets give
        # back the input size; at least 4 so tiny images do not vanish.
        w, h = max(4, round(width / 4) * 4), max(4, round(height / 4) * 4)
    if "crop" in mode and min(w, h) < opt.crop_size:
        # Only --preprocess crop on a small image gets here. Official code returns it uncropped
        # (a batch of mixed sizes fails to collate) or pads one side with black; we upscale,
        # keeping the aspect ratio, because a padded border is an artifact that the
        # discriminator learns to spot and the generator learns to paint.
        s = opt.crop_size / min(w, h)
        w, h = max(opt.crop_size, round(w * s)), max(opt.crop_size, round(h * s))
    return w, h


def get_params(opt, size: tuple[int, int], rng: random.Random) -> dict:
    """Crop position and flip for an image of `size` (width, height). Draws the
    same number of values in every mode, so the sequence of a sample's rng does
    not depend on the options."""
    w, h = scaled_size(opt, *size)
    x = rng.randint(0, max(0, w - opt.crop_size))
    y = rng.randint(0, max(0, h - opt.crop_size))
    return {"crop_pos": (x, y), "flip": rng.random() > 0.5}


def apply_transform(img: Image.Image, opt, params: dict, method=BICUBIC) -> torch.Tensor:
    """Scale, crop, flip per opt and params; then a [C,H,W] tensor in [-1, 1]."""
    size = scaled_size(opt, *img.size)
    if size != img.size:
        img = img.resize(size, method)
    if "crop" in opt.preprocess:
        x, y = params["crop_pos"]
        img = img.crop((x, y, x + opt.crop_size, y + opt.crop_size))
    if not opt.no_flip and params["flip"]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image_to_tensor(img)


def transform(img: Image.Image, opt, rng: random.Random) -> torch.Tensor:
    """`apply_transform` with fresh params from `rng` (one unpaired image)."""
    return apply_transform(img, opt, get_params(opt, img.size, rng))
