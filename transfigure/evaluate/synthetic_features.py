"""A small feature network trained on the synthetic street scenes, standing in
for Inception where no pretrained network can be had (offline, CPU-only
benchmarks). It learns two things from freshly rendered scenes: which class
every pixel belongs to (content) and whether an image is a textured photo or
a flat cartoon (style), so distances between its feature statistics react to
both. Scores computed with it are labelled "synthetic-scene features" and are
not comparable with Inception FIDs.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from ..data.synthetic import CLASSES, scene_tensors
from ..nets.scene_content import train_on_scenes
from ..torchfiles import load_fitting, read_torch_file
from .fid import FeatureNetwork, register_feature_network

NAME = "transfigure-synthetic-scenes"
LABEL = "FID (synthetic-scene features, not Inception)"
VERSION = 2                   # of the network's design: a file of another version is retrained
SCENE_OFFSET = 20_000_000     # scene indices far from any dataset's, so no test scene is seen in training


class SyntheticFeatureNet(nn.Module):
    """Four stride-2 conv blocks. Features: the spatial means of the last two blocks
    (what kind of image: photo or cartoon) and a 2x2 grid of 16 layout channels of
    the last one (where things are: a set of images all alike scores badly)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(i, o, stride):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.blocks = nn.ModuleList([block(3, w, 2), block(w, 2 * w, 2), block(2 * w, 2 * w, 2),
                                     block(2 * w, 2 * w, 2)])
        self.layout = nn.Conv2d(2 * w, 16, 1)                   # coarse layout, trained to name every pixel's class
        self.segment = nn.Conv2d(16, len(CLASSES), 1)
        self.domain = nn.Linear(4 * w, 2)                       # photo or cartoon

    def _parts(self, x):
        maps = []
        for b in self.blocks:
            x = b(x)
            maps.append(x)
        kind = torch.cat([maps[2].mean((2, 3)), maps[3].mean((2, 3))], 1)
        return kind, self.layout(maps[3])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        kind, layout = self._parts(x)
        return torch.cat([kind, F.adaptive_avg_pool2d(layout, 2).flatten(1)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def losses(self, x, classes, domain):
        kind, layout = self._parts(x)
        seg = F.interpolate(self.segment(layout), size=classes.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(seg, classes), F.cross_entropy(self.domain(kind), domain)


def train_feature_net(path: str | Path, size: int = 64, seed: int = 0, scenes: int = 1500, steps: int = 600,
                      batch_size: int = 32, progress: bool = True) -> Path:
    """Train the network on freshly rendered scenes and save it to `path` (reused
    when it exists with the same settings). Deterministic for a seed."""
    settings = {"version": VERSION, "size": size, "seed": seed, "scenes": scenes, "steps": steps,
                "batch_size": batch_size}

    def data():  # photos then cartoons, each labelled with its domain
        photos, cartoons, classes = scene_tensors(size, seed, SCENE_OFFSET, scenes)
        return (torch.cat([photos, cartoons]), torch.cat([classes, classes]),
                torch.cat([torch.zeros(scenes), torch.ones(scenes)]).long())

    return train_on_scenes(path, settings, seed, SyntheticFeatureNet, data,
                           lambda net, x, y, domain: sum(net.losses(x, y, domain)), steps, batch_size, 2e-3, progress,
                           "feature network")


def load_feature_net(path: str | Path | None) -> SyntheticFeatureNet:
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"synthetic feature network {path}: no such file (train_feature_net writes it)")
    stored = read_torch_file(path, "synthetic feature network")
    net = load_fitting(SyntheticFeatureNet(), stored.get("state_dict") if isinstance(stored, dict) else None,
                       f"--extractor_weights {path}", "synthetic-scenes feature network")
    return net.eval().requires_grad_(False)


def feature_network() -> FeatureNetwork:
    """Register the network with the FID code; pass its file as the weights path."""
    return register_feature_network(NAME, load_feature_net, LABEL)
