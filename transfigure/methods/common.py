"""What several methods share: gradient switches, the crop-size check, and the
bookkeeping of methods with one generator and one discriminator."""
from __future__ import annotations

from torch import nn

from ..config import ConfigError, Options


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


class OneGeneratorOneDiscriminator:
    """pix2pix and CartoonGAN: nets "G" and "D", one optimizer each, no state
    beyond the nets (no image pool) to checkpoint."""
    generator_names = ("G",)
    nets: nn.ModuleDict

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"G": list(self.nets["G"].parameters()), "D": list(self.nets["D"].parameters())}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
