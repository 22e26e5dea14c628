"""`transfigure data prepare-cityscapes`: the reference's datasets/prepare_cityscapes_dataset.py.

From the official gtFine_trainvaltest and leftImg8bit_trainvaltest archives (the
.zip files as downloaded, or their unzipped folders): each *_gtFine_color.png label
map and its *_leftImg8bit.png photo, both converted to RGB and resized to 256x256
with Pillow's default filter, are written as the reference writes them: train/ and
test/ (from val) pairs with the photo on the left and the labels on the right, and
trainA/testA (photos) and trainB/testB (labels), JPEG quality 100 without chroma
subsampling, numbered in sorted order. The folder appears when complete."""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image
from tqdm import tqdm

from ..errors import UsageError
from ..tempfiles import temporary_path

SIZE = 256
SPLITS = (("val", "test"), ("train", "train"))  # the reference saves val as test


class _Source:
    """The files of one archive or folder, by their path below its top folder (e.g. 'train/aachen/x.png')."""

    def __init__(self, path: Path, top: str):
        self.path = path
        if path.is_dir():
            root = path / top if (path / top).is_dir() else path
            self.files = {p.relative_to(root).as_posix(): p for p in root.rglob("*.png")}
            self.zip = None
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = [n for n in self.zip.namelist() if n.endswith(".png")]
            self.files = {str(PurePosixPath(*PurePosixPath(n).parts[1:])) if n.startswith(f"{top}/") else n: n
                          for n in names}
        else:
            raise UsageError(f"{path}: neither a folder nor a zip archive (the official {top}_trainvaltest.zip)")

    def matching(self, split: str, suffix: str) -> list[str]:
        """Sorted paths of `split`/<city>/*`suffix`, as the reference's glob finds them."""
        return sorted(k for k in self.files if k.startswith(f"{split}/") and k.count("/") == 2 and k.endswith(suffix))

    def open(self, key: str) -> Image.Image:
        if self.zip is not None:
            return Image.open(io.BytesIO(self.zip.read(self.files[key])))
        return Image.open(self.files[key])


def _resized(image: Image.Image) -> Image.Image:
    return image.convert("RGB").resize((SIZE, SIZE))  # Pillow's default filter, as the reference calls it


def prepare_cityscapes(gt_fine: str | Path, left_img8bit: str | Path, out: str | Path,
                       progress: bool = True) -> dict[str, int]:
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"--out {out}: already exists; remove it or choose another folder")
    labels, photos = _Source(Path(gt_fine), "gtFine"), _Source(Path(left_img8bit), "leftImg8bit")
    plan = {}
    for split, saved_as in SPLITS:
        maps, shots = labels.matching(split, "_color.png"), photos.matching(split, "_leftImg8bit.png")
        if len(maps) != len(shots) or not maps:
            raise UsageError(f"{split}: {len(maps)} label maps (*_gtFine_color.png) in {gt_fine} but {len(shots)} "
                             f"photos (*_leftImg8bit.png) in {left_img8bit}; give the official gtFine and "
                             "leftImg8bit trainvaltest archives")
        for m, p in zip(maps, shots):
            if PurePosixPath(m).name.replace("_gtFine_color", "") != PurePosixPath(p).name.replace("_leftImg8bit", ""):
                raise UsageError(f"{split}: {m} and {p} do not match; are both archives complete?")
        plan[saved_as] = list(zip(maps, shots))
    staging = temporary_path(out)
    try:
        counts = {}
        for saved_as, pairs in plan.items():
            for sub in (saved_as, f"{saved_as}A", f"{saved_as}B"):
                (staging / sub).mkdir(parents=True)
            for i, (m, p) in enumerate(tqdm(pairs, desc=saved_as, unit="pair", disable=not progress)):
                segmap, photo = _resized(labels.open(m)), _resized(photos.open(p))
                side_by_side = Image.new("RGB", (2 * SIZE, SIZE))
                side_by_side.paste(segmap, (SIZE, 0))
                side_by_side.paste(photo, (0, 0))
                jpeg = dict(format="JPEG", subsampling=0, quality=100)
                side_by_side.save(staging / saved_as / f"{i}.jpg", **jpeg)
                photo.save(staging / f"{saved_as}A" / f"{i}_A.jpg", **jpeg)
                segmap.save(staging / f"{saved_as}B" / f"{i}_B.jpg", **jpeg)
            counts[saved_as] = len(pairs)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts
