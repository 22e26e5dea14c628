"""CartoonGAN edge smoothing: cartoons with their sharp edges blurred, used as
extra "fake" examples so the discriminator learns that clear edges are what
makes a cartoon (Chen et al., CVPR 2018).

The operation is the one in every public CartoonGAN implementation
(taki0112/CartoonGAN-Tensorflow `edge_smooth.py`, znxlwm/pytorch-CartoonGAN
`edge_promoting`): Canny(100, 200) on the grayscale image, dilate the edge map
with a 5x5 ones kernel, and inside the dilated region replace each pixel by the
5x5 Gaussian (cv2.getGaussianKernel(5, 0), outer product) of the image padded
with `np.pad(mode='reflect')` (= cv2.BORDER_REFLECT_101). Those scripts assign
the float sum into a uint8 array, which truncates; we truncate too. The kernel
is [1, 4, 6, 4, 1] / 16, so every product and partial sum is an exact float64
and the vectorized filter gives bit-for-bit the reference's loop result.

Unlike the scripts we do not resize first: the image is smoothed at the size
it is given, and the dataset's transforms apply afterwards.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .images import ImageLoadError, list_images, load_image, save_image
from ..tempfiles import check_output_folder
from ..errors import UsageError

KERNEL_SIZE = 5


def smooth_edges(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> same shape, with a 5x5 Gaussian blur inside the dilated Canny edges."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"expected a uint8 HxWx3 RGB array, got {image.dtype} {image.shape}")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 100, 200)
    # Default border for dilate is a constant that never wins the max, i.e. the reference's behaviour.
    mask = cv2.dilate(edges, np.ones((KERNEL_SIZE, KERNEL_SIZE), np.uint8)) != 0
    g = cv2.getGaussianKernel(KERNEL_SIZE, 0)
    # Separable filter == the reference's outer-product kernel; the kernel is symmetric, so
    # correlation (filter2D) and convolution agree. Float64 keeps the sums exact (see module doc).
    blurred = cv2.sepFilter2D(image.astype(np.float64), cv2.CV_64F, g, g,
                              borderType=cv2.BORDER_REFLECT_101)
    out = image.copy()
    out[mask] = blurred[mask].astype(np.uint8)  # truncation, as in `uint8_array[i] = float_sum`
    return out


# ---------------------------------------------------------------- folders

def _output_path(src_file: Path, out: Path) -> Path:
    return out / (src_file.stem + ".png")  # PNG: lossless, so the smoothing is not blurred again by JPEG


def _smooth_file(src_file: Path, dst: Path) -> tuple[str, str | None]:
    """Smooth one file; (name, None) on success or (name, reason) for an unreadable one."""
    try:
        img = np.asarray(load_image(src_file, channels=3))
        save_image(Image.fromarray(smooth_edges(img)), dst)  # atomic: never a half-written output
        return src_file.name, None
    except (ImageLoadError, OSError, ValueError, cv2.error) as e:
        return src_file.name, str(e)


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: one line, no worker tracebacks
    cv2.setNumThreads(1)  # parallelism is across files; per-image threads would oversubscribe the cores


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects container / taskset limits
    except AttributeError:
        return os.cpu_count() or 1


def smooth_edges_folder(src, out, workers: int | None = None, progress: bool = True) -> dict:
    """Smooth every image in `src` into `out/<stem>.png`, skipping outputs that already exist
    (writes are atomic, so an existing output is a finished one and a rerun after an
    interruption does only the rest). Unreadable inputs are reported, not fatal.
    Returns {'done', 'skipped', 'failed': counts, 'failures': {name: reason}}."""
    src, out = Path(src), Path(out)
    check_output_folder(out, "--out")
    files = list_images(src, expected="the cartoon images to edge-smooth")
    if out.resolve() == src.resolve():
        raise UsageError(f"--out {out} is the source folder {src}; choose another folder "
                         "(smoothing must never overwrite the originals)")
    targets: dict[Path, Path] = {}
    for f in files:
        dst = _output_path(f, out)
        if dst in targets:  # 'a.jpg' and 'a.png' would silently share one output
            raise UsageError(f"{src}: {targets[dst].name} and {f.name} would both be written to {dst.name}; "
                             "rename one of them")
        targets[dst] = f
    todo = [(f, dst) for dst, f in targets.items() if not dst.exists()]
    result = {"done": 0, "skipped": len(files) - len(todo), "failed": 0, "failures": {}}
    if not todo:
        return result
    out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="smooth-edges", unit="img", disable=not progress)

    def record(name: str, error: str | None) -> None:
        if error is None:
            result["done"] += 1
        else:
            result["failed"] += 1
            result["failures"][name] = error
        bar.update(1)

    n_workers = max(1, min(workers or _cpu_count(), len(todo)))
    try:
        if n_workers == 1:  # no process start-up cost for small jobs (and easy to debug)
            for f, dst in todo:
                record(*_smooth_file(f, dst))
        else:
            # spawn, not fork: a forked child of a process whose OpenMP/torch threads hold locks can deadlock.
            with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker) as pool:
                # Workers start on submit; started with SIGINT ignored, a Ctrl-C while they import is
                # not theirs to report either.
                main_thread = threading.current_thread() is threading.main_thread()  # signals are its alone
                handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
                try:
                    futures = [pool.submit(_smooth_file, f, dst) for f, dst in todo]
                finally:
                    if main_thread:
                        signal.signal(signal.SIGINT, handler)
                try:
                    for fut in as_completed(futures):
                        record(*fut.result())
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: stop queued work, keep finished files
                    raise
    finally:
        bar.close()
    return result


# ---------------------------------------------------------------- on the fly

def default_cache_dir(dataroot) -> Path:
    """Hidden folder, so `list_images` never mistakes cached files for data."""
    return Path(dataroot) / ".transfigure_cache" / "smooth"


class SmoothedCache:
    """Edge-smoothed images computed on first use and kept on disk, for a dataset
    without a smoothed folder. Entries are keyed by path + mtime + size, so an
    edited source gets a fresh entry. Safe across DataLoader workers: writes are
    atomic renames, so two workers computing the same file both write a whole file."""

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self.computed = 0  # per process; lets tests (and curious users) see cache misses

    def cache_path(self, path) -> Path:
        path = Path(path).resolve()
        st = path.stat()
        key = hashlib.sha1(f"{path}\0{st.st_mtime_ns}\0{st.st_size}".encode()).hexdigest()[:16]
        return self.cache_dir / f"{path.stem}-{key}.png"

    def get(self, path) -> Image.Image:
        cached = self.cache_path(path)
        if cached.exists():
            try:
                return load_image(cached, channels=3)
            except ImageLoadError:
                pass  # damaged by something outside us: recompute and replace it
        img = Image.fromarray(smooth_edges(np.asarray(load_image(path, channels=3))))
        self.computed += 1
        save_image(img, cached)
        return img


# ---------------------------------------------------------------- CLI

def add_smooth_edges_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="folder of cartoon images (e.g. DATAROOT/trainB)")
    parser.add_argument("--out", required=True,
                        help="output folder (e.g. DATAROOT/trainB_smooth); <name>.png per input, existing ones kept")
    from ..config import add_common_arguments, int_at_least

    parser.add_argument("--workers", type=int_at_least(1), default=None, help="processes (default: one per CPU core)")
    add_common_arguments(parser, progress=True)


def run_smooth_edges(args) -> int:
    """Returns 0, or 1 when some inputs could not be read (they are listed)."""
    r = smooth_edges_folder(args.src, args.out, workers=args.workers, progress=not args.no_progress)
    for name, reason in r["failures"].items():
        print(f"  failed: {name}: {reason}")
    print(f"Edge-smoothed {r['done']} image(s) into {args.out}; {r['skipped']} already done, "
          f"{r['failed']} failed")
    return 1 if r["failed"] else 0
