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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..data.images import list_images, load_image
from ..devices import resolve_device
from ..torchfiles import TorchFileError, read_torch_file
from ..errors import SetupError, UsageError

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
                raise UsageError(f"images of different sizes in {self.folder}: {self.paths[0].name} is "
                                 f"{width}x{height}, {self.paths[index].name} is {image.size[0]}x{image.size[1]}; "
                                 "give a common size to resize every image to")
            image = image.resize((width, height), Image.BICUBIC)
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class InceptionWeightsError(SetupError):
    """The Inception weights FID needs are missing and could not be fetched (or are unusable)."""


INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"   # torch.hub convention: the file name carries the start of its sha256


def inception_weights(path: str | None = None, progress: bool = True) -> str:
    """A local file of torch-fidelity's Inception weights: `path`, else torch's hub cache
    ($TORCH_HOME/hub/checkpoints), downloading into it when missing. Files are checked to
    be plain tensors (never unpickled as code) before torch-fidelity loads them."""
    from ..download import DownloadError, download

    cache = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    how = (f"Download {INCEPTION_URL} on a machine with internet and pass it with --inception_weights PATH, "
           f"or put it in {cache.parent}/ (torch's cache; $TORCH_HOME moves it).")
    if path:
        file = Path(path)
        if not file.is_file():
            raise InceptionWeightsError(f"--inception_weights {file}: no such file. FID needs {INCEPTION_FILE}, "
                                        f"torch-fidelity's TF-Inception weights. {how}")
    else:
        file = cache
        if not file.is_file():
            try:
                download(INCEPTION_URL, file, sha256_prefix=INCEPTION_SHA256_PREFIX, progress=progress)
            except DownloadError as e:
                raise InceptionWeightsError(
                    f"FID needs {INCEPTION_FILE} (torch-fidelity's TF-Inception weights, ~95 MB); it is not in "
                    f"{cache.parent} and could not be downloaded ({e}). {how}") from None
    try:
        read_torch_file(file, "TF-Inception weights file")
    except TorchFileError as e:
        raise InceptionWeightsError(f"{e}. {how}") from None
    return str(file)


def _feature_extractor(extractor: str, weights_path: str | None, device: torch.device, progress: bool):
    from torch_fidelity.utils import create_feature_extractor

    if extractor == INCEPTION:
        weights_path = inception_weights(weights_path, progress)
    elif extractor not in _NETWORKS:
        raise UsageError(f"feature extractor {extractor!r} is not registered (known: "
                         f"{', '.join([INCEPTION, *_NETWORKS])})")
    layer = "2048" if extractor == INCEPTION else "features"
    try:
        net = create_feature_extractor(extractor, [layer], cuda=device.type == "cuda",
                                       feature_extractor_weights_path=weights_path, verbose=False)
    except RuntimeError as e:  # torch-fidelity's strict load of a readable file of other tensors
        if "state_dict" not in str(e):
            raise
        raise InceptionWeightsError(f"--extractor_weights {weights_path}: not {INCEPTION_FILE} (torch-fidelity's "
                                    "TF-Inception weights): the tensors it holds are another network's") from None
    return net, layer, weights_path


def _fingerprint(dataset: ImageFolderDataset, extractor: str, weights_path: str | None) -> str:
    """Changes when any image file, the size, the extractor or its weights file change."""
    h = hashlib.sha256(json.dumps([extractor, dataset.size, dataset.resize]).encode())
    files = [Path(weights_path)] if weights_path else []
    for f in files + dataset.paths:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class FolderFeatures:
    """One feature network, built (and its weights checked) on first use, for any
    number of folders: `features(folder)` -> [N, D]. `cache=True` keeps a folder's
    features in $TRANSFIGURE_CACHE/fid_stats until one of its files changes;
    `keep=True` remembers them for this object's life (folders that do not change)."""

    def __init__(self, extractor: str = INCEPTION, weights_path: str | None = None, batch_size: int = 64,
                 device: str | torch.device | None = None, size: tuple[int, int] | None = None,
                 progress: bool = False):
        self.extractor, self.weights_path, self.batch_size, self.size, self.progress = (
            extractor, weights_path, batch_size, size, progress)
        self.device = resolve_device(device)
        self._net = None
        self._kept: dict[Path, torch.Tensor] = {}

    def _network(self):
        if self._net is None:
            self._net = _feature_extractor(self.extractor, self.weights_path, self.device, self.progress)
        return self._net

    def __call__(self, folder: str | Path, cache: bool = False, keep: bool = False) -> torch.Tensor:
        from ..download import cache_dir

        resolved = Path(folder).resolve()
        if resolved in self._kept:
            return self._kept[resolved]
        dataset = ImageFolderDataset(folder, self.size)
        net, layer, weights_path = self._network()
        stored, features = None, None
        if cache:
            stored = cache_dir() / "fid_stats" / f"{_fingerprint(dataset, self.extractor, weights_path)}.pt"
        if stored is not None and stored.is_file():
            try:
                features = read_torch_file(stored, "cached feature file")
            except TorchFileError:  # damaged in the cache: computed again and replaced
                features = None
            if not isinstance(features, torch.Tensor) or features.dim() != 2 or len(features) != len(dataset):
                features = None
        if features is None:
            loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, num_workers=0)
            chunks = []
            with torch.no_grad(), tqdm(total=len(dataset), unit="image", desc=f"features of {dataset.folder.name}",
                                       disable=not self.progress, leave=False) as bar:
                for batch in loader:
                    chunks.append(net.convert_features_tuple_to_dict(net(batch.to(self.device)))[layer].float().cpu())
                    bar.update(len(batch))
            features = torch.cat(chunks)
            if stored is not None:
                from ..checkpoint import atomic_torch_save
                stored.parent.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(features, stored)
        if keep:
            self._kept[resolved] = features
        return features


def folder_features(folder: str | Path, extractor: str = INCEPTION, weights_path: str | None = None,
                    batch_size: int = 64, device: str | torch.device | None = None,
                    size: tuple[int, int] | None = None, cache: bool = False, progress: bool = False) -> torch.Tensor:
    """[N, D] features of every image in `folder` (see FolderFeatures)."""
    return FolderFeatures(extractor, weights_path, batch_size, device, size, progress)(folder, cache=cache)


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of [N, D] features (torch-fidelity's code)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = fid_features_to_statistics(features.cpu())
    return stats["mu"], stats["sigma"]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), by torch-fidelity's code."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    out = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    return float(out["frechet_inception_distance"])


def kernel_distance(fake: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """KID mean and std (torch-fidelity's estimator, its default subsets and seed)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(fake, real, kid_subset_size=min(1000, len(fake), len(real)), verbose=False)
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


def distances(real_features: torch.Tensor, fake_features: torch.Tensor, extractor: str = INCEPTION,
              kid: bool = True, names: tuple = ("real", "fake")) -> dict:
    """FID (and KID mean/std when `kid`) of two feature sets.
    Returns {"fid", "kid_mean", "kid_std", "n_real", "n_fake", "extractor", "label"}."""
    n_real, n_fake = len(real_features), len(fake_features)
    if min(n_real, n_fake) < 2:
        raise UsageError(f"FID needs at least 2 images in each folder ({names[0]}: {n_real}, {names[1]}: {n_fake})")
    out = {"fid": frechet_distance(*feature_statistics(real_features), *feature_statistics(fake_features)),
           "n_real": n_real, "n_fake": n_fake, "extractor": extractor, "label": metric_label(extractor)}
    if kid:
        out["kid_mean"], out["kid_std"] = kernel_distance(fake_features, real_features)
    return out


def fid_kid(real: str | Path, fake: str | Path, extractor: str = INCEPTION, weights_path: str | None = None,
            kid: bool = True, batch_size: int = 64, device: str | torch.device | None = None,
            size: tuple[int, int] | None = None, cache_real: bool = False, progress: bool = False) -> dict:
    """FID (and KID mean/std when `kid`) between two image folders. `cache_real`
    keeps the real folder's features until one of its files changes."""
    features = FolderFeatures(extractor, weights_path, batch_size, device, size, progress)
    return distances(features(real, cache=cache_real), features(fake), extractor, kid, (real, fake))
