"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one generator A -> B, an
adversarial loss, and PatchNCE instead of a second generator and a cycle: each
patch of the output, seen through the generator's own encoder and a small
projection head F, must match the input patch at the same place better than
the input's other patches.

Step order, losses and defaults follow the authors' code
(taesungp/contrastive-unpaired-translation, models/cut_model.py): the
discriminator is updated first, then G and F together on
GAN + PatchNCE (averaged with the identity PatchNCE on B images for CUT).
No image pool. The random patch locations and FastCUT's flips come from the
method's own generator, saved in checkpoints, so a resumed run continues
exactly.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from ..config import ConfigError, Options
from ..errors import UsageError
from ..losses import GANLoss, discriminator_loss, patch_nce_loss
from ..nets import define_D, init_weights, run_padded
from ..nets.patch_sample import PatchSampleF
from ..nets.resnet import ResnetGenerator
from ..nets.spec import GeneratorSpec
from .base import Method, set_requires_grad

# The authors' base options where they differ from CycleGAN's, and CUT's own.
_CUT_DEFAULTS = {"netG": "resnet_9blocks", "norm": "instance", "init_type": "xavier", "no_dropout": True,
                 "no_antialias": False, "no_antialias_up": False, "gan_mode": "lsgan", "pool_size": 0,
                 "lambda_GAN": 1.0, "n_epochs": 200, "n_epochs_decay": 200}
_MODE_DEFAULTS = {
    "cut": {"nce_idt": True, "lambda_NCE": 1.0, "flip_equivariance": False},
    "fastcut": {"nce_idt": False, "lambda_NCE": 10.0, "flip_equivariance": True, "n_epochs": 150,
                "n_epochs_decay": 50},
}


def parse_layers(text: str) -> list[int]:
    try:
        return [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--nce_layers {text!r}: expected comma-separated layer indices, e.g. 0,4,8,12,16") \
            from None


class CUT(Method):
    defaults = _CUT_DEFAULTS

    @classmethod
    def defaults_for(cls, values: dict) -> dict:
        mode = str(values.get("CUT_mode", "CUT")).lower()
        return {**cls.defaults, **_MODE_DEFAULTS.get(mode, {})}

    @classmethod
    def check_options(cls, opt: Options) -> None:
        super().check_options(opt)
        if not opt.netG.startswith("resnet_"):
            raise ConfigError(f"--netG {opt.netG}: CUT takes its PatchNCE features from a resnet generator's "
                              "layers; use a resnet_<N>blocks generator")
        if opt.gan_mode == "wgangp":
            raise ConfigError("--gan_mode wgangp: CUT's discriminator step has no gradient penalty here; use lsgan "
                              "(the paper) or vanilla")
        if opt.lambda_NCE < 0 or opt.lambda_GAN < 0:
            raise ConfigError("--lambda_NCE and --lambda_GAN cannot be negative")
        if opt.lambda_NCE == 0 and opt.lambda_GAN == 0:
            raise ConfigError("--lambda_NCE 0 and --lambda_GAN 0: nothing to train")
        if opt.nce_idt and opt.input_nc != opt.output_nc:
            raise ConfigError(f"--nce_idt runs the generator on B images, so it needs --input_nc equal to "
                              f"--output_nc (got {opt.input_nc} and {opt.output_nc}); pass --nce_idt false")

    def __init__(self, opt: Options, device: torch.device):
        super().__init__(opt, device)
        self.nce_layers = parse_layers(opt.nce_layers)
        generator = GeneratorSpec.from_options(opt).build(opt.init_type, opt.init_gain)
        try:
            channels = generator.feature_channels(self.nce_layers)
        except UsageError as e:
            raise ConfigError(str(e)) from None
        # Initialised in the authors' order (G, D, then F), so a seed draws the same weights.
        discriminator = define_D(opt.output_nc, ndf=opt.ndf, netD=opt.netD, n_layers_D=opt.n_layers_D,
                                 norm=opt.norm, init_type=opt.init_type, init_gain=opt.init_gain,
                                 antialias=not opt.no_antialias)
        head = init_weights(PatchSampleF(channels, opt.netF_nc, use_mlp=opt.netF == "mlp_sample"), opt.init_type,
                            opt.init_gain)
        self.nets = nn.ModuleDict({"G": generator, "F": head, "D": discriminator}).to(device)
        self.gan_loss = GANLoss(opt.gan_mode)
        # Patch locations and flips: drawn here, not from the global generator, and saved with the run.
        self.rng = torch.Generator()
        self.seed_streams(opt.seed)

    def seed_streams(self, seed: int) -> None:
        self.rng.manual_seed(seed * 2 + 3)

    @property
    def generator(self) -> ResnetGenerator:
        return self.nets["G"]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        # The authors step G's and F's Adam after the same backward pass; Adam is per parameter,
        # so one optimizer over both is the same update.
        return {"G": list(itertools.chain(self.nets["G"].parameters(), self.nets["F"].parameters())),
                "D": list(self.nets["D"].parameters())}

    def translator(self, direction: str) -> nn.Module:
        if direction != "AtoB":
            raise UsageError("a CUT model translates only in the direction it was trained "
                             f"(--direction {self.opt.direction} at training time)")
        return super().translator(direction)

    def nce_loss(self, source: torch.Tensor, output: torch.Tensor, flipped: bool) -> torch.Tensor:
        """PatchNCE between the generator's features of `output` (queries) and of `source`
        (keys), averaged over the layers, times lambda_NCE."""
        o, g = self.opt, self.generator
        queries = g.features(output, self.nce_layers)
        if flipped:  # the output was made from the flipped input: flip its features back
            queries = [torch.flip(f, [3]) for f in queries]
        keys = g.features(source, self.nce_layers)
        key_samples, ids = self.nets["F"](keys, o.num_patches, generator=self.rng)
        query_samples, _ = self.nets["F"](queries, o.num_patches, ids)
        total = sum(patch_nce_loss(q, k, o.nce_T, source.shape[0], o.nce_includes_all_negatives_from_minibatch)
                    .mean() * o.lambda_NCE for q, k in zip(query_samples, key_samples))
        return total / len(self.nce_layers)

    def step_losses(self, batch: dict):
        o, n = self.opt, self.nets
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        real = torch.cat([real_A, real_B]) if o.nce_idt else real_A
        flipped = o.flip_equivariance and bool(torch.rand(1, generator=self.rng) < 0.5)
        if flipped:
            real = torch.flip(real, [3])
        fake = run_padded(n["G"], real)
        fake_B = fake[:real_A.shape[0]]

        # The discriminator first, on the output made before its step (the authors' order).
        set_requires_grad([n["D"]], True)
        yield "D", {"D": discriminator_loss(self.gan_loss, n["D"], real_B, fake_B)}

        set_requires_grad([n["D"]], False)
        losses = {}
        if o.lambda_GAN > 0:
            losses["G_GAN"] = self.gan_loss(n["D"](fake_B), True) * o.lambda_GAN
        if o.lambda_NCE > 0:
            nce = self.nce_loss(real_A, fake_B, flipped)
            if o.nce_idt:  # the mean of the two PatchNCE terms, as the authors
                losses["NCE"] = nce * 0.5
                losses["NCE_Y"] = self.nce_loss(real_B, fake[real_A.shape[0]:], flipped) * 0.5
            else:
                losses["NCE"] = nce
        yield "G", losses

    @torch.no_grad()
    def visuals(self, batch: dict) -> dict[str, torch.Tensor]:
        g = self.nets["G"]
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        shown = {"real_A": real_A, "fake_B": run_padded(g, real_A), "real_B": real_B}
        if self.opt.nce_idt:
            shown["idt_B"] = run_padded(g, real_B)
        return shown

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
