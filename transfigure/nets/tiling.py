"""Generators on images larger than memory allows: overlapping tiles, blended.

Two things make naive tiling show: the net's own border artifacts at each tile's
edge, and normalisation. Instance norm (and batch norm in training mode, as the
official test scripts run it) normalises with the statistics of what it sees, so
each tile would get its own colours: on CartoonGAN that moves pixels by ~24/255 on
average and leaves visible tiles. Hence:

- the normalisation statistics are shared: recorded on the whole image (scaled down
  to STATS_SIZE pixels on the long side when larger, which bounds the memory), then
  used by every tile. Up to that size the tiles see exactly the untiled statistics;
  beyond it they are an estimate, as the statistics change with resolution;
- tiles overlap; each tile's margin facing a neighbour, where its border artifacts
  are, is dropped, and the rest of the overlap is cross-faded with raised-cosine
  weights (sin^2 + cos^2 = 1), so no step remains at tile edges.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .cartoongan import PublishedInstanceNorm
from .common import pad_for, run_padded, size_multiple
from ..errors import UsageError

MIN_TILE = 32
STATS_SIZE = 1024  # long side of the image the shared statistics are recorded on (~1 GB on CartoonGAN)


def check_tiling(tile: int, overlap: int) -> None:
    """Errors in the words of the command-line options."""
    if tile == 0:
        return
    if tile < MIN_TILE:
        raise UsageError(f"--tile must be 0 (no tiling) or at least {MIN_TILE} pixels, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise UsageError(f"--tile_overlap must be between 0 and half of --tile ({tile // 2}), got {overlap}")


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(start, end) of each tile along an axis of `length`: as few tiles as cover it with
    at least `overlap` shared pixels between neighbours, spread evenly. Starts are
    multiples of `multiple` (the net's size multiple): a strided net samples a tile on
    the same grid as the whole image only then; the last tile grows to reach the end."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (count - 1)) // multiple * multiple for i in range(count)]
    return [(start, start + tile) for start in starts[:-1]] + [(starts[-1], length)]


def _axis_weights(spans: list[tuple[int, int]], length: int, overlap: int) -> list[torch.Tensor]:
    """1-D blend weight of each tile. On each side facing a neighbour: 0 over the outer
    quarter of `overlap` (nets leave artifacts there: CartoonGAN darkens a band ~20-28 px
    inside its right and bottom edges), a raised-cosine ramp over the next half, then 1.
    Normalised so the tiles sum to 1 everywhere."""
    margin = overlap // 4
    ramp_length = overlap - 2 * margin
    ramp = torch.sin((torch.arange(ramp_length, dtype=torch.float64) + 0.5) / ramp_length * math.pi / 2) ** 2
    side = torch.cat([torch.zeros(margin, dtype=torch.float64), ramp])
    weights = []
    for i, (start, end) in enumerate(spans):
        w = torch.ones(end - start, dtype=torch.float64)
        if i > 0:
            w[:len(side)] *= side
        if i < len(spans) - 1:
            w[len(w) - len(side):] *= side.flip(0)
        weights.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for (start, end), w in zip(spans, weights):
        total[start:end] += w
    return [(w / total[start:end]).float() for (start, end), w in zip(spans, weights)]


class SharedStatistics:
    """Makes a net's per-image normalisation layers use statistics recorded once:
    `with stats.recording(): net(a)` stores each layer's per-channel mean and
    variance; `with stats.applied(): net(b)` normalises b with them."""

    def __init__(self, net: nn.Module):
        self.layers = [m for m in net.modules() if _per_image_dims(m) is not None]
        self.saved: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    @contextlib.contextmanager
    def _patched(self, forward_for):
        for m in self.layers:
            m.forward = forward_for(m)  # an instance attribute shadows the class's forward
        try:
            yield
        finally:
            for m in self.layers:
                del m.forward

    def recording(self):
        def forward_for(m):
            def forward(x):
                var, mean = torch.var_mean(x.float(), dim=_per_image_dims(m), correction=0, keepdim=True)
                self.saved[m] = (mean, var)
                return type(m).forward(m, x)
            return forward
        return self._patched(forward_for)

    def applied(self):
        def forward_for(m):
            def forward(x):
                mean, var = self.saved[m]
                y = (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + m.eps)
                weight, bias = ((m.scale, m.shift) if isinstance(m, PublishedInstanceNorm) else (m.weight, m.bias))
                return y if weight is None else y * weight[:, None, None] + bias[:, None, None]
            return forward
        return self._patched(forward_for)


def _per_image_dims(m: nn.Module) -> tuple[int, ...] | None:
    """The dims a layer takes its statistics over when they come from the input itself."""
    if isinstance(m, PublishedInstanceNorm):
        return (2, 3)
    if isinstance(m, nn.InstanceNorm2d) and (m.training or not m.track_running_stats):
        return (2, 3)
    if isinstance(m, nn.BatchNorm2d) and m.training:
        return (0, 2, 3)
    return None


def run_tiled(net: nn.Module, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """`run_padded(net, x)` computed tile by tile: [N,C,H,W] -> [N,C',H,W]. Only one
    tile at a time is on the net's device; `x` and the result stay where `x` is
    (keep them on the CPU for images the device cannot hold)."""
    check_tiling(tile, overlap)
    device = next(net.parameters(), x).device  # a net without parameters runs where x is
    if tile == 0 or max(x.shape[-2:]) <= tile:
        return run_padded(net, x.to(device)).to(x.device)
    # Tiles of the image as the net runs it (padded at the bottom/right only where the net
    # needs it), at starts on the net's stride grid: then every tile samples the image
    # exactly as the untiled run does.
    padded, (rows_kept, cols_kept) = pad_for(net, x)
    h, w = padded.shape[-2:]
    stats = SharedStatistics(net)
    if stats.layers:
        long_side = max(tile, STATS_SIZE)
        preview = padded if max(h, w) <= long_side else F.interpolate(
            x, scale_factor=long_side / max(x.shape[-2:]), mode="bilinear", antialias=True,
            align_corners=False, recompute_scale_factor=True)
        with stats.recording():
            run_padded(net, preview.to(device))
    multiple = size_multiple(net)
    rows, cols = tile_spans(h, tile, overlap, multiple), tile_spans(w, tile, overlap, multiple)
    row_w, col_w = _axis_weights(rows, h, overlap), _axis_weights(cols, w, overlap)
    out = None
    with stats.applied():
        for (top, bottom), wy in zip(rows, row_w):
            for (left, right), wx in zip(cols, col_w):
                y = run_padded(net, padded[..., top:bottom, left:right].to(device)).float().to(x.device)
                if out is None:
                    out = torch.zeros(x.shape[0], y.shape[1], h, w, device=x.device)
                out[..., top:bottom, left:right] += y * (wy[:, None] * wx[None, :]).to(x.device)
    return out[..., rows_kept, cols_kept]


def seam_ratio(y: torch.Tensor, tile: int, overlap: int, multiple: int = 4, band: int = 16) -> float:
    """How much the places where tiles meet stand out. Each column's gradient magnitude
    over its band's mean, in bands of `band` rows; per column the median over bands (a
    seam runs the whole height, an edge of the picture does not); the largest such
    value among the columns where tiles meet (the overlaps, +-2 px). The same for rows.
    About 1 where nothing stands out; compare with the untiled result's value, as
    picture content can stand out there too. `y` is [1, C, H, W]; `multiple` the
    net's size multiple (tile placement depends on it)."""
    worst = 0.0
    for axis in (-1, -2):
        t = y[0] if axis == -1 else y[0].transpose(-1, -2)  # zones are columns of t
        grad = (t[..., 1:] - t[..., :-1]).abs().mean(0)  # [rows, cols - 1]
        bands = grad[:grad.shape[0] // band * band].reshape(-1, band, grad.shape[1]).mean(1)  # [bands, cols - 1]
        column = (bands / bands.mean(1, keepdim=True)).median(0).values
        spans = tile_spans(t.shape[-1], tile, overlap, multiple)
        for (_, a_end), (b_start, _) in zip(spans, spans[1:]):
            worst = max(worst, float(column[max(b_start - 2, 0):a_end + 2].max()))
    return worst
