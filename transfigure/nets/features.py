"""Frozen feature networks from torchvision (ImageNet weights), cut at a named
layer: the 'feature loss + GAN' baseline of the CycleGAN paper and content
losses use them.

A spec is `model:layer`: VGG layers by their paper names (`relu3_3`,
`conv4_4`, ...), ResNet layers by module (`layer1` ... `layer4`). Weights come
from `--feature_weights PATH`, else from torchvision's weights API (its cache
in $TORCH_HOME/hub/checkpoints, downloading when online).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from . import scene_content

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = "random"


class FeatureWeightsError(UsageError):
    """The pretrained weights of a feature network are missing or unusable."""


def _vgg_layer_index(features: nn.Sequential, layer: str) -> int:
    """Index in `features` of e.g. relu3_3: block 3 (after two poolings), third conv."""
    block, conv = 1, 0
    for i, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
            if layer == f"conv{block}_{conv}":
                return i
        elif isinstance(module, nn.ReLU) and layer == f"relu{block}_{conv}":
            return i
    raise FeatureWeightsError(f"no layer {layer!r} in this VGG (use names like relu3_3 or conv4_4)")


def _truncate(model_name: str, model: nn.Module, layer: str) -> nn.Module:
    if model_name.startswith("vgg"):
        end = _vgg_layer_index(model.features, layer)
        return nn.Sequential(*list(model.features.children())[:end + 1])
    if model_name.startswith("resnet") or model_name.startswith("resnext") or model_name.startswith("wide_resnet"):
        order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        if layer not in order[4:]:
            raise FeatureWeightsError(f"no layer {layer!r} in {model_name} (use layer1 ... layer4)")
        return nn.Sequential(*[getattr(model, name) for name in order[:order.index(layer) + 1]])
    raise FeatureWeightsError(f"feature network {model_name!r}: only torchvision VGG and ResNet models are supported")


def _pretrained_state_dict(model_name: str, weights_path: str | None, option: str) -> dict:
    if weights_path:
        from ..torchfiles import TorchFileError, read_torch_file
        try:
            return read_torch_file(weights_path, "weights file for the feature network")
        except TorchFileError as e:
            raise FeatureWeightsError(f"{option} {e}") from None
    import torchvision  # here, not at the top: it takes seconds to import, and most commands never need it

    weights = torchvision.models.get_model_weights(model_name).DEFAULT
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # offline: URLError; partial file: hash mismatch
        filename = os.path.basename(weights.url)
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise FeatureWeightsError(
            f"the ImageNet weights of {model_name} ({filename}) are not in the cache and could not be downloaded "
            f"from {weights.url} ({type(e).__name__}). Either pass the file with {option} PATH, or put "
            f"it in {cache}/ (torchvision's cache; $TORCH_HOME moves it).") from e


class FeatureExtractor(nn.Module):
    """Images in [-1, 1] -> features, normalized as the ImageNet weights expect
    (`imagenet_input=False`: given as they are). Frozen and always in eval mode."""

    def __init__(self, body: nn.Module, spec: str, imagenet_input: bool = True):
        super().__init__()
        self.body = body
        self.spec = spec
        # [-1, 1] -> ImageNet-normalized is one affine map per channel: x * scale + shift.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        scale, shift = (0.5 / std, (0.5 - mean) / std) if imagenet_input else (torch.ones(3), torch.zeros(3))
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # batch norm statistics of the pretrained net must never move

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.body(x * self.scale + self.shift)


def build_feature_extractor(spec: str = "vgg16:relu3_3", weights_path: str | None = None,
                            option: str = "--feature_weights") -> FeatureExtractor:
    """`spec` is model:layer; model_layer (e.g. resnet101_layer2) is read the same way.
    `weights_path` RANDOM_WEIGHTS keeps torchvision's initialization drawn from a
    fixed seed instead of ImageNet weights: for offline experiments only (the
    synthetic benchmarks label it). `option` names the weights option in errors."""
    model_name, _, layer = spec.partition(":") if ":" in spec else spec.partition("_")
    if not layer:
        raise FeatureWeightsError(f"--feature_net {spec!r}: expected model:layer, e.g. vgg16:relu3_3")
    if model_name == scene_content.MODEL_NAME:  # trained offline on the synthetic scenes, no ImageNet input
        try:
            return FeatureExtractor(scene_content.load_scene_content_net(weights_path, layer, option), spec,
                                    imagenet_input=False)
        except (ValueError, FileNotFoundError) as e:
            raise FeatureWeightsError(str(e)) from e
    import torchvision

    try:
        with torch.random.fork_rng(devices=[]):  # the same random weights every time, the caller's RNG untouched
            torch.manual_seed(0)
            model = torchvision.models.get_model(model_name, weights=None)
    except ValueError:
        raise FeatureWeightsError(f"--feature_net {spec!r}: torchvision has no model {model_name!r}") from None
    body = _truncate(model_name, model, layer)  # checks the layer name before any download
    if weights_path == RANDOM_WEIGHTS:
        return FeatureExtractor(body, f"{spec} (random weights)")
    from ..torchfiles import TorchFileError, load_fitting
    try:
        load_fitting(model, _pretrained_state_dict(model_name, weights_path, option),
                     f"{option} {weights_path or model_name}", f"{model_name} weights file")
    except TorchFileError as e:
        raise FeatureWeightsError(str(e)) from None
    return FeatureExtractor(body, spec)
