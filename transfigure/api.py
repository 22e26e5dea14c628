"""The Python API: `transfigure.load(...)` gives a callable translator.

    import transfigure
    t = transfigure.load("shinkai")            # a published model, a run name or a weights file
    cartoon = t(Image.open("photo.jpg"))        # PIL in, PIL out; NumPy and tensors work too
    t.translate_folder("photos/", "cartoons/")
    t.translate_video("clip.mp4", "clip_cartoon.mp4")   # same frame rate, no audio
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cartoonize import style_images
from .pretrained import CARTOONGAN_PREPROCESSING, PLAIN, Preprocessing
from .runner import DEFAULT_TILE_OVERLAP, GeneratorRunner, RunOptions, default_backend
from .translate import (collect_inputs, generator_images, input_root, needs_single_images, prepare_image,
                        translate_inputs)
from .video import VIDEO_EXTENSIONS, is_video_file, translate_video
from .errors import UsageError


class Translator:
    """One generator with its preprocessing. Call it on a PIL image, a uint8 (or
    [0, 1] float) HxWx3 NumPy array, or a float tensor in [0, 1] shaped [3, H, W]
    or [N, 3, H, W]; the result is of the same kind and, except where `preprocessing`
    resizes (the CartoonGAN styles: long side 450 as published) and `max_size`, the
    same size. `run` says how the generator runs (device, precision, backend, tiles);
    `describe()` says what it picked."""

    def __init__(self, net: torch.nn.Module, source: str, preprocessing: Preprocessing = PLAIN,
                 input_nc: int = 3, eval_mode: bool = False, run: RunOptions = RunOptions(), max_size: int = 0,
                 progress: bool = True):
        self.source, self.preprocessing, self.input_nc, self.max_size = source, preprocessing, input_nc, max_size
        self.runner = GeneratorRunner(net, run, input_nc, eval_mode or preprocessing.per_image, progress)
        self.device = self.runner.device
        if preprocessing.per_image:
            self._images = style_images(self.runner, preprocessing.load_size, preprocessing.bgr)
            self.batch_size = 1
        else:
            self._images = generator_images(self.runner, input_nc)
            self.batch_size = 1 if needs_single_images(net, eval_mode) else 4
        self.net = net

    def __repr__(self) -> str:
        return (f"Translator({self.source!r}, device={self.device}, backend={self.runner.backend.name}, "
                f"precision={self.runner.precision.name})")

    def describe(self) -> str:
        return self.runner.describe()

    def _prepare(self, image: Image.Image) -> Image.Image:
        return prepare_image(image, self.input_nc, self.max_size)

    def _pil(self, image: Image.Image) -> Image.Image:
        return self._images([self._prepare(image)])[0]

    def __call__(self, image):
        if isinstance(image, Image.Image):
            return self._pil(image)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise UsageError(f"expected an HxWx3 image array, got shape {image.shape}")
            floats = image.dtype.kind == "f"
            pixels = np.clip(image[..., :3] * 255 + 0.5, 0, 255).astype(np.uint8) if floats else \
                image[..., :3].astype(np.uint8)
            out = np.array(self._pil(Image.fromarray(pixels)).convert("RGB"))
            return out.astype(image.dtype) / 255 if floats else out
        if torch.is_tensor(image):
            batch = image if image.dim() == 4 else image.unsqueeze(0)
            if batch.dim() != 4 or batch.shape[1] != 3:
                raise UsageError(f"expected a tensor [3, H, W] or [N, 3, H, W] in [0, 1], got {tuple(image.shape)}")
            outs = []
            for x in batch:
                pixels = (x.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                out = np.array(self._pil(Image.fromarray(pixels)).convert("RGB"))
                outs.append(torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255)
            result = torch.stack(outs).to(image.device, image.dtype)
            return result if image.dim() == 4 else result[0]
        raise TypeError(f"expected a PIL image, a NumPy array or a tensor, got {type(image).__name__}")

    def translate_folder(self, input: str | Path, output: str | Path, overwrite: bool = False,
                         recursive: bool = False, progress: bool = True):
        """Every image and video of `input` (a file, a folder or a glob pattern) into the
        folder `output`, as `transfigure translate` does: images as PNG, names mirrored,
        existing outputs kept unless `overwrite`."""
        return translate_inputs(self._images, collect_inputs(input, recursive), output, self.input_nc,
                                self.batch_size, overwrite=overwrite, progress=progress, max_size=self.max_size,
                                root=input_root(input))

    def translate_video(self, input: str | Path, output: str | Path, overwrite: bool = False,
                        progress: bool = True) -> int:
        """The video file `input` translated frame by frame into the video file `output`
        (.mp4/.mov/.avi), at the same frame rate, without audio. Returns the frame count."""
        output = Path(output)
        if not is_video_file(input):
            raise UsageError(f"{input}: not a video file (expected one of {' '.join(VIDEO_EXTENSIONS)})")
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output}: already exists; pass overwrite=True to replace it")
        if output.resolve() == Path(input).resolve():
            raise UsageError(f"{output}: would overwrite the input video; choose another output")
        return translate_video(self._images, input, output, self.batch_size, self._prepare, progress)


def load(model: str | Path, weights: str | Path | None = None, direction: str | None = None,
         checkpoints_dir: str | Path = "checkpoints", epoch: str = "latest", eval_mode: bool = False,
         device: str | torch.device | None = None, progress: bool = True, tile: int = 0,
         tile_overlap: int = DEFAULT_TILE_OVERLAP, max_size: int = 0, precision: str = "auto",
         backend: str | None = None) -> Translator:
    """A Translator from a published model's name (`transfigure models`), a weights
    file (.ckpt/.pth/.safetensors, or a folder of CartoonGAN .npy tensors), or a run
    name under `checkpoints_dir`. `tile`, `tile_overlap`, `max_size`, `precision` and
    `backend` are as the command-line options of `transfigure translate` (backend None:
    $TRANSFIGURE_BACKEND, else auto)."""
    from .pretrained import MODELS, load_pretrained
    from .translate import load_generator

    run = RunOptions(device=str(device or "auto"), precision=precision, backend=backend or default_backend(),
                     tile=tile, tile_overlap=tile_overlap)
    sizes = dict(run=run, max_size=max_size, progress=progress)
    key = str(model).lower()
    if key in MODELS and not Path(model).exists():
        g = load_pretrained(key, weights, progress=progress)
        return Translator(g.net, key, MODELS[key].preprocessing, input_nc=g.input_nc, eval_mode=eval_mode, **sizes)
    path = Path(model)
    if path.is_dir() and any(path.glob("*.npy")):
        from .nets.cartoongan import CartoonGANGenerator, load_published_weights
        return Translator(load_published_weights(CartoonGANGenerator(), path).eval(), str(path),
                          CARTOONGAN_PREPROCESSING, **sizes)
    if path.is_file():
        g = load_generator(checkpoint=path, direction=direction)
    elif (Path(checkpoints_dir) / str(model)).is_dir():
        g = load_generator(name=str(model), checkpoints_dir=str(checkpoints_dir), epoch=epoch, direction=direction)
    else:
        raise FileNotFoundError(f"{model!r} is no published model (`transfigure models`), no file and no run "
                                f"under {checkpoints_dir}")
    return Translator(g.net, g.source, input_nc=g.input_nc, eval_mode=eval_mode, **sizes)
