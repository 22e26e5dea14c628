"""Training methods: what one training step does and which nets translate.

A method owns its networks and losses; the generic loop in `train.py` owns
optimizers, schedules, devices, checkpoints and logging.
"""
from __future__ import annotations

from .cartoongan import CartoonGAN
from .cyclegan import CycleGAN
from .pix2pix import Colorization, Pix2Pix
from ..errors import UsageError

METHODS = {"cycle_gan": CycleGAN, "pix2pix": Pix2Pix, "colorization": Colorization, "cartoongan": CartoonGAN}


def create_method(opt, device):
    try:
        cls = METHODS[opt.model]
    except KeyError:
        raise UsageError(f"--model {opt.model!r} is not one of {', '.join(METHODS)}") from None
    return cls(opt, device)
