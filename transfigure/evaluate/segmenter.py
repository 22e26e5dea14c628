"""Segmenters for the "FCN score" of generated photos (labels -> photo).

The pix2pix and CycleGAN papers score a labels -> photo generator by running
a semantic segmentation network (an FCN trained on real Cityscapes photos)
over its outputs and comparing the predicted labels with the input labels:
a generated photo that a segmenter reads correctly looks like the real
thing. Here the segmenter is either

- a photo -> labels model of this tool, named by its run (e.g. for the
  synthetic task, pix2pix trained photo -> labels on the real pairs), or
- a TorchScript file (`torch.jit.load`): input [1, 3, H, W] in [-1, 1],
  output either a label image [1, 3, H, W] in [-1, 1] or class logits
  [1, C, H, W] with C = the palette's number of classes.

Either way the segmenter writes label images in the palette's colors, which
`score_label_folders` scores by nearest palette color.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError

OUTPUT_KINDS = ("auto", "image", "logits")


class SegmenterError(UsageError):
    """A segmenter that cannot be found, loaded or run; the message says which and why."""


@dataclass
class Segmenter:
    """`net` maps a photo batch [N, 3, H, W] in [-1, 1] to label images or logits."""
    net: nn.Module
    source: str
    output: str = "image"       # "image", "logits" or "auto" (decided per output by its channels)
    eval_mode: bool = False     # batch norm / dropout of a run's generator in eval mode (official --eval)

    def to_label_image(self, out: torch.Tensor, colors: np.ndarray) -> np.ndarray:
        """One network output [C, H, W] -> a label image HxWx3 uint8 in palette colors (logits) or
        the image itself in [0, 255] (label image: `score_label_folders` snaps it to the palette)."""
        kind = self.output
        if kind == "auto":
            kind = "image" if out.shape[0] == 3 else "logits"
        if kind == "logits":
            if out.shape[0] != len(colors):
                raise SegmenterError(f"{self.source}: it outputs {out.shape[0]} channels, read as class logits, "
                                     f"but the palette has {len(colors)} classes")
            return np.asarray(colors, np.uint8)[out.argmax(0).cpu().numpy()]
        if out.shape[0] not in (1, 3):
            raise SegmenterError(f"{self.source}: it outputs {out.shape[0]} channels; a label image needs 3 "
                                 "(or pass class logits with one channel per palette class)")
        img = ((out.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
        return img.expand(3, -1, -1).permute(1, 2, 0).numpy()


def load_segmenter(spec: str, checkpoints_dir: str | Path = "checkpoints", epoch: str = "latest",
                   direction: str | None = None, output: str = "auto", eval_mode: bool = False) -> Segmenter:
    """A segmenter from SPEC: a TorchScript file path, or a run name under `checkpoints_dir`
    (its generator for `direction`, default the direction the run was trained for)."""
    if output not in OUTPUT_KINDS:
        raise SegmenterError(f"segmenter output {output!r}: expected one of {', '.join(OUTPUT_KINDS)}")
    path = Path(spec)
    if path.is_file():
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream, and still what people export
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # TorchScript raises RuntimeError and others for non-archives
            raise SegmenterError(f"--segmenter {spec}: not a TorchScript file that torch.jit.load can read "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). A model of "
                                 "this tool is given by its run name instead.") from e
        net.eval()
        return Segmenter(net, str(path), output=output, eval_mode=True)
    run = Path(checkpoints_dir) / spec
    if run.is_dir():
        from ..translate import load_generator
        generator = load_generator(name=spec, checkpoints_dir=str(checkpoints_dir), epoch=epoch, direction=direction)
        if generator.output_nc != 3:
            raise SegmenterError(f"--segmenter {spec}: its generator outputs {generator.output_nc} channel(s); "
                                 "a photo -> labels model outputs 3 (label colors)")
        return Segmenter(generator.net, generator.source, output="image" if output == "auto" else output,
                         eval_mode=eval_mode)
    raise SegmenterError(f"--segmenter {spec}: neither a TorchScript file nor a run under {checkpoints_dir} "
                         f"(no {path} and no {run})")


@torch.inference_mode()
def segment_files(segmenter: Segmenter, photos: list[Path], out_dir: str | Path, colors,
                  device: torch.device | str = "cpu", progress: bool = False) -> list[Path]:
    """Run the segmenter over each photo (one at a time, at its own size) and write
    OUT_DIR/<stem>.png label images. Returns the written paths. Files in OUT_DIR with
    these names are replaced; an input file is never written to."""
    from PIL import Image

    from ..data.images import image_to_tensor, load_image
    from ..nets import run_padded

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in photos}
    targets = [out_dir / f"{p.stem}.png" for p in photos]
    if len({t.name for t in targets}) != len(targets):
        raise SegmenterError(f"two photos share a file stem in {photos[0].parent}; labels are named by stem")
    for t in targets:
        if t.resolve() in inputs:
            raise SegmenterError(f"writing {t} would overwrite an input photo; choose another output folder")
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    net = segmenter.net.to(device)
    if not isinstance(net, torch.jit.ScriptModule):
        net.train(not segmenter.eval_mode)
    items = list(zip(photos, targets))
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="segmenting", unit="img")
    for source, target in items:
        x = image_to_tensor(load_image(source, 3)).unsqueeze(0).to(device)
        try:
            y = net(x) if isinstance(net, torch.jit.ScriptModule) else run_padded(net, x)
        except Exception as e:
            raise SegmenterError(f"{segmenter.source} failed on {source} ({tuple(x.shape)}): "
                                 f"{type(e).__name__}: {e}") from e
        if isinstance(y, (tuple, list)):
            y = y[0]
        if isinstance(y, dict):  # torchvision segmentation models return {"out": logits, ...}
            y = y["out"]
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[0] != 1:
            raise SegmenterError(f"{segmenter.source}: expected an output tensor [1, C, H, W], got "
                                 f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        Image.fromarray(segmenter.to_label_image(y[0], colors)).save(target)
    return targets


def score_photos(segmenter: Segmenter, photos_dir: str | Path, gt_dir: str | Path, colors, out_dir: str | Path,
                 device: torch.device | str = "cpu", progress: bool = False) -> dict:
    """The FCN-score analogue: segment the photos of PHOTOS_DIR into OUT_DIR and score
    those labels against the ground-truth label images of GT_DIR (matched by stem)."""
    from ..data.images import list_images
    from .segmentation import score_label_folders

    photos_dir = Path(photos_dir)
    if not photos_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {photos_dir}")
    photos = list_images(photos_dir)
    if not photos:
        raise FileNotFoundError(f"no images in {photos_dir}")
    segment_files(segmenter, photos, out_dir, colors, device=device, progress=progress)
    return score_label_folders(out_dir, gt_dir, colors)
