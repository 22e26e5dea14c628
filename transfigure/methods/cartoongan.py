"""CartoonGAN (Chen et al., CVPR 2018) and its improved variant.

One generator turns photos (A) into cartoons (B). The discriminator learns
that real cartoons are real and that both generated images and cartoons
with smoothed edges are fake (the edge-promoting loss: clear edges are what
makes a cartoon). A content loss keeps the photo's semantics: L1 between
pretrained-network features of the photo and of its cartoon. The first
--init_epochs epochs train the generator with the content loss alone
(reconstruction); the discriminator does not change then.

The improved variant (preset cartoongan_improved) switches each change on by
its own option: --norm instance, --activation leaky_relu,
--content_net resnet101:layer2, --gan_mode lsgan.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..config import Options
from ..losses import GANLoss, discriminator_loss
from ..nets import define_D, run_padded
from ..nets.spec import GeneratorSpec
from ..nets.features import build_feature_extractor
from .common import OneGeneratorOneDiscriminator, check_training_size, set_requires_grad


class CartoonGAN(OneGeneratorOneDiscriminator):
    def __init__(self, opt: Options, device: torch.device):
        check_training_size(opt)
        self.opt = opt
        self.device = device
        self.nets = nn.ModuleDict({
            "G": GeneratorSpec.from_options(opt).build(opt.init_type, opt.init_gain),
            "D": define_D(opt.output_nc, ndf=opt.ndf, netD=opt.netD, n_layers_D=opt.n_layers_D, norm=opt.norm,
                          init_type=opt.init_type, init_gain=opt.init_gain),
        }).to(device)
        # Built with the method, so missing pretrained weights stop the run before its first step.
        self.content = build_feature_extractor(opt.content_net, opt.content_weights or None, "--content_weights").to(device)
        self.gan_loss = GANLoss(opt.gan_mode)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def initializing(self) -> bool:
        return self.epoch - self.opt.epoch_count < self.opt.init_epochs

    def translator(self, direction: str) -> nn.Module:
        return self.nets["G"]

    def content_loss(self, cartoon: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.content(cartoon), self.content(photo).detach()) * self.opt.lambda_content

    def train_step(self, batch: dict, optimizers: dict) -> dict[str, float]:
        o, G, D = self.opt, self.nets["G"], self.nets["D"]
        photo = batch["A"].to(self.device, non_blocking=True)
        fake = run_padded(G, photo)
        if self.initializing:
            optimizers["G"].zero_grad(set_to_none=True)
            loss = self.content_loss(fake, photo)
            loss.backward()
            optimizers["G"].step()
            return {"content": loss.item()}

        cartoon = batch["B"].to(self.device, non_blocking=True)
        smooth = batch["B_smooth"].to(self.device, non_blocking=True)
        set_requires_grad([D], True)
        optimizers["D"].zero_grad(set_to_none=True)
        loss_D = discriminator_loss(self.gan_loss, D, cartoon, fake, scale=1.0, extra_fakes=(smooth,),
                                    lambda_gp=o.lambda_gp)
        loss_D.backward()
        optimizers["D"].step()

        set_requires_grad([D], False)
        optimizers["G"].zero_grad(set_to_none=True)
        loss_adv = self.gan_loss(D(fake), True)
        loss_content = self.content_loss(fake, photo)
        (loss_adv + loss_content).backward()
        optimizers["G"].step()
        return {"G_adv": loss_adv.item(), "content": loss_content.item(), "D": loss_D.item()}

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        photo = batch["A"].to(self.device)
        return {"photo": photo, "cartoon (generated)": run_padded(self.nets["G"], photo),
                "cartoon (a training example)": batch["B"].to(self.device)}
