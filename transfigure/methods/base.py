"""What a training method is, in one place.

A method says which networks it has, which of them translate, what data its
step needs, and what its losses are. It never calls `backward()` or
`optimizer.step()`: `losses` yields, phase by phase, the name of one
optimizer and the losses that optimizer minimises; the loop in `train.py`
(`optimize`) does the backward pass and the step between phases, so mixed
precision or DistributedDataParallel are added there once for every method.

A phase's losses are computed after the previous phase's step (pix2pix's
generator is judged by the discriminator it has just updated), which is why
`losses` is a generator rather than a function that returns everything.

Adding a method: subclass `Method` in its own file and add one line to
`METHODS` in `methods/__init__.py`.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterator

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ConfigError, Options
from ..nets import run_padded
from ..nets.features import build_feature_extractor

Phase = tuple[str, dict[str, torch.Tensor]]  # (optimizer name, the losses it minimises)


def set_requires_grad(nets, requires_grad: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(requires_grad)


def check_training_size(opt: Options) -> None:
    """A PatchGAN halves its input n_layers times, then a stride-1 conv takes a
    pixel off; its normalization needs more than one value per channel. Catch
    crops too small for that here, not as a shape error deep in PyTorch."""
    if opt.netD == "pixel" or not ("crop" in opt.preprocess or opt.preprocess.startswith("resize")):
        return
    layers = 3 if opt.netD == "basic" else opt.n_layers_D
    smallest = 3 * 2 ** layers
    if opt.crop_size < smallest:
        raise ConfigError(f"--crop_size {opt.crop_size} is too small for --netD {opt.netD} ({layers} layers): use "
                          f"at least {smallest}, or fewer --n_layers_D with --netD n_layers, or --netD pixel")


class Method:
    # Option defaults this method changes (the official code's modify_commandline_options).
    defaults: ClassVar[dict[str, Any]] = {}
    # Each generator and the dataset domain ("A" or "B") it translates from.
    generators: ClassVar[dict[str, str]] = {"G": "A"}
    # The optimizer of the generators: it alone runs in the initialization phase,
    # and its losses are the metric of --lr_policy plateau.
    generator_optimizer: ClassVar[str] = "G"
    # The method's own loss includes the content loss (not only the --init_epochs phase).
    uses_content_loss: ClassVar[bool] = False

    nets: nn.ModuleDict

    def __init__(self, opt: Options, device: torch.device):
        self.check_options(opt)
        check_training_size(opt)
        self.opt = opt
        self.device = device
        self.epoch = opt.epoch_count
        # Built with the method, so missing pretrained weights stop the run before its first step.
        self.content = build_feature_extractor(opt.content_net, opt.content_weights or None, "--content_weights") \
            .to(device) if self.uses_content_loss or opt.init_epochs > 0 else None

    # --- what the loop and the data need to know ----------------------------
    @classmethod
    def defaults_for(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The option defaults this method changes, given the options set so far
        (a mode option may choose among sets of defaults)."""
        return cls.defaults

    @classmethod
    def single_generator(cls) -> bool:
        return len(cls.generators) == 1

    @classmethod
    def needs_smoothed_targets(cls, opt: Options) -> bool:
        """Whether each batch needs "B_smooth": the B images with their edges smoothed."""
        return opt.edge_smoothing

    @classmethod
    def check_options(cls, opt: Options) -> None:
        """Refuse option combinations this method cannot train (ConfigError naming the option)."""
        if 2 in (opt.input_nc, opt.output_nc):
            raise ConfigError("--input_nc/--output_nc 2 (the ab channels of Lab) is only for --model colorization")

    @classmethod
    def as_translator(cls, generator: nn.Module) -> nn.Module:
        """The module that turns images into images, given a trained generator."""
        return generator

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def seed_streams(self, seed: int) -> None:
        """Seed the method's own random streams (image pools, patch sampling) from `seed`.
        Called with --seed when the method is made, and again by each further torchrun
        process with a seed of its own, so the processes do not draw the same numbers."""

    @property
    def initializing(self) -> bool:
        """In the --init_epochs phase: generators learn to keep their input's content, nothing else."""
        return self.content is not None and self.epoch - self.opt.epoch_count < self.opt.init_epochs

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Optimizer name -> the parameters it updates."""
        return {"G": list(self.nets["G"].parameters()), "D": list(self.nets["D"].parameters())}

    def translator(self, direction: str) -> nn.Module:
        """The trained net that translates `direction` (of the dataset's folders)."""
        return self.as_translator(self.nets["G"])

    # --- one training iteration --------------------------------------------
    def losses(self, batch: dict) -> Iterator[Phase]:
        if self.initializing:
            yield self.generator_optimizer, self.initialization_losses(batch)
        else:
            yield from self.step_losses(batch)

    def step_losses(self, batch: dict) -> Iterator[Phase]:
        """The method's own phases, after any initialization phase."""
        raise NotImplementedError

    def initialization_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Content loss only: each generator reproduces its input's content features."""
        losses = {}
        for name, domain in self.generators.items():
            real = batch[domain].to(self.device, non_blocking=True)
            key = "content" if self.single_generator() else f"content_{domain}"
            losses[key] = self.content_loss(run_padded(self.nets[name], real), real)
        return losses

    def content_loss(self, translated: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.content(translated), self.content(source).detach()) * self.opt.lambda_content

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # --- state beyond the nets (an image pool) -----------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
