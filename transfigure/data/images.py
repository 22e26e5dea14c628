"""Image files: finding them, loading them robustly, tensors <-> images, saving.

Every image enters the toolkit through `load_image`, so a user's odd file
(palette PNG, 16-bit scan, phone photo with an EXIF rotation, CMYK JPEG,
transparent logo) arrives as plain 'RGB' or 'L', and a broken one fails with
a message naming it instead of a decoder traceback deep inside a worker.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from ..tempfiles import temporary_path
from ..errors import UsageError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


class ImageLoadError(UsageError):
    """An unreadable image; the message names the file and says what is wrong."""

    def __init__(self, path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # crosses from data-loader workers whole
        return type(self), (self.path, self.reason)


class DatasetFolderError(UsageError):
    """A missing or empty image folder; the message names it and the layout expected."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMG_EXTENSIONS


def visible_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The files in `folder` (and its subfolders when `recursive`), skipping hidden names:
    macOS '._x.jpg' resource forks and '.ipynb_checkpoints' copies look like images but
    are not the user's data."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return [p for p in candidates if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def list_images(folder: str | Path, recursive: bool = False, max_size: int = 0,
                expected: str = "") -> list[Path]:
    """Image files in `folder` (sorted; at most `max_size` of them, 0 = all).
    `expected` describes the layout wanted, for the error message."""
    folder = Path(folder)
    hint = f"; {expected}" if expected else ""
    if not folder.is_dir():
        raise DatasetFolderError(f"{folder}: no such folder{hint}")
    files = visible_files(folder, recursive)
    images = sorted(p for p in files if is_image_file(p))
    if not images:
        others = f" (found {len(files)} other file(s), e.g. {sorted(files)[0].name})" if files else ""
        raise DatasetFolderError(f"{folder}: no images ({' '.join(IMG_EXTENSIONS)}){others}{hint}")
    return images[:max_size] if max_size > 0 else images


def _high_bit_depth_to_8bit(img: Image.Image) -> Image.Image:
    """'I;16*', 'I' and 'F' grayscale -> 'L' by scaling the value range (clipping
    to 255 would turn a 16-bit image almost entirely white)."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.min() >= 0 and a.max() <= 65535):
        a = a / 257.0  # 16-bit range (older Pillow opens 16-bit PNGs as 'I')
    elif img.mode == "F" and a.min() >= 0 and a.max() <= 1:
        a = a * 255.0
    else:  # unknown range (32-bit int, float data): stretch what is there
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """An image file as 'RGB' (channels=3) or 'L' (channels=1), upright per its
    EXIF orientation, transparency composited on white. Raises ImageLoadError
    naming the file when it cannot be fully decoded."""
    if channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:  # a multi-page TIFF or an animation: never silently its first page
                raise ImageLoadError(path, f"holds {frames} pages or frames; save each page as its own image "
                                           "(or an animation as a video) and translate those")
            img.load()  # decode everything now: truncated files fail here, not mid-training
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a malformed EXIF block does not make the pixels unreadable
                pass
            if img.mode.startswith("I") or img.mode == "F":
                img = _high_bit_depth_to_8bit(img)
            elif _has_alpha(img):
                # Dropping alpha would show whatever colour hides under transparent pixels (often black).
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba)
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")  # palette, 1-bit, CMYK, YCbCr, composited RGBA
            target = "RGB" if channels == 3 else "L"
            return img if img.mode == target else img.convert(target)
    except MemoryError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(path, "no such file") from None
    except ImageLoadError:
        raise
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError, struct.error...)
        raise ImageLoadError(path, f"cannot read image ({type(e).__name__}: {e})") from e


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """'L' or 'RGB' PIL image -> float tensor [C,H,W] in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    import torch  # here: image-only processes (smooth-edges' workers) never import it

    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    a = torch.from_numpy(np.array(img, dtype=np.uint8))
    a = a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1)
    return a.float().div_(127.5).sub_(1.0).contiguous()


def tensor_to_image(t: torch.Tensor) -> Image.Image:
    """Tensor [C,H,W] or [1,C,H,W] in [-1, 1] with C 1 or 3 -> 'L' or 'RGB' image."""
    t = t.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise UsageError(f"expected a [C,H,W] or [1,C,H,W] tensor with C 1 or 3, got shape {tuple(t.shape)}")
    import torch

    a = ((t.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    a = a.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)


def save_image(image: torch.Tensor | Image.Image, path: str | Path) -> Path:
    """Write a tensor in [-1, 1] or a PIL image; format from the extension.
    Atomic: a reader (or a crash) never sees a half-written file."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown image extension (use e.g. .png or .jpg)")
    img = image if isinstance(image, Image.Image) else tensor_to_image(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as f:
            img.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
