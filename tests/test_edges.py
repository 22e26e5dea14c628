"""CartoonGAN edge smoothing: the pixel operation against an independent reference,
the resumable parallel folder command, and the on-the-fly cache."""
import argparse
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from transfigure.data.edges import (SmoothedCache, add_smooth_edges_arguments, default_cache_dir,
                                    run_smooth_edges, smooth_edges, smooth_edges_folder)
from transfigure.data.images import list_images, load_image

# The published kernel written out, not taken from OpenCV: [1, 4, 6, 4, 1] / 16, outer product.
GAUSS = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
from shared_data import PHOTOS


def edge_mask(img, size):
    """Canny(100, 200) edges of the grayscale image, dilated by a size x size square."""
    edges = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 100, 200)
    return cv2.dilate(edges, np.ones((size, size), np.uint8)) != 0, edges != 0


def reference_smooth(img):
    """The public CartoonGAN scripts, loop and all: np.pad 'reflect', float sum stored into uint8."""
    pad = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    out = img.copy()
    dilated, _ = edge_mask(img, 5)
    for i, j in zip(*np.where(dilated)):
        for c in range(3):
            out[i, j, c] = np.sum(pad[i:i + 5, j:j + 5, c] * GAUSS)
    return out


def synthetic_image():
    """White with a black square (one edge touching the border region), a flat gray
    rectangle and a flat colored one: sharp edges and large flat areas."""
    img = np.full((64, 80, 3), 255, np.uint8)
    img[1:30, 1:30] = 0
    img[40:60, 10:70] = 128
    img[5:25, 45:75] = (200, 30, 60)
    return img


def test_far_pixels_unchanged_and_edge_pixels_blurred():
    img = synthetic_image()
    out = smooth_edges(img)
    near, on_edge = edge_mask(img, 9)  # 9x9 dilation = within 4 px (Chebyshev) of an edge
    assert (~near).sum() > 1000 and on_edge.sum() > 100
    assert np.array_equal(out[~near], img[~near])
    pad = np.pad(img.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    for i, j in zip(*np.where(on_edge)):
        expected = np.floor(np.einsum("ijc,ij->c", pad[i:i + 5, j:j + 5], GAUSS))
        assert np.array_equal(out[i, j], expected), (i, j)
    assert np.abs(out[on_edge].astype(int) - img[on_edge]).mean() > 20  # really blurred


def real_image():
    photos = sorted(PHOTOS.glob("*.jpg"))
    if photos:
        img = load_image(photos[0])
        img.thumbnail((160, 160), Image.BICUBIC)
        return np.asarray(img)
    rng = np.random.default_rng(0)  # fallback: blocks of color with noise, edges everywhere
    blocks = rng.integers(0, 256, (8, 10, 3)).repeat(16, 0).repeat(16, 1)
    return np.clip(blocks + rng.normal(0, 12, blocks.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("make", [real_image, lambda: np.random.default_rng(1).integers(0, 256, (40, 50, 3), np.uint8)])
def test_equals_reference_loop(make):
    img = make()
    out = smooth_edges(img)
    # Noise has edges on the border rows, where 'reflect' vs 'symmetric' padding would differ.
    assert np.array_equal(out, reference_smooth(img))
    assert not np.array_equal(out, img)


def write_images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = np.roll(synthetic_image(), 7 * k, axis=1)
        Image.fromarray(img).save(folder / (f"img{k}.jpg" if k == 0 else f"img{k}.png"))


def test_folder_runs_and_resumes(tmp_path):
    src, out = tmp_path / "trainB", tmp_path / "trainB_smooth"
    write_images(src, 5)
    r = smooth_edges_folder(src, out, workers=2, progress=False)
    assert (r["done"], r["skipped"], r["failed"]) == (5, 0, 0)
    assert sorted(p.name for p in out.iterdir()) == [f"img{k}.png" for k in range(5)]  # stem kept, PNG
    for f in list_images(src):
        assert np.array_equal(np.asarray(load_image(out / (f.stem + ".png"))),
                              smooth_edges(np.asarray(load_image(f))))
    # Backdate the outputs so a rewrite would show; delete one, rerun: only it is redone.
    for p in out.iterdir():
        os.utime(p, ns=(10**18, 10**18))
    (out / "img3.png").unlink()
    r = smooth_edges_folder(src, out, workers=2, progress=False)
    assert (r["done"], r["skipped"], r["failed"]) == (1, 4, 0)
    assert [p.name for p in out.iterdir() if p.stat().st_mtime_ns != 10**18] == ["img3.png"]


def test_interrupted_run_leaves_no_partial_file_and_resumes(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    write_images(src, 5)
    original, calls = Image.Image.save, []

    def save_then_die(self, fp, *args, **kwargs):  # Ctrl-C in the middle of writing the 3rd file
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"\x89PNG half a file")
            raise KeyboardInterrupt
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        smooth_edges_folder(src, out, workers=1, progress=False)
    monkeypatch.setattr(Image.Image, "save", original)
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]  # no temp or half file
    r = smooth_edges_folder(src, out, workers=1, progress=False)
    assert (r["done"], r["skipped"], r["failed"]) == (3, 2, 0)


def test_unreadable_input_reported_by_name(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    write_images(src, 3)
    (src / "broken.png").write_bytes(b"not an image at all")
    parser = argparse.ArgumentParser()
    add_smooth_edges_arguments(parser)
    rc = run_smooth_edges(parser.parse_args(["--src", str(src), "--out", str(out), "--workers", "2",
                                             "--no_progress"]))
    text = capsys.readouterr().out
    assert rc == 1 and "broken.png" in text and "3 image(s)" in text and "1 failed" in text
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_out_equal_to_src_is_refused(tmp_path):
    src = tmp_path / "src"
    write_images(src, 2)
    before = sorted(src.iterdir())
    for out in (src, src / ".", tmp_path / "x" / ".." / "src"):
        with pytest.raises(ValueError, match="source folder"):
            smooth_edges_folder(src, out, progress=False)
    assert sorted(src.iterdir()) == before


def test_cache_computes_once_and_reuses(tmp_path):
    write_images(tmp_path / "trainB", 1)
    path = tmp_path / "trainB" / "img0.jpg"
    cache_dir = default_cache_dir(tmp_path)
    cache = SmoothedCache(cache_dir)
    first = cache.get(path)
    (entry,) = cache_dir.iterdir()
    stamp = entry.stat().st_mtime_ns
    second = cache.get(path)
    assert cache.computed == 1 and entry.stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert np.array_equal(np.asarray(first), smooth_edges(np.asarray(load_image(path))))
    other = SmoothedCache(cache_dir)  # another DataLoader worker / a later epoch
    other.get(path)
    assert other.computed == 0
    os.utime(path, ns=(10**18, 10**18))  # the source changed: a new entry
    other.get(path)
    assert other.computed == 1 and len(list(cache_dir.iterdir())) == 2
    assert list_images(tmp_path / "trainB") == [path]  # the hidden cache is not data
