"""CycleGAN (Zhu et al., ICCV 2017): two generators, two discriminators,
adversarial + cycle-consistency + identity losses. Naming follows the
official code: G_A maps A->B and D_A judges domain B images.

The paper's ablations and baselines are weightings of the same step:
GAN alone (--lambda_A 0 --lambda_B 0), cycle alone (--lambda_GAN 0),
GAN + forward cycle (--lambda_B 0), GAN + backward cycle (--lambda_A 0),
pixel loss + GAN (--lambda_pixel, SimGAN) and feature loss + GAN
(--lambda_feature with --feature_net). A term whose weight is 0 is not
computed at all, so it cannot leak gradients."""
from __future__ import annotations

import itertools

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ConfigError, Options
from .base import Method, set_requires_grad
from ..image_pool import ImagePool
from ..losses import GANLoss, discriminator_loss
from ..nets import define_D, run_padded
from ..nets.spec import GeneratorSpec
from ..nets.features import build_feature_extractor


class CycleGAN(Method):
    generators = {"G_A": "A", "G_B": "B"}

    @classmethod
    def check_options(cls, opt: Options) -> None:
        super().check_options(opt)
        for name in ("lambda_identity", "lambda_pixel", "lambda_feature"):
            if getattr(opt, name) > 0 and opt.input_nc != opt.output_nc:
                raise ConfigError(f"--{name} {getattr(opt, name)} compares A and B images, so it needs --input_nc "
                                  f"equal to --output_nc (got {opt.input_nc} and {opt.output_nc}); set it to 0")
        if not any(getattr(opt, name) > 0 for name in ("lambda_GAN", "lambda_A", "lambda_B", "lambda_pixel",
                                                       "lambda_feature")):
            raise ConfigError("every loss weight is 0: nothing to train (check --lambda_GAN, --lambda_A, "
                              "--lambda_B, --lambda_pixel, --lambda_feature)")

    def __init__(self, opt: Options, device: torch.device):
        super().__init__(opt, device)
        d = dict(ndf=opt.ndf, netD=opt.netD, n_layers_D=opt.n_layers_D, norm=opt.norm,
                 init_type=opt.init_type, init_gain=opt.init_gain)
        self.nets = nn.ModuleDict({
            "G_A": GeneratorSpec.from_options(opt, "G_A").build(opt.init_type, opt.init_gain),
            "G_B": GeneratorSpec.from_options(opt, "G_B").build(opt.init_type, opt.init_gain),
            "D_A": define_D(opt.output_nc, **d),
            "D_B": define_D(opt.input_nc, **d),
        }).to(device)
        self.gan_loss = GANLoss(opt.gan_mode)
        # Built before training starts, so missing pretrained weights stop the run before its first step.
        self.features = build_feature_extractor(opt.feature_net, opt.feature_weights or None, "--feature_weights").to(device) \
            if opt.lambda_feature > 0 else None
        self.pool_A = ImagePool(opt.pool_size)  # fakes of domain B, for D_A
        self.pool_B = ImagePool(opt.pool_size)
        self.seed_streams(opt.seed)

    def seed_streams(self, seed: int) -> None:
        self.pool_A.rng.seed(seed * 2 + 1)
        self.pool_B.rng.seed(seed * 2 + 2)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        n = self.nets
        return {"G": list(itertools.chain(n["G_A"].parameters(), n["G_B"].parameters())),
                "D": list(itertools.chain(n["D_A"].parameters(), n["D_B"].parameters()))}

    def translator(self, direction: str) -> nn.Module:
        return self.as_translator(self.nets["G_A" if direction == "AtoB" else "G_B"])

    def step_losses(self, batch: dict):
        o, n = self.opt, self.nets
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        fake_B = run_padded(n["G_A"], real_A)
        fake_A = run_padded(n["G_B"], real_B)

        # Generators: discriminators are fixed while the generators learn to fool them.
        set_requires_grad([n["D_A"], n["D_B"]], False)
        losses = {}
        if o.lambda_identity > 0 and (o.lambda_A > 0 or o.lambda_B > 0):
            losses["idt_A"] = F.l1_loss(run_padded(n["G_A"], real_B), real_B) * o.lambda_B * o.lambda_identity
            losses["idt_B"] = F.l1_loss(run_padded(n["G_B"], real_A), real_A) * o.lambda_A * o.lambda_identity
        if o.lambda_GAN > 0:
            losses["G_A"] = self.gan_loss(n["D_A"](fake_B), True) * o.lambda_GAN
            losses["G_B"] = self.gan_loss(n["D_B"](fake_A), True) * o.lambda_GAN
        if o.lambda_A > 0:  # forward cycle A -> B -> A
            losses["cycle_A"] = F.l1_loss(run_padded(n["G_B"], fake_B), real_A) * o.lambda_A
        if o.lambda_B > 0:  # backward cycle B -> A -> B
            losses["cycle_B"] = F.l1_loss(run_padded(n["G_A"], fake_A), real_B) * o.lambda_B
        if o.lambda_pixel > 0:
            losses["pixel_A"] = F.l1_loss(fake_B, real_A) * o.lambda_pixel
            losses["pixel_B"] = F.l1_loss(fake_A, real_B) * o.lambda_pixel
        if self.features is not None:
            f = self.features
            losses["feature_A"] = F.l1_loss(f(fake_B), f(real_A)) * o.lambda_feature
            losses["feature_B"] = F.l1_loss(f(fake_A), f(real_B)) * o.lambda_feature
        yield "G", losses

        if o.lambda_GAN > 0:  # without an adversarial term the discriminators play no part
            set_requires_grad([n["D_A"], n["D_B"]], True)
            # --edge_smoothing: blurred-edge real images are fakes too
            smoothed = (batch["B_smooth"].to(self.device, non_blocking=True),) if o.edge_smoothing else ()
            yield "D", {"D_A": discriminator_loss(self.gan_loss, n["D_A"], real_B, self.pool_A.query(fake_B),
                                                  extra_fakes=smoothed, lambda_gp=o.lambda_gp),
                        "D_B": discriminator_loss(self.gan_loss, n["D_B"], real_A, self.pool_B.query(fake_A),
                                                  lambda_gp=o.lambda_gp)}

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        """Input, translation and reconstruction for both directions."""
        n = self.nets
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_B, fake_A = run_padded(n["G_A"], real_A), run_padded(n["G_B"], real_B)
        return {"real_A": real_A, "fake_B": fake_B, "rec_A": run_padded(n["G_B"], fake_B),
                "real_B": real_B, "fake_A": fake_A, "rec_B": run_padded(n["G_A"], fake_A)}

    def state_dict(self) -> dict:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool_A.load_state_dict(state["pool_A"], self.device)
        self.pool_B.load_state_dict(state["pool_B"], self.device)
