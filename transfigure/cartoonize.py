"""The published CartoonGAN styles applied to photos, with the authors' exact
preprocessing (Yijunmaverick/CartoonGAN-Test-Pytorch-Torch test.py): resize so the
long side is `load_size` (bicubic), RGB -> BGR, [0, 1] -> [-1, 1]; the output goes
back BGR -> RGB and x * 0.5 + 0.5. Weights come from `--weights` (a folder of
`<key>.npy` files or a .pth/.safetensors file) or are downloaded tensor by tensor into
`cache_dir()/cartoongan/<style>/`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from . import config
from .data.images import image_to_tensor, tensor_to_image
from .download import cache_dir, download
from .nets.cartoongan import CartoonGANGenerator, load_published_weights
from .runner import GeneratorRunner, RunOptions
from .tempfiles import check_output_folder
from .translate import (ImagesFunction, TranslateSummary, add_input_arguments, collect_inputs, input_root,
                        report_written, translate_inputs)
from .errors import UsageError

STYLES = {
    "hayao": "Hayao Miyazaki's films",
    "hosoda": "Mamoru Hosoda's films",
    "paprika": "Satoshi Kon's Paprika",
    "shinkai": "Makoto Shinkai's films",
}
# Public copies of the published generators, one PyTorch-layout .npy per state_dict key.
DEFAULT_BASE_URL = ("https://raw.githubusercontent.com/mnicnc404/CartoonGan-tensorflow/master/"
                    "style_transfer/cartoongan/pretrained_weights")
BASE_URL_ENV = "TRANSFIGURE_CARTOONGAN_URL"
DEFAULT_LOAD_SIZE = 450


def _check_style(style: str) -> str:
    key = style.lower()
    if key not in STYLES:
        raise UsageError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    return key


def style_url(style: str, key: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{_check_style(style)}/{key}.npy"


def style_cache(style: str) -> Path:
    return cache_dir() / "cartoongan" / _check_style(style)


def fetch_style(style: str, base_url: str | None = None, progress: bool = True) -> Path:
    """The cache folder of `style`, after downloading the tensors it lacks one by one
    (each is renamed into place only when whole, so an interrupted fetch resumes)."""
    folder = style_cache(style)
    keys = CartoonGANGenerator().state_dict().keys()
    missing = [k for k in keys if not (folder / f"{k}.npy").is_file()]
    hint = (f"Offline? Get the {len(keys)} files <key>.npy of style '{style}' elsewhere and pass --weights "
            f"FOLDER (or a .pth file), put them in {folder}, or set ${BASE_URL_ENV} to a mirror")
    for key in tqdm(missing, desc=f"downloading {style} weights", unit="file", disable=not progress):
        download(style_url(style, key, base_url), folder / f"{key}.npy", progress=False, hint=hint)
    return folder


def load_style(style: str, weights: str | os.PathLike | None = None, base_url: str | None = None,
               progress: bool = True) -> CartoonGANGenerator:
    """The published generator of `style` in eval mode, from `weights` (a folder of .npy
    files or a .pth/.safetensors file) or from the cache, downloading what it lacks."""
    from .pretrained import check_fingerprint, get_model

    style = _check_style(style)
    net = CartoonGANGenerator()
    if weights is not None:
        load_published_weights(net, weights)
        check_fingerprint(get_model(style), net, f"--weights {weights}")
        return net.eval()
    folder = fetch_style(style, base_url, progress)
    try:
        load_published_weights(net, folder)
        check_fingerprint(get_model(style), net, folder)
    except ValueError as e:  # e.g. a file damaged on disk after it was verified
        raise UsageError(f"{e}; delete {folder} to download the weights again") from e
    return net.eval()


def style_size(size: tuple[int, int], load_size: int) -> tuple[int, int]:
    """(width, height) the reference gives an image of `size`: long side `load_size`, the
    other scaled and truncated as its test.py does (int(), not round()); 0 keeps the size."""
    if load_size <= 0:
        return size
    w, h = size
    ratio = w / h
    w, h = (load_size, int(load_size / ratio)) if ratio > 1 else (int(load_size * ratio), load_size)
    return max(w, 1), max(h, 1)


def cartoonize_image(runner: GeneratorRunner, image: Image.Image, load_size: int = DEFAULT_LOAD_SIZE,
                     bgr: bool = True) -> Image.Image:
    """One RGB image -> its cartoon (RGB), at `style_size(image.size, load_size)`, through
    `runner` (whose net takes BGR unless `bgr` is False)."""
    image = image.convert("RGB")
    size = style_size(image.size, load_size)
    if size != image.size:
        image = image.resize(size, Image.BICUBIC)
    order = [2, 1, 0] if bgr else [0, 1, 2]
    x = image_to_tensor(image)[order].unsqueeze(0)  # [-1, 1], in the net's channel order
    y = runner(x)[0, order]  # any size: run as it is, cropped
    # tensor_to_image maps [-1, 1] to round((y + 1) * 127.5) = the reference's (y * 0.5 + 0.5) * 255.
    return tensor_to_image(y)


def style_images(runner: GeneratorRunner, load_size: int = DEFAULT_LOAD_SIZE, bgr: bool = True) -> ImagesFunction:
    """PIL images -> their cartoons, one by one (the published preprocessing resizes each)."""
    return lambda images: [cartoonize_image(runner, image, load_size, bgr) for image in images]


def cartoonize_files(net: torch.nn.Module, inputs: list[Path], output_dir: str | Path,
                     load_size: int = DEFAULT_LOAD_SIZE, run: RunOptions = RunOptions.reference(),
                     overwrite: bool = False, progress: bool = True, max_size: int = 0,
                     root: Path | None = None, bgr: bool = True, announce: bool = False,
                     strict: bool = False) -> TranslateSummary:
    """Cartoonize each image or video into `output_dir` (names as `translate`), the net run
    as `run` says. Existing outputs are kept unless `overwrite`; an input file is never
    written to. `announce` prints the backend and precision picked."""
    runner = GeneratorRunner(net, run, progress=progress, announce=announce)
    return translate_inputs(style_images(runner, load_size, bgr), inputs, output_dir,
                            overwrite=overwrite, progress=progress, max_size=max_size, root=root, strict=strict)


def add_cartoonize_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--style", required=True, type=str.lower, choices=list(STYLES),
                        help="published CartoonGAN style")
    add_input_arguments(parser)
    parser.add_argument("--load_size", type=config.int_at_least(0, "0 keeps the size"), default=DEFAULT_LOAD_SIZE,
                        help="resize so the long side is this many pixels, as the published models "
                             "expect (default 450); 0 keeps each image's size (use --tile for large ones)")
    parser.add_argument("--weights", default=None,
                        help="local weights: a folder of <key>.npy files or a .pth/.safetensors file "
                             f"(default: download into {cache_dir() / 'cartoongan'}/STYLE from "
                             f"${BASE_URL_ENV} or the public copy)")
    config.add_common_arguments(parser, device=True, progress=True)
    return parser


def run_cartoonize(args: argparse.Namespace) -> int:
    run = RunOptions.from_args(args)  # checks the tile options before any download
    inputs = collect_inputs(args.input, args.recursive)  # before any download: a wrong --input fails at once
    check_output_folder(args.output)
    net = load_style(args.style, weights=args.weights, progress=not args.no_progress)
    summary = cartoonize_files(net, inputs, args.output, load_size=args.load_size, run=run,
                               overwrite=args.overwrite, progress=not args.no_progress,
                               root=input_root(args.input), announce=True, strict=args.strict)
    return report_written(summary, args.output)
