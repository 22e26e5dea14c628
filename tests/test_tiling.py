"""Tiled translation: the blend weights, closeness to the untiled result, and no seams."""
from pathlib import Path

import pytest
import torch
from PIL import Image

from transfigure.data.images import image_to_tensor
from transfigure.data.synthetic import make_pair
from transfigure.nets import define_G, run_padded
from transfigure.nets.cartoongan import CartoonGANGenerator, load_published_weights
from transfigure.nets.tiling import _axis_weights, check_tiling, run_tiled, tile_spans

SHARED = Path(__file__).resolve().parents[2] / "shared"
HAYAO = SHARED / "weights" / "cartoongan" / "hayao"
PHOTO = SHARED / "photos" / "4--24.jpg"


@pytest.mark.parametrize("length,tile,overlap,multiple", [(100, 40, 10, 1), (257, 64, 16, 4), (64, 64, 8, 4),
                                                          (1000, 256, 64, 4), (1000, 300, 2, 256)])
def test_tiles_cover_with_the_overlap_and_weights_sum_to_one(length, tile, overlap, multiple):
    spans = tile_spans(length, tile, overlap, multiple)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(start % multiple == 0 for start, _ in spans)
    assert all(end - start <= tile for start, end in spans[:-1]) and spans[-1][1] - spans[-1][0] < tile + multiple
    assert all(a_end - b_start >= overlap for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    total = torch.zeros(length)
    for (start, end), w in zip(spans, _axis_weights(spans, length, overlap)):
        total[start:end] += w
    assert torch.allclose(total, torch.ones(length), atol=1e-6)


def test_bad_tile_options_name_the_option():
    with pytest.raises(ValueError, match="--tile "):
        check_tiling(8, 0)
    with pytest.raises(ValueError, match="--tile_overlap"):
        check_tiling(64, 40)
    check_tiling(0, 999)  # no tiling: the overlap is unused


def test_a_local_net_tiles_exactly():
    """Without normalisation and with a receptive field inside the overlap, tiling is exact:
    this checks the blending itself."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 1))
    x = torch.rand(2, 3, 90, 130) * 2 - 1
    with torch.inference_mode():
        full, tiled = net(x), run_tiled(net, x, 48, 12)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # the image border sees padding either way
    assert (tiled - full)[inner].abs().max() < 1e-5


def _seam_ratio(y: torch.Tensor, tile: int, overlap: int) -> float:
    """Mean horizontal+vertical gradient magnitude on the tile-edge lines over the mean everywhere."""
    ratios = []
    for axis in (-1, -2):
        length = y.shape[axis]
        grad = (y.narrow(axis, 1, length - 1) - y.narrow(axis, 0, length - 1)).abs()
        profile = grad.mean(dim=[d for d in range(4) if d != axis % 4])
        spans = tile_spans(length, tile, overlap, 4)
        edges = sorted({e for (_, a_end), (b_start, _) in zip(spans, spans[1:])
                        for e in (b_start - 1, b_start, a_end - 2, a_end - 1)})
        if edges:
            ratios.append(float(profile[[min(e, length - 2) for e in edges]].mean() / profile.mean()))
    return max(ratios)


def _compare(net, x, tile, overlap):
    with torch.inference_mode():
        full, tiled = run_padded(net, x), run_tiled(net, x, tile, overlap)
    assert tiled.shape == full.shape
    return float((tiled - full).abs().mean() * 127.5), _seam_ratio(tiled, tile, overlap), _seam_ratio(full, tile, overlap)


def test_instance_norm_generator_tiled_matches_untiled_without_seams():
    torch.manual_seed(0)
    net = define_G(3, 3, ngf=8, netG="resnet_6blocks", norm="instance", use_dropout=False)
    _, photo, _ = make_pair(512, seed=3)
    x = image_to_tensor(Image.fromarray(photo).crop((0, 0, 510, 383))).unsqueeze(0)  # no multiple of 4
    diff, seams, untiled_seams = _compare(net, x, 192, 64)
    assert diff < 3.0, f"mean abs difference {diff:.2f}/255"
    assert seams <= max(1.1, untiled_seams * 1.1), f"tile edges carry {seams:.2f}x the mean gradient"


@pytest.mark.skipif(not (HAYAO.is_dir() and PHOTO.is_file()), reason="published weights/photos not in ../shared")
def test_published_cartoongan_tiled_close_to_untiled_without_seams():
    net = load_published_weights(CartoonGANGenerator(), HAYAO).eval()
    photo = Image.open(PHOTO).convert("RGB").resize((400, 300), Image.BICUBIC)
    x = image_to_tensor(photo)[[2, 1, 0]].unsqueeze(0)
    diff, seams, untiled_seams = _compare(net, x, 160, 48)
    assert diff < 3.0, f"mean abs difference {diff:.2f}/255"
    assert seams <= max(1.1, untiled_seams * 1.1), f"tile edges carry {seams:.2f}x the mean gradient"
