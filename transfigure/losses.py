"""GAN objectives and the gradient penalty.

The loss compares discriminator outputs with a target ("this is real" or
"this is fake"); the method decides which images are which.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F
from .errors import UsageError

GAN_MODES = ("vanilla", "lsgan", "wgangp")


class GANLoss(nn.Module):
    """vanilla: BCE on logits; lsgan: mean squared error to 1/0; wgangp: the
    critic's mean output, negated for real targets."""

    def __init__(self, gan_mode: str, real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise UsageError(f"--gan_mode {gan_mode!r} is not one of {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.real_label = real_label
        self.fake_label = fake_label

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        # Losses are computed in fp32: under autocast the discriminator may emit bf16/fp16.
        prediction = prediction.float()
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.full_like(prediction, self.real_label if target_is_real else self.fake_label)
        if self.gan_mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0,
                     constant: float = 1.0) -> torch.Tensor:
    """WGAN-GP: push the critic's gradient norm towards `constant` on random
    interpolates between real and generated images (Gulrajani et al. 2017)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = netD(interpolates)
    grads, = torch.autograd.grad(out, interpolates, grad_outputs=torch.ones_like(out),
                                 create_graph=True, retain_graph=True)
    grads = grads.reshape(grads.shape[0], -1)
    return weight * ((grads.norm(2, dim=1) - constant) ** 2).mean()


def discriminator_loss(gan_loss: GANLoss, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                       scale: float = 0.5, extra_fakes: tuple = (), lambda_gp: float = 10.0) -> torch.Tensor:
    """What every method's discriminator learns: `real` is real; `fake` (detached here) and
    each of `extra_fakes` (CartoonGAN's edge-smoothed cartoons) are fake; the sum times
    `scale` (the official code halves it; CartoonGAN does not). With WGAN-GP, the gradient
    penalty on real/fake interpolates is added."""
    loss = gan_loss(netD(real), True) + gan_loss(netD(fake.detach()), False)
    for other in extra_fakes:
        loss = loss + gan_loss(netD(other), False)
    loss = scale * loss
    if gan_loss.gan_mode == "wgangp":
        loss = loss + gradient_penalty(netD, real, fake, weight=lambda_gp)
    return loss
