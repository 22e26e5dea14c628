"""Fidelity at sizes that are not multiples of 4: transfigure's result against an
independent re-implementation of the authors' steps on the *unpadded* image.

The CartoonGAN authors' test.py resizes (long side `load_size`, bicubic, the other side
truncated), flips RGB to BGR, maps [0, 1] to [-1, 1], runs the net on the image as it is
(450 rows give 452 output rows: the extra rows are the net's own extrapolation), flips
back, takes x * 0.5 + 0.5 and rounds as torchvision's save_image does. The reference,
`authors_pipeline` in test_cartoonize.py, does exactly that in plain tensor operations
(`reference_forward` is the authors' forward pass written out from their Transformer),
never through our padding code, and crops the output to the input's size. The official CycleGAN test script likewise runs
its ResNet generator on the image as loaded."""

import numpy as np
import pytest
import torch
from PIL import Image

from transfigure.cartoonize import cartoonize_image, load_style
from transfigure.runner import GeneratorRunner, RunOptions
from transfigure.cli import main
from transfigure.nets import define_G

from shared_data import PHOTOS, WEIGHTS, needs_weights
from test_cartoonize import authors_pipeline, read_npy

# (width, height): sides that are not multiples of 4, as most photos after the 450-px resize.
ODD_SIZES = [((450, 337), "4--24.jpg"), ((449, 450), "origami.jpg"), ((451, 298), "temple.jpg")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@needs_weights
# Each odd size once, the styles taking turns: the pipeline's resize and padding do not depend on
# the weights, and each style's weights are checked at least once (the suite's time is bounded).
@pytest.mark.parametrize("style,size,photo", [(style, *case) for style, case in
                                              zip(["hayao", "shinkai", "hayao"], ODD_SIZES)])
def test_cartoonize_equals_the_authors_pipeline_at_odd_sizes(style, size, photo):
    # The photo brought to the wanted size first; both pipelines then resize it the same way
    # (to `load_size` = its long side, a near-identity bicubic resize).
    image = Image.open(PHOTOS / photo).convert("RGB").resize(size, Image.BICUBIC)
    load_size = max(size)
    expected = authors_pipeline(read_npy(style), image, load_size)
    assert expected.shape[0] % 4 or expected.shape[1] % 4  # off the net's 4-px grid
    net = load_style(style, weights=WEIGHTS / style)
    got = np.asarray(cartoonize_image(GeneratorRunner(net, RunOptions.reference()), image, load_size))
    assert got.shape == expected.shape
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    print(f"{style} {size}: mean abs diff {diff.mean():.4f}/255, max {diff.max()}, PSNR {psnr(got, expected):.1f} dB")
    assert diff.mean() <= 0.5  # centred padding gave ~5/255 and 25-28 dB here
    assert psnr(got, expected) >= 45
    assert expected.std() > 20  # a picture, not a flat field


@pytest.mark.parametrize("size", [(45, 37), (50, 29), (33, 62)])
def test_resnet_generator_equals_its_unpadded_run(tmp_path, size):
    """A resnet_9blocks CycleGAN generator (seeded random weights) through `transfigure
    translate --checkpoint`: equal to the official test's steps (ToTensor, Normalize(0.5,
    0.5), the net on the unpadded image, (y + 1) / 2 * 255, then uint8) cropped back."""
    torch.manual_seed(3)
    net = define_G(3, 3, ngf=8, netG="resnet_9blocks").eval()
    with torch.no_grad():  # visible structure in the output, not near-zero tanh values
        for p in net.parameters():
            p.mul_(3.0)
    weights = tmp_path / "latest_net_G_A.pth"
    torch.save(net.state_dict(), weights)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    assert main(["translate", "--checkpoint", str(weights), "--ngf", "8", "--input", str(tmp_path / "in.png"),
                 "--output", str(tmp_path / "out"), "--no_progress"]) == 0
    got = np.asarray(Image.open(tmp_path / "out" / "in.png"))

    x = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net((x - 0.5) / 0.5)[0]
    assert y.shape[-2:] != x.shape[-2:]  # the net's output is larger: the sizes are off its grid
    y = y[:, :size[1], :size[0]]
    # util.tensor2im: (y + 1) / 2 * 255, cast to uint8; we round instead of truncating.
    expected = ((y.permute(1, 2, 0).numpy() + 1) / 2 * 255)
    assert got.shape == expected.shape
    diff = np.abs(got.astype(np.float64) - expected)
    print(f"resnet_9blocks {size}: mean abs diff {diff.mean():.4f}, PSNR {psnr(got, expected):.1f} dB")
    assert diff.max() <= 0.5 + 1e-3  # rounding of the exact result, nothing more
    assert expected.std() > 10
