"""`transfigure benchmark tiling`: the peak memory of cartoonizing a large photo in
tiles, against the whole image at smaller sizes, each in its own process (peak RSS
from the kernel's accounting of that process, so nothing else's memory counts)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import atomic_write_text
from ..data.images import load_image, save_image
from ..data.synthetic import render_scene
from ..nets.tiling import seam_ratio
from ..translate import DEFAULT_TILE_OVERLAP
from .runs import format_duration, log
from ..errors import SetupError, UsageError

GIB = 2 ** 30


def parse_size(text: str) -> tuple[int, int]:
    """'4000x3000' -> (4000, 3000)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"expected a size WIDTHxHEIGHT such as 4000x3000, got {text!r}") from None
    if width < 1 or height < 1:
        raise UsageError(f"size {text!r} must be positive")
    return width, height


def make_photo(path: Path, size: tuple[int, int], photo: str | None) -> Path:
    """The benchmark's input: `photo` (or a synthetic street scene) resized to `size`."""
    if path.is_file() and Image.open(path).size == size:
        return path
    image = load_image(photo) if photo else Image.fromarray(render_scene(512, seed=7)[2])
    save_image(image.resize(size, Image.BICUBIC), path)
    return path


def measure(args: list[str]) -> tuple[float, float]:
    """(peak resident memory in bytes, wall seconds) of `transfigure ARGS` in a child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "transfigure.cli", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SetupError(f"transfigure {' '.join(args)} failed with exit status {child.returncode}")
    return usage.ru_maxrss * 1024.0, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def compare_to_whole(tiled: Path, whole: Path, tile: int, overlap: int) -> dict:
    """Mean |tiled - whole| in 8-bit levels, and `seam_ratio` of both at the tiled run's overlaps."""
    a, b = (torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
            for p in (tiled, whole))
    return {"mean_abs_diff_vs_whole": round(float((a - b).abs().mean()), 3),
            "seam_ratio_tiled": round(seam_ratio(a, tile, overlap), 3),
            "seam_ratio_whole": round(seam_ratio(b, tile, overlap), 3)}


def run_tiling(out: str | Path, style: str = "hayao", weights: str | None = None, size=(4000, 3000),
               tile: int = 512, overlap: int = DEFAULT_TILE_OVERLAP, whole_sizes=((1000, 750), (2000, 1500)),
               photo: str | None = None, threads: int = 0) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["cartoonize", "--style", style, "--load_size", "0", "--overwrite", "--no_progress", "--device", "cpu"]
    if weights:
        common += ["--weights", str(weights)]
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    cases = [("startup (16x16 image)", (16, 16), 0)]
    cases += [(f"whole image {w}x{h}", (w, h), 0) for w, h in whole_sizes]
    cases += [(f"tiles of {tile} px, overlap {overlap}", tuple(size), tile)]
    rows = []
    for label, (w, h), case_tile in cases:
        source = make_photo(out / "inputs" / f"photo_{w}x{h}.png", (w, h), photo)
        target = out / ("tiled" if case_tile else "whole") / f"{w}x{h}"
        args = [*common, "--input", str(source), "--output", str(target)]
        if case_tile:
            args += ["--tile", str(case_tile), "--tile_overlap", str(overlap)]
        log(f"{label}: cartoonizing a {w}x{h} image ...")
        peak, seconds = measure(args)
        rows.append({"case": label, "width": w, "height": h, "tile": case_tile, "overlap": overlap if case_tile else 0,
                     "peak_rss_gib": round(peak / GIB, 3), "seconds": round(seconds, 1),
                     "output": str(target / source.with_suffix(".png").name)})
        log(f"  peak memory {peak / GIB:.2f} GiB, {format_duration(seconds)}")
    tiled, same_size = rows[-1], [r for r in rows[1:-1] if (r["width"], r["height"]) == tuple(size)]
    if same_size:  # the tiled result against the whole-image one
        tiled.update(compare_to_whole(Path(tiled["output"]), Path(same_size[0]["output"]), tile, overlap))
    atomic_write_text(json.dumps(rows, indent=2) + "\n", out / "results.json")
    lines = ["| case | image | peak memory (GiB) | time |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['width']}x{r['height']} | {r['peak_rss_gib']:.2f} | "
              f"{format_duration(r['seconds'])} |" for r in rows]
    if same_size:
        lines += ["", f"Tiled vs whole at {size[0]}x{size[1]}: mean absolute difference "
                      f"{tiled['mean_abs_diff_vs_whole']:.2f} levels of 255; seam measure at the overlaps "
                      f"{tiled['seam_ratio_tiled']:.2f} tiled, {tiled['seam_ratio_whole']:.2f} whole "
                      "(`nets.tiling.seam_ratio`: ~1 where nothing stands out)."]
    atomic_write_text("\n".join(lines) + "\n", out / "table.md")
    log("\n".join(lines))
    log(f"Wrote {out / 'table.md'} and {out / 'results.json'}")
    return rows

