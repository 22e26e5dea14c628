"""pix2pix (Isola et al., CVPR 2017): one generator trained on aligned pairs
with a conditional PatchGAN (it sees the input beside the output) and an L1
term to the ground truth. No image pool, as in the paper."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ConfigError, Options
from ..data.color import network_lab_to_rgb, rgb_to_network_lab
from ..losses import GANLoss, discriminator_loss
from ..nets import define_D, run_padded
from ..nets.spec import GeneratorSpec
from .base import Method, set_requires_grad
from ..errors import UsageError


_PIX2PIX_DEFAULTS = {"norm": "batch", "netG": "unet_256", "dataset_mode": "aligned", "gan_mode": "vanilla",
                     "pool_size": 0, "no_dropout": False, "lambda_identity": 0.0}


class Pix2Pix(Method):
    defaults = _PIX2PIX_DEFAULTS

    def __init__(self, opt: Options, device: torch.device):
        super().__init__(opt, device)
        self.nets = nn.ModuleDict({
            "G": GeneratorSpec.from_options(opt).build(opt.init_type, opt.init_gain),
            # Conditional: D judges (input, output) pairs, so it needs both images' channels.
            "D": define_D(opt.input_nc + opt.output_nc, ndf=opt.ndf, netD=opt.netD, n_layers_D=opt.n_layers_D,
                          norm=opt.norm, init_type=opt.init_type, init_gain=opt.init_gain),
        }).to(device)
        self.gan_loss = GANLoss(opt.gan_mode)

    def translator(self, direction: str) -> nn.Module:
        if direction != "AtoB":
            raise UsageError("a pix2pix model translates only in the direction it was trained "
                             f"(--direction {self.opt.direction} at training time)")
        return super().translator(direction)

    def step_losses(self, batch: dict):
        G, D = self.nets["G"], self.nets["D"]
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        fake_B = run_padded(G, real_A)
        fake_AB, real_AB = torch.cat([real_A, fake_B], 1), torch.cat([real_A, real_B], 1)
        set_requires_grad([D], True)
        yield "D", {"D": discriminator_loss(self.gan_loss, D, real_AB, fake_AB, lambda_gp=self.opt.lambda_gp)}
        set_requires_grad([D], False)  # the generator is judged by the discriminator just updated
        yield "G", {"G_GAN": self.gan_loss(D(fake_AB), True), "G_L1": F.l1_loss(fake_B, real_B) * self.opt.lambda_L1}

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        return {"real_A": real_A, "fake_B": run_padded(self.nets["G"], real_A), "real_B": real_B}


class ColorizationNet(nn.Module):
    """Wraps a colorization generator (L -> ab) as an RGB -> RGB translator:
    the input's lightness is kept and its colors are predicted."""
    input_nc = output_nc = 3

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator
        self.size_multiple = getattr(generator, "size_multiple", 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.shape[1] == 1:
            rgb = rgb.expand(-1, 3, -1, -1)
        L, _ = rgb_to_network_lab(rgb.float())
        return network_lab_to_rgb(L, run_padded(self.generator, L).float())


class Colorization(Pix2Pix):
    """pix2pix from the L channel to the ab channels of Lab (official --model colorization)."""
    defaults = {**_PIX2PIX_DEFAULTS, "dataset_mode": "colorization", "input_nc": 1, "output_nc": 2}

    @classmethod
    def check_options(cls, opt: Options) -> None:
        if (opt.input_nc, opt.output_nc) != (1, 2):
            raise ConfigError("--model colorization maps L to ab: it needs --input_nc 1 --output_nc 2")
        if opt.init_epochs > 0:
            raise ConfigError("--init_epochs compares content features of RGB images; colorization's generator "
                              "sees only lightness: set it to 0")

    @classmethod
    def as_translator(cls, generator: nn.Module) -> nn.Module:
        return ColorizationNet(generator)  # RGB in, RGB out: lightness kept, colors predicted

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        L, ab = batch["A"].to(self.device), batch["B"].to(self.device)
        return {"gray": L.expand(-1, 3, -1, -1), "colorized": network_lab_to_rgb(L, run_padded(self.nets["G"], L)),
                "real": network_lab_to_rgb(L, ab)}
