"""Folder datasets: unaligned (CycleGAN), aligned A|B pairs (pix2pix), single.

Items are dicts {"A", "B", "A_paths", "B_paths"} like the official code, with
one difference: with --direction BtoA the dataset swaps the roles itself, so
"A" is always the generator's input (opt.input_nc channels) and "B" the
target (opt.output_nc channels); methods never look at the direction.

All randomness of item `index` comes from `sample_rng(opt.seed, epoch, index)`:
the same sample in any worker process and after a resume. Call `set_epoch`
before creating each epoch's DataLoader iterator (workers copy the dataset).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from .color import rgb_to_network_lab
from .images import IMG_EXTENSIONS, DatasetFolderError, ImageLoadError, list_images, load_image
from .transforms import apply_transform, get_params, sample_rng, transform
from ..errors import UsageError

_EXTS = " ".join(IMG_EXTENSIONS[:2]) + " ..."


def _root(opt) -> Path:
    if not opt.dataroot:
        raise DatasetFolderError("--dataroot is not set: give the dataset folder")
    return Path(opt.dataroot)


class FolderDataset(Dataset):
    """What the folder datasets share: epoch, per-sample rng, the bad-file check."""

    def __init__(self, opt):
        self.opt = opt
        self.epoch = 0
        self.skipped_files: list[tuple[Path, str]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int):
        return sample_rng(self.opt.seed, self.epoch, index)

    def _images(self, folder: Path, expected: str, load: Callable[[Path], object]) -> list[Path]:
        """Images in `folder` (recursively, as official make_dataset), at most
        --max_dataset_size; with --skip_bad_images those that `load` rejects
        are dropped and recorded in `skipped_files`."""
        paths = list_images(folder, recursive=True, max_size=self.opt.max_dataset_size, expected=expected)
        if not self.opt.skip_bad_images:
            return paths  # a bad file raises ImageLoadError naming it when its item is read
        good = []
        for path in paths:
            try:
                load(path)
            except ImageLoadError as e:
                self.skipped_files.append((path, e.reason))
            else:
                good.append(path)
        if not good:
            raise DatasetFolderError(f"{folder}: none of its {len(paths)} images can be read "
                                     f"(e.g. {self.skipped_files[-1][0].name}: {self.skipped_files[-1][1]})")
        return good


class UnalignedDataset(FolderDataset):
    """DATAROOT/{phase}A and DATAROOT/{phase}B; each A gets a random B (the
    B of the same index with --serial_batches). Length max(|A|, |B|)."""

    def __init__(self, opt, phase: str = "train"):
        super().__init__(opt)
        root = _root(opt)
        expected = f"expected {root / (phase + 'A')} and {root / (phase + 'B')} with images ({_EXTS})"
        src, dst = ("A", "B") if opt.direction == "AtoB" else ("B", "A")
        self.A_paths = self._images(root / f"{phase}{src}", expected, lambda p: load_image(p, opt.input_nc))
        self.B_dir = root / f"{phase}{dst}"
        self.B_paths = self._images(self.B_dir, expected, lambda p: load_image(p, opt.output_nc))
        # CartoonGAN's edge-promoting loss also needs each B image with its edges smoothed:
        # from DATAROOT/{phase}B_smooth when it exists, else computed once and cached.
        self.smooth_dir, self.smooth_cache = None, None
        from ..methods import method_class  # methods import data modules
        if method_class(opt.model).needs_smoothed_targets(opt):
            if (root / f"{phase}{dst}_smooth").is_dir():
                self.smooth_dir = root / f"{phase}{dst}_smooth"
            else:
                from .edges import SmoothedCache, default_cache_dir
                self.smooth_cache = SmoothedCache(default_cache_dir(root))

    def _smoothed(self, b_path: Path) -> Image.Image:
        if self.smooth_cache is not None:
            return self.smooth_cache.get(b_path).convert("RGB" if self.opt.output_nc == 3 else "L")
        path = (self.smooth_dir / b_path.relative_to(self.B_dir)).with_suffix(".png")
        if not path.is_file():
            raise ImageLoadError(path, f"the edge-smoothed version of {b_path.name} is missing; run "
                                       f"`transfigure data smooth-edges --src {self.B_dir} --out {self.smooth_dir}`")
        return load_image(path, self.opt.output_nc)

    def __len__(self) -> int:
        return max(len(self.A_paths), len(self.B_paths))

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        a_path = self.A_paths[index % len(self.A_paths)]
        # Random B breaks fixed (A, B) pairs, which unpaired training should not learn from.
        b_index = index if self.opt.serial_batches else rng.randrange(len(self.B_paths))
        b_path = self.B_paths[b_index % len(self.B_paths)]
        A = transform(load_image(a_path, self.opt.input_nc), self.opt, rng)
        if self.smooth_dir is None and self.smooth_cache is None:
            B = transform(load_image(b_path, self.opt.output_nc), self.opt, rng)
            return {"A": A, "B": B, "A_paths": str(a_path), "B_paths": str(b_path)}
        b_image = load_image(b_path, self.opt.output_nc)
        params = get_params(self.opt, b_image.size, rng)  # the smoothed copy gets the same crop and flip
        return {"A": A, "B": apply_transform(b_image, self.opt, params),
                "B_smooth": apply_transform(self._smoothed(b_path), self.opt, params),
                "A_paths": str(a_path), "B_paths": str(b_path)}


def split_pair(path: Path) -> tuple[Image.Image, Image.Image]:
    """An A|B side-by-side file -> (left, right) 'RGB' halves of equal width."""
    ab = load_image(path, 3)
    w, h = ab.size
    if w < 2:
        raise ImageLoadError(path, f"{w}x{h} is too narrow to hold an A|B pair side by side")
    half = w // 2  # official split; an odd last column is dropped so A and B match pixel for pixel
    return ab.crop((0, 0, half, h)), ab.crop((half, 0, 2 * half, h))


class AlignedDataset(FolderDataset):
    """DATAROOT/{phase}/ files holding A (left) and B (right) side by side;
    both halves get the same crop and flip."""

    def __init__(self, opt, phase: str = "train"):
        super().__init__(opt)
        root = _root(opt)
        expected = f"expected {root / phase} with A|B images side by side ({_EXTS})"
        self.AB_paths = self._images(root / phase, expected, split_pair)

    def __len__(self) -> int:
        return len(self.AB_paths)

    def __getitem__(self, index: int) -> dict:
        path = self.AB_paths[index]
        A, B = split_pair(path)
        if self.opt.direction == "BtoA":
            A, B = B, A
        params = get_params(self.opt, A.size, self.rng(index))
        tensors = [apply_transform(img if nc == 3 else img.convert("L"), self.opt, params)
                   for img, nc in ((A, self.opt.input_nc), (B, self.opt.output_nc))]
        return {"A": tensors[0], "B": tensors[1], "A_paths": str(path), "B_paths": str(path)}


class SingleDataset(FolderDataset):
    """The images of one folder, e.g. to translate or to measure. `channels`
    defaults as official: output_nc with --direction BtoA, else input_nc."""

    def __init__(self, opt, folder: str | Path, channels: int | None = None):
        super().__init__(opt)
        self.channels = channels or (opt.output_nc if opt.direction == "BtoA" else opt.input_nc)
        folder = Path(folder)
        self.A_paths = self._images(folder, f"expected images ({_EXTS}) in {folder}",
                                    lambda p: load_image(p, self.channels))

    def __len__(self) -> int:
        return len(self.A_paths)

    def __getitem__(self, index: int) -> dict:
        path = self.A_paths[index]
        return {"A": transform(load_image(path, self.channels), self.opt, self.rng(index)), "A_paths": str(path)}


class ColorizationDataset(FolderDataset):
    """DATAROOT/{phase}/ color images; A is their L channel, B their ab
    channels (Lab, scaled as the official colorization code)."""

    def __init__(self, opt, phase: str = "train"):
        super().__init__(opt)
        root = _root(opt)
        self.paths = self._images(root / phase, f"expected {root / phase} with color images ({_EXTS})",
                                  lambda p: load_image(p, 3))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        L, ab = rgb_to_network_lab(transform(load_image(path, 3), self.opt, self.rng(index)))
        return {"A": L, "B": ab, "A_paths": str(path), "B_paths": str(path)}


def create_dataset(opt, phase: str = "train") -> FolderDataset:
    """The dataset for opt.dataset_mode. 'single' reads DATAROOT itself, as official."""
    if opt.dataset_mode == "unaligned":
        return UnalignedDataset(opt, phase)
    if opt.dataset_mode == "aligned":
        return AlignedDataset(opt, phase)
    if opt.dataset_mode == "single":
        return SingleDataset(opt, _root(opt))
    if opt.dataset_mode == "colorization":
        return ColorizationDataset(opt, phase)
    raise UsageError(f"--dataset_mode {opt.dataset_mode!r}: expected unaligned, aligned or single")
