"""The Python API: `transfigure.load(...)` gives a callable translator.

    import transfigure
    t = transfigure.load("shinkai")            # a published model, a run name or a weights file
    cartoon = t(Image.open("photo.jpg"))        # PIL in, PIL out; NumPy and tensors work too
    t.translate_folder("photos/", "cartoons/")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.images import image_to_tensor, tensor_to_image
from .nets import run_padded


class Translator:
    """One generator with its preprocessing. Call it on a PIL image, a uint8 (or
    [0, 1] float) HxWx3 NumPy array, or a float tensor in [0, 1] shaped [3, H, W]
    or [N, 3, H, W]; the result is of the same kind and, except for CartoonGAN
    styles (long side resized to `load_size` as published), the same size."""

    def __init__(self, net: torch.nn.Module, source: str, style: bool = False, load_size: int = 450,
                 input_nc: int = 3, eval_mode: bool = False, device: str | torch.device | None = None):
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device)
        self.source, self.style, self.load_size, self.input_nc, self.eval_mode = (
            source, style, load_size, input_nc, eval_mode)

    def __repr__(self) -> str:
        return f"Translator({self.source!r}, device={self.device})"

    @torch.inference_mode()
    def _pil(self, image: Image.Image) -> Image.Image:
        if self.style:
            from .cartoonize import cartoonize_image
            return cartoonize_image(self.net.eval(), image, self.load_size, self.device)
        self.net.train(not self.eval_mode)
        x = image_to_tensor(image.convert("L" if self.input_nc == 1 else "RGB")).unsqueeze(0).to(self.device)
        return tensor_to_image(run_padded(self.net, x)[0].float().cpu())

    def __call__(self, image):
        if isinstance(image, Image.Image):
            return self._pil(image)
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"expected an HxWx3 image array, got shape {image.shape}")
            floats = image.dtype.kind == "f"
            pixels = np.clip(image[..., :3] * 255 + 0.5, 0, 255).astype(np.uint8) if floats else \
                image[..., :3].astype(np.uint8)
            out = np.array(self._pil(Image.fromarray(pixels)).convert("RGB"))
            return out.astype(image.dtype) / 255 if floats else out
        if torch.is_tensor(image):
            batch = image if image.dim() == 4 else image.unsqueeze(0)
            if batch.dim() != 4 or batch.shape[1] != 3:
                raise ValueError(f"expected a tensor [3, H, W] or [N, 3, H, W] in [0, 1], got {tuple(image.shape)}")
            outs = []
            for x in batch:
                pixels = (x.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                out = np.array(self._pil(Image.fromarray(pixels)).convert("RGB"))
                outs.append(torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255)
            result = torch.stack(outs).to(image.device, image.dtype)
            return result if image.dim() == 4 else result[0]
        raise TypeError(f"expected a PIL image, a NumPy array or a tensor, got {type(image).__name__}")

    def translate_folder(self, input: str | Path, output: str | Path, overwrite: bool = False,
                         progress: bool = True):
        """Every image of `input` (a file or a folder) into `output` as PNG, as `transfigure translate`."""
        from .translate import LoadedGenerator, collect_inputs, translate_files

        inputs = collect_inputs(input)
        if self.style:
            from .cartoonize import cartoonize_files
            return cartoonize_files(self.net, inputs, output, self.load_size, self.device, overwrite, progress)
        generator = LoadedGenerator(self.net, self.input_nc, 3, self.source)
        return translate_files(generator, inputs, output, device=self.device, overwrite=overwrite,
                               progress=progress, eval_mode=self.eval_mode)


def load(model: str | Path, weights: str | Path | None = None, direction: str | None = None,
         checkpoints_dir: str | Path = "checkpoints", epoch: str = "latest", eval_mode: bool = False,
         device: str | torch.device | None = None, progress: bool = True) -> Translator:
    """A Translator from a published model's name (`transfigure models`), a weights
    file (.ckpt/.pth/.safetensors, or a folder of CartoonGAN .npy tensors), or a run
    name under `checkpoints_dir`."""
    from .pretrained import MODELS, load_pretrained
    from .translate import load_generator

    key = str(model).lower()
    if key in MODELS and not Path(model).exists():
        if MODELS[key].family == "cartoongan":
            from .cartoonize import load_style
            return Translator(load_style(key, weights=weights, progress=progress), key, style=True, device=device)
        g = load_pretrained(key, weights, progress=progress)
        return Translator(g.net, key, input_nc=g.input_nc, eval_mode=eval_mode, device=device)
    path = Path(model)
    if path.is_dir() and any(path.glob("*.npy")):
        from .nets.cartoongan import CartoonGANGenerator, load_published_weights
        return Translator(load_published_weights(CartoonGANGenerator(), path).eval(), str(path), style=True,
                          device=device)
    if path.is_file():
        g = load_generator(checkpoint=path, direction=direction)
    elif (Path(checkpoints_dir) / str(model)).is_dir():
        g = load_generator(name=str(model), checkpoints_dir=str(checkpoints_dir), epoch=epoch, direction=direction)
    else:
        raise FileNotFoundError(f"{model!r} is no published model (`transfigure models`), no file and no run "
                                f"under {checkpoints_dir}")
    return Translator(g.net, g.source, input_nc=g.input_nc, eval_mode=eval_mode, device=device)
