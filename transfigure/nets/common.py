"""Shared pieces of the official (junyanz) networks: norm layers, weight init,
size rules for padding, and strict loading of published state dicts."""
from __future__ import annotations

import functools
import math
import os
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init
from ..errors import UsageError
from ..torchfiles import key_mismatch, read_torch_file

__all__ = ["get_norm_layer", "uses_bias", "init_weights", "size_multiple", "accepts_any_size", "padded_size",
           "run_padded",
           "describe_state_dict", "clean_official_state_dict", "load_official_state_dict"]


def get_norm_layer(norm: str = "instance"):
    """A factory `f(num_features) -> nn.Module`, exactly as the official code builds it.
    InstanceNorm keeps no affine params and no running stats, so it adds no state_dict keys."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        # Official: `lambda x: Identity()`; a placeholder keeps Sequential indices unchanged.
        def norm_layer(num_features):
            return nn.Identity()
        return norm_layer
    raise UsageError(f"unknown norm {norm!r}; valid: instance, batch, none")


def uses_bias(norm_layer) -> bool:
    """The official rule: convs followed by a norm have a bias only for instance norm
    (batch norm's shift makes it redundant; 'none' also ends up without, as upstream)."""
    if isinstance(norm_layer, functools.partial):
        return norm_layer.func == nn.InstanceNorm2d
    return norm_layer == nn.InstanceNorm2d


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Official init: conv/linear weights by `init_type`, their biases 0;
    BatchNorm weight ~ N(1, gain), bias 0. Returns the net."""
    if init_type not in ("normal", "xavier", "kaiming", "orthogonal"):
        raise UsageError(f"unknown init_type {init_type!r}; valid: normal, xavier, kaiming, orthogonal")

    def init_func(m):
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            init.normal_(m.weight, 1.0, init_gain)
            init.constant_(m.bias, 0.0)

    with torch.no_grad():
        net.apply(init_func)
    return net


def _unwrap(net: nn.Module) -> nn.Module:
    # DataParallel/DDP keep the real net in `.module`, torch.compile in `._orig_mod`.
    while True:
        if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            net = net.module
        elif isinstance(getattr(net, "_orig_mod", None), nn.Module):
            net = net._orig_mod
        else:
            return net


def size_multiple(net: nn.Module) -> int:
    """The stride grid of the net: 4 for two stride-2 steps (1 for nets without a rule)."""
    return int(getattr(_unwrap(net), "size_multiple", 1))


def accepts_any_size(net: nn.Module) -> bool:
    """Whether the net runs on any H, W at or above its minimum size, returning an output
    rounded up to its size multiple (extra rows and columns at the bottom and right: the
    net's own extrapolation). ResNet and CartoonGAN generators do; U-Net's skip
    connections need exact multiples."""
    return bool(getattr(_unwrap(net), "accepts_any_size", False))


def _min_size(net: nn.Module) -> int:
    return int(getattr(_unwrap(net), "min_size", 1))


def padded_size(net: nn.Module, h: int, w: int) -> tuple[int, int]:
    """The H, W the net is run at for an H x W input: the input itself where the net
    accepts any size, else rounded up to its size multiple; never below its minimum."""
    m, lo = size_multiple(net), _min_size(net)
    if accepts_any_size(net):
        return max(h, lo), max(w, lo)
    return max(math.ceil(h / m) * m, lo), max(math.ceil(w / m) * m, lo)


def pad_for(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """`x` [N,C,H,W] padded to `padded_size`, and the (rows, cols) slices that crop a
    result back to H,W. Padding goes at the bottom and right only: the stride-2 layers
    then sample the image on the grid an unpadded run uses (centred padding shifts it by
    a pixel, which changes CartoonGAN's output visibly). Reflect padding where the image
    is large enough (fewer border artifacts), replicate otherwise."""
    if x.dim() != 4:
        raise UsageError(f"expected a [N,C,H,W] tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    th, tw = padded_size(net, h, w)
    crop = (slice(0, h), slice(0, w))
    if (th, tw) == (h, w):
        return x, crop
    pad = (0, tw - w, 0, th - h)
    mode = "reflect" if pad[1] < w and pad[3] < h else "replicate"
    return F.pad(x, pad, mode=mode), crop


def run_padded(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a generator on a [N,C,H,W] (or [C,H,W]) image of any size: padded by
    `pad_for` where the net needs it, run, cropped back to H,W (the top-left corner)."""
    squeeze = x.dim() == 3
    padded, (rows, cols) = pad_for(net, x.unsqueeze(0) if squeeze else x)
    y = net(padded)[..., rows, cols]
    return y.squeeze(0) if squeeze else y


# ---------------------------------------------------------------- state dicts

def describe_state_dict(sd) -> str:
    """Plain-words guess of the official architecture a state dict belongs to,
    e.g. 'a resnet_6blocks generator (ngf 64, 3->3 channels, instance norm, no dropout)'."""
    keys = list(sd.keys())
    shape = lambda k: tuple(sd[k].shape) if k in sd else None  # noqa: E731

    def norm_of(norm_key, bias_key):
        if any(k.startswith(norm_key + ".") for k in keys):
            return "batch norm"
        return "instance norm" if bias_key in sd else "no norm"

    blocks = {int(m.group(1)) for k in keys if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if blocks and shape("model.1.weight"):
        first = shape("model.1.weight")
        out = next((shape(k) for k in reversed(keys) if re.fullmatch(r"model\.\d+\.weight", k)
                    and len(sd[k].shape) == 4 and sd[k].shape[-1] == 7 and k != "model.1.weight"), None)
        dropout = any(re.match(r"model\.\d+\.conv_block\.6\.weight", k) for k in keys) and \
            not any(re.match(r"model\.\d+\.conv_block\.5\.weight", k) for k in keys)
        return (f"a resnet_{len(blocks)}blocks generator (ngf {first[0]}, {first[1]}->"
                f"{out[0] if out else '?'} channels, {norm_of('model.2', 'model.1.bias')}, "
                f"{'dropout' if dropout else 'no dropout'})")
    if "model.model.0.weight" in sd:
        downs = max(k.split(".").count("model") for k in keys) - 1
        first = shape("model.model.0.weight")
        out = shape("model.model.3.weight")  # outermost ConvTranspose2d: [in, out, 4, 4]
        return (f"a unet_{2 ** downs} generator ({downs} downsamplings, ngf {first[0]}, {first[1]}->"
                f"{out[1] if out else '?'} channels, {norm_of('model.model.1.model.2', 'model.model.1.model.1.bias')})")
    if "model.0.weight" in sd and len(sd["model.0.weight"].shape) == 4 and sd["model.0.weight"].shape[-1] == 4:
        convs = [k for k in keys if re.fullmatch(r"model\.\d+\.weight", k) and len(sd[k].shape) == 4]
        first = shape("model.0.weight")
        return (f"an NLayer PatchGAN discriminator (n_layers {len(convs) - 2}, ndf {first[0]}, "
                f"{first[1]} input channels, {norm_of('model.3', 'model.2.bias')})")
    if "net.0.weight" in sd:
        return f"a pixel discriminator (ndf {shape('net.0.weight')[0]})"
    return "an unrecognised network (keys " + ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "") + ")"


def clean_official_state_dict(state_dict, net: nn.Module) -> OrderedDict:
    """What the official loader does before a strict load, plus DataParallel prefixes:
    drop `_metadata`; drop InstanceNorm running_mean/running_var where the layer keeps no
    stats (files saved before PyTorch 0.4 carry them); always drop InstanceNorm
    num_batches_tracked; strip a leading `module.` from every key."""
    net = _unwrap(net)
    sd = OrderedDict((k, v) for k, v in state_dict.items() if k != "_metadata")
    if sd and all(k.startswith("module.") for k in sd):
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
    modules = dict(net.named_modules())
    for key in list(sd):
        owner, _, attr = key.rpartition(".")
        m = modules.get(owner)
        if not isinstance(m, nn.modules.instancenorm._InstanceNorm):
            continue
        if attr == "num_batches_tracked" or (attr in ("running_mean", "running_var")
                                             and getattr(m, attr, None) is None):
            del sd[key]
    return sd


def _examples(items, n=3):
    items = list(items)
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_official_state_dict(net: nn.Module, state_dict_or_path) -> nn.Module:
    """Load a state dict (or a file from torch.save) strictly, after the official
    clean-up. Raises ValueError, naming the file, when it does not fit `net`."""
    source = ""
    sd = state_dict_or_path
    if isinstance(sd, (str, os.PathLike)):
        source = f"{os.fspath(sd)}: "
        sd = read_torch_file(sd)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for k, v in sd.items() if k != "_metadata"):
        top = list(sd)[:5] if isinstance(sd, dict) else type(sd).__name__
        raise UsageError(f"{source}does not hold a plain state dict of tensors (found {top}); "
                         "a training checkpoint keeps generators under its 'nets' entry")
    target = _unwrap(net)
    sd = clean_official_state_dict(sd, target)
    expected = target.state_dict()
    missing, unexpected, shapes = key_mismatch(expected, sd)
    if missing or unexpected or shapes:
        file_arch, net_arch = describe_state_dict(sd), describe_state_dict(expected)
        parts = [f"{source}the weights do not fit the network"]
        if file_arch != net_arch:
            parts.append(f"this looks like {file_arch}, not {net_arch}")
        if missing:
            parts.append(f"{len(missing)} keys missing from the weights: {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys in the weights: {_examples(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} keys with other shapes: " + _examples(
                [f"{k} {list(sd[k].shape)} vs {list(expected[k].shape)}" for k in shapes]))
        raise UsageError("; ".join(parts))
    broken = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a diverged or damaged run: its images would be black or noise
        raise UsageError(f"{source}the weights hold NaN or Inf values ({_examples(broken)}); the run diverged or "
                         "the file is damaged: use an earlier checkpoint")
    target.load_state_dict(sd, strict=True)
    return net
