"""FID and KID through torch-fidelity, so numbers computed with its
TF-exact Inception are comparable with published ones.

Images are read by transfigure's loader (clear errors naming a bad file,
EXIF orientation, grayscale/RGBA made RGB) and handed to torch-fidelity as
uint8 tensors; the metric code, Inception included, is torch-fidelity's.

Other feature networks plug in with `register_feature_network`: a module
mapping images in [-1, 1] to [N, D] features. Their scores are *not*
Inception FIDs; `metric_label` gives the name to print them under.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.images import list_images, load_image

INCEPTION = "inception-v3-compat"

_NETWORKS: dict[str, tuple[Callable[[str | None], nn.Module], str]] = {}


@dataclass(frozen=True)
class FeatureNetwork:
    """A registered network: `build(weights_path)` -> module, and what to call its scores."""
    name: str
    label: str


def register_feature_network(name: str, build: Callable[[str | None], nn.Module], label: str) -> FeatureNetwork:
    """Make `name` usable as a feature extractor. `build(weights_path)` returns a
    module mapping [-1, 1] images to [N, D] features; `label` names its scores
    (e.g. "FID (synthetic-scene features)"). Registering a name again replaces it."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    _NETWORKS[name] = (build, label)
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, _module_extractor_class())
    return FeatureNetwork(name, label)


def metric_label(extractor: str, metric: str = "FID") -> str:
    """'FID' for torch-fidelity's Inception; otherwise the qualified name the network was registered with."""
    if extractor == INCEPTION:
        return metric
    label = _NETWORKS[extractor][1] if extractor in _NETWORKS else f"{metric} ({extractor} features)"
    return label.replace("FID", metric) if metric != "FID" else label


def _module_extractor_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class ModuleFeatureExtractor(FeatureExtractorBase):
        """torch-fidelity's side of a registered network: uint8 batches in, one feature layer out."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            self.net = _NETWORKS[name][0](feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list():
            return ("features",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            x = x.float() / 127.5 - 1
            return (self.net(x).flatten(1).float(),)

    return ModuleFeatureExtractor


class ImageFolderDataset(torch.utils.data.Dataset):
    """A folder's images as uint8 [3, H, W] tensors, the input torch-fidelity expects.
    Batches need one size: `size` (H, W) resizes every image to it; without it
    every image must have the size of the first, else a clear error names both."""

    def __init__(self, folder: str | Path, size: tuple[int, int] | None = None):
        self.folder = Path(folder)
        self.paths = list_images(self.folder, expected="images to measure")
        self.resize = size is not None
        self.size = tuple(size) if size is not None else load_image(self.paths[0], 3).size[::-1]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.paths[index], 3)
        height, width = self.size
        if image.size != (width, height):
            if not self.resize:
                raise ValueError(f"images of different sizes in {self.folder}: {self.paths[0].name} is "
                                 f"{width}x{height}, {self.paths[index].name} is {image.size[0]}x{image.size[1]}; "
                                 "give a common size to resize every image to")
            image = image.resize((width, height), Image.BICUBIC)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def fid_kid(real: str | Path, fake: str | Path, extractor: str = INCEPTION, weights_path: str | None = None,
            kid: bool = True, batch_size: int = 64, device: str | torch.device | None = None,
            size: tuple[int, int] | None = None, progress: bool = False) -> dict:
    """FID (and KID mean/std when `kid`) between two image folders, with torch-fidelity.
    Returns {"fid", "kid_mean", "kid_std", "n_real", "n_fake", "extractor"}."""
    import torch_fidelity

    datasets = [ImageFolderDataset(real, size), ImageFolderDataset(fake, size)]
    n_real, n_fake = len(datasets[0]), len(datasets[1])
    if min(n_real, n_fake) < 2:
        raise ValueError(f"FID needs at least 2 images in each folder ({real}: {n_real}, {fake}: {n_fake})")
    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    metrics = torch_fidelity.calculate_metrics(
        input1=datasets[1], input2=datasets[0], fid=True, kid=kid, feature_extractor=extractor,
        feature_extractor_weights_path=weights_path, batch_size=batch_size, cuda=cuda, verbose=progress,
        kid_subset_size=min(1000, n_real, n_fake), samples_shuffle=False, cache=False,
        save_cpu_ram=True)  # no worker processes: forking a threaded process can deadlock
    out = {"fid": float(metrics["frechet_inception_distance"]), "n_real": n_real, "n_fake": n_fake,
           "extractor": extractor}
    if kid:
        out["kid_mean"] = float(metrics["kernel_inception_distance_mean"])
        out["kid_std"] = float(metrics["kernel_inception_distance_std"])
    return out
