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


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, tau: float, n_images: int,
                   negatives_from_batch: bool = False) -> torch.Tensor:
    """PatchNCE (Park et al. 2020), one value per query patch, as the authors compute it.

    feat_q, feat_k: (n_images x S, C) normalised samples of the output's and the input's
    features at the same S locations per image. Each query's positive is the key at its
    own location; its negatives are the keys at the other S - 1 locations of the same
    image (`negatives_from_batch`: of every image). The keys carry no gradient. The
    query's similarity with its own location in the negatives block is set to -10 (so it
    barely counts) rather than removed, exactly as the authors' code does."""
    feat_k = feat_k.detach()
    dim = feat_q.shape[1]
    positives = (feat_q * feat_k).sum(dim=1, keepdim=True)
    groups = 1 if negatives_from_batch else n_images
    q = feat_q.reshape(groups, -1, dim)
    k = feat_k.reshape(groups, -1, dim)
    negatives = torch.bmm(q, k.transpose(1, 2))
    own = torch.eye(q.shape[1], device=q.device, dtype=torch.bool)[None]
    negatives = negatives.masked_fill(own, -10.0).reshape(-1, q.shape[1])
    logits = torch.cat([positives, negatives], dim=1) / tau
    return F.cross_entropy(logits.float(), torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device),
                           reduction="none")
