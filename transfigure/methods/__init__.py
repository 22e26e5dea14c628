"""Training methods: what one training step computes and which nets translate.

A method (a `Method` subclass, see base.py) owns its networks and losses; the
generic loop in `train.py` owns optimizers, backward passes, schedules,
devices, checkpoints and logging.
"""
from __future__ import annotations

import torch

from .base import Method
from .cartoongan import CartoonGAN
from .cut import CUT
from .cyclegan import CycleGAN
from .pix2pix import Colorization, Pix2Pix
from ..config import Options
from ..errors import UsageError

METHODS: dict[str, type[Method]] = {
    "cycle_gan": CycleGAN,
    "pix2pix": Pix2Pix,
    "colorization": Colorization,
    "cartoongan": CartoonGAN,
    "cut": CUT,
}


def method_class(model: str) -> type[Method]:
    try:
        return METHODS[model]
    except KeyError:
        raise UsageError(f"--model {model!r} is not one of {', '.join(METHODS)}") from None


def method_of(saved_options: dict) -> type[Method]:
    """The method of a run, from its options.yaml (the default method when it has none)."""
    return method_class(saved_options.get("model", Options.model))


def create_method(opt, device) -> Method:
    method = method_class(opt.model)(opt, device)
    if opt.channels_last:
        method.nets.to(memory_format=torch.channels_last)
    if opt.compile != "off":
        for net in method.nets.values():
            net.compile(backend=opt.compile)  # in place: the state_dict keys stay the checkpoints'
    return method
