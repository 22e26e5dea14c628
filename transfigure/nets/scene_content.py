"""A content network for offline CartoonGAN training on the synthetic scenes.

CartoonGAN's content loss compares features of a photo and of its cartoon; with
ImageNet VGG19 those features name what is in the picture whatever its style.
Offline, a VGG19 with random weights gives features that hold no content (the
cartoon benchmark's CartoonGAN collapsed to one picture with them). This small
VGG-like network learns content from freshly rendered scenes instead: it labels
every pixel's class (sky, building, tree, road, car) of photos *and* of their
cartoons, and is asked to give a photo and its cartoon the same features, so they
keep the layout and ignore the rendering style, which is what the content loss
needs. Its objective and scenes are its own, distinct from the
evaluation's FID-syn network (`evaluate.synthetic_features`), so training does not
optimise the features it is measured with.

Use it as `--content_net synthetic-scenes:features --content_weights FILE`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint as ckpt
from ..data.synthetic import CLASSES, scene_tensors
from ..torchfiles import load_fitting, read_torch_file
from ..errors import UsageError

MODEL_NAME = "synthetic-scenes"
LAYERS = ("features",)
VERSION = 2
SCENE_OFFSET = 30_000_000  # scene indices apart from the datasets' and the FID-syn network's


class SceneContentNet(nn.Module):
    """conv3-32 x2, pool, conv3-64 x2, pool, conv3-128 x2 (ReLU after each): features
    at 1/4 resolution (16x16 for 64-px images, as VGG19 conv4_4 is 1/8 of 256 px), and a
    1x1 head naming each pixel's class, used only to train them."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        layers, channels = [], 3
        for i, out in enumerate((w, 2 * w, 4 * w)):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(out, out, 3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.segment = nn.Conv2d(channels, len(CLASSES), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def loss(self, photos: torch.Tensor, cartoons: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Per-pixel classes of both renderings, plus the distance between the features of
        a photo and of its cartoon relative to their size (a ratio, so that shrinking the
        features cannot lower it)."""
        f = self(torch.cat([photos, cartoons]))
        logits = F.interpolate(self.segment(f), size=classes.shape[-2:], mode="bilinear", align_corners=False)
        f_photo, f_cartoon = f.chunk(2)
        invariance = (f_photo - f_cartoon).abs().mean() / (f_photo.abs().mean() + f_cartoon.abs().mean() + 1e-6)
        return F.cross_entropy(logits, torch.cat([classes, classes])) + invariance


def train_on_scenes(path: str | Path, settings: dict, seed: int, build, data, loss, steps: int, batch_size: int,
                    lr: float, progress: bool, desc: str) -> Path:
    """The training of the small networks that learn from rendered scenes: `build()`
    makes the net, `data()` its tensors (first dim: samples), `loss(net, *batch)` the
    objective of a batch; each batch is `batch_size` samples in a shuffled order, each
    flipped left-right with probability 1/2 (every tensor with an image axis). Saved to
    `path` with `settings`, and reused when the file holds the same settings.
    Deterministic for a seed on one thread; the caller's RNG is left alone."""
    path = Path(path)
    if path.is_file():
        try:  # a damaged or foreign file is trained anew (and replaced)
            stored = read_torch_file(path)
            if json.loads(stored["settings"]) == settings:
                return path
        except (UsageError, KeyError, TypeError, ValueError):
            pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tensors = data()
        net = build()
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        order = torch.randperm(len(tensors[0]))
        bar = range(steps)
        if progress:
            from tqdm import tqdm
            bar = tqdm(bar, desc=desc, unit="step")
        for step in bar:
            idx = order[(step * batch_size + torch.arange(batch_size)) % len(order)]
            flip = torch.rand(batch_size) < 0.5
            batch = [t[idx] for t in tensors]
            for t in batch:
                if t.dim() >= 3:  # images [B, C, H, W] and class maps [B, H, W]; not per-sample labels
                    t[flip] = t[flip].flip(-1)
            value = loss(net, *batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    net.eval()
    buffer = {"settings": json.dumps(settings), "state_dict": net.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_torch_save(buffer, path)
    return path


def train_scene_content_net(path: str | Path, size: int = 64, seed: int = 0, scenes: int = 1000, steps: int = 500,
                            batch_size: int = 16, progress: bool = True) -> Path:
    """Train the network on freshly rendered scenes and save it to `path` (reused when it
    exists with the same settings). A batch is `batch_size` scenes, each as photo and cartoon."""
    settings = {"version": VERSION, "size": size, "seed": seed, "scenes": scenes, "steps": steps,
                "batch_size": batch_size}
    return train_on_scenes(path, settings, seed, SceneContentNet, lambda: scene_tensors(size, seed, SCENE_OFFSET, scenes),
                           lambda net, p, c, y: net.loss(p, c, y), steps, batch_size, 1e-3, progress,
                           "content network")


def load_scene_content_net(path: str | Path | None, layer: str, option: str) -> nn.Module:
    """The trained feature body from `path` (written by `train_scene_content_net`)."""
    if layer not in LAYERS:
        raise UsageError(f"no layer {layer!r} in {MODEL_NAME} (use {', '.join(LAYERS)})")
    if not path or not Path(path).is_file():
        raise FileNotFoundError(
            f"{MODEL_NAME}:{layer} needs its trained weights: {option} FILE (got {path or 'nothing'}); "
            "`transfigure benchmark cartoon` writes one to OUT/content_net.pt")
    stored = read_torch_file(path, f"{MODEL_NAME} content network")
    net = load_fitting(SceneContentNet(), stored.get("state_dict") if isinstance(stored, dict) else None,
                       f"{option} {path}", f"{MODEL_NAME} content network")
    return net.features
