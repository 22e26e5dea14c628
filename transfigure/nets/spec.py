"""The one description of a generator's architecture, read from options.

Training builds its generators from it and a run's options file restores them through
it, so a run reloads exactly the architecture it trained (every architecture option
in one list, `OPTION_KEYS`). CycleGAN's G_B maps B -> A: its channels are swapped.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# The options that decide a generator's architecture (names as on the command line).
OPTION_KEYS = ("input_nc", "output_nc", "ngf", "netG", "norm", "no_dropout", "activation", "activation_slope",
               "no_antialias", "no_antialias_up")
# Options added after runs were recorded: what a run that does not record them used.
RECORDED_BEFORE = {"no_antialias": True, "no_antialias_up": True}


@dataclass(frozen=True)
class GeneratorSpec:
    input_nc: int
    output_nc: int
    netG: str
    ngf: int
    norm: str
    use_dropout: bool
    activation: str
    negative_slope: float
    antialias: bool = False
    antialias_up: bool = False

    @classmethod
    def from_options(cls, opt, net_name: str = "G") -> GeneratorSpec:
        """The spec of generator `net_name` ("G", "G_A" or "G_B") of a run with options `opt`
        (an Options object or a dict of them)."""
        get = (lambda key: opt.get(key, RECORDED_BEFORE.get(key))) if isinstance(opt, dict) \
            else lambda key: getattr(opt, key)
        in_nc, out_nc = get("input_nc"), get("output_nc")
        if net_name == "G_B":  # the reverse direction: B's channels in, A's out
            in_nc, out_nc = out_nc, in_nc
        return cls(in_nc, out_nc, get("netG"), get("ngf"), get("norm"), not get("no_dropout"), get("activation"),
                   get("activation_slope"), not get("no_antialias"), not get("no_antialias_up"))

    def build(self, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
        from . import define_G

        return define_G(self.input_nc, self.output_nc, ngf=self.ngf, netG=self.netG, norm=self.norm,
                        use_dropout=self.use_dropout, init_type=init_type, init_gain=init_gain,
                        activation=self.activation, negative_slope=self.negative_slope,
                        antialias=self.antialias, antialias_up=self.antialias_up)
