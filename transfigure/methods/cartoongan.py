"""CartoonGAN (Chen et al., CVPR 2018) and its improved variant.

One generator turns photos (A) into cartoons (B). The discriminator learns
that real cartoons are real and that both generated images and cartoons
with smoothed edges are fake (the edge-promoting loss: clear edges are what
makes a cartoon). A content loss keeps the photo's semantics: L1 between
pretrained-network features of the photo and of its cartoon. The first
--init_epochs epochs train the generator with the content loss alone
(reconstruction, `Method.initialization_losses`); the discriminator does not
change then.

The improved variant (preset cartoongan_improved) switches each change on by
its own option: --norm instance, --activation leaky_relu,
--content_net resnet101:layer2, --gan_mode lsgan.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Options
from ..losses import GANLoss, discriminator_loss
from ..nets import define_D, run_padded
from ..nets.spec import GeneratorSpec
from .base import Method, set_requires_grad


class CartoonGAN(Method):
    defaults = {"netG": "cartoongan", "netD": "cartoongan", "norm": "batch", "gan_mode": "vanilla", "ndf": 32,
                "pool_size": 0, "lambda_identity": 0.0, "init_epochs": 10, "dataset_mode": "unaligned"}
    uses_content_loss = True

    @classmethod
    def needs_smoothed_targets(cls, opt: Options) -> bool:
        return True  # the edge-promoting loss

    def __init__(self, opt: Options, device: torch.device):
        super().__init__(opt, device)
        self.nets = nn.ModuleDict({
            "G": GeneratorSpec.from_options(opt).build(opt.init_type, opt.init_gain),
            "D": define_D(opt.output_nc, ndf=opt.ndf, netD=opt.netD, n_layers_D=opt.n_layers_D, norm=opt.norm,
                          init_type=opt.init_type, init_gain=opt.init_gain),
        }).to(device)
        self.gan_loss = GANLoss(opt.gan_mode)

    def step_losses(self, batch: dict):
        G, D = self.nets["G"], self.nets["D"]
        photo = batch["A"].to(self.device, non_blocking=True)
        cartoon = batch["B"].to(self.device, non_blocking=True)
        smooth = batch["B_smooth"].to(self.device, non_blocking=True)
        fake = run_padded(G, photo)
        set_requires_grad([D], True)
        yield "D", {"D": discriminator_loss(self.gan_loss, D, cartoon, fake, scale=1.0, extra_fakes=(smooth,),
                                            lambda_gp=self.opt.lambda_gp)}
        set_requires_grad([D], False)
        yield "G", {"G_adv": self.gan_loss(D(fake), True), "content": self.content_loss(fake, photo)}

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        photo = batch["A"].to(self.device)
        return {"photo": photo, "cartoon (generated)": run_padded(self.nets["G"], photo),
                "cartoon (a training example)": batch["B"].to(self.device)}
