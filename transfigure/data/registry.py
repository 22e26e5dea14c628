"""The papers' datasets by name: `transfigure data list` and `transfigure data download NAME`.

The URLs are the reference implementation's (datasets/download_cyclegan_dataset.sh
and download_pix2pix_dataset.sh); $TRANSFIGURE_DATASET_MIRROR replaces their host.
Downloads resume after an interruption, and a dataset folder appears only when
its archive arrived whole and extracted cleanly (see archives.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..download import download, partial_path
from ..errors import UsageError
from .archives import extract
from .images import is_image_file

HOST = "http://efrosgans.eecs.berkeley.edu"
IN_BOTH = ("facades", "maps")  # names with a CycleGAN .zip and a pix2pix .tar.gz
MIRROR_ENV = "TRANSFIGURE_DATASET_MIRROR"
CITYSCAPES_HINT = ("Cityscapes needs a registration at https://www.cityscapes-dataset.com, so it cannot be "
                   "downloaded here: get gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip there, then run "
                   "`transfigure data prepare-cityscapes --gtFine gtFine_trainvaltest.zip --leftImg8bit "
                   "leftImg8bit_trainvaltest.zip` (the reference's datasets/prepare_cityscapes_dataset.py steps)")


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str          # "cyclegan" (trainA/trainB/testA/testB, a .zip) or "pix2pix" (train/val/test pairs, .tar.gz)
    task: str
    images: str        # the training images, as the reference's docs/datasets.md gives them
    terms: str         # where the images come from and whose terms apply

    @property
    def url(self) -> str:
        host = (os.environ.get(MIRROR_ENV) or HOST).rstrip("/")
        return (f"{host}/cyclegan/datasets/{self.name}.zip" if self.kind == "cyclegan"
                else f"{host}/pix2pix/datasets/{self.name}.tar.gz")

    @property
    def key(self) -> str:
        """The name, or NAME_pix2pix for the pix2pix archive of a name both papers have."""
        return f"{self.name}_pix2pix" if self.kind == "pix2pix" and self.name in IN_BOTH else self.name

    @property
    def archive(self) -> str:
        """The downloaded archive's file name under --root (NAME_pix2pix.tar.gz beside NAME.zip)."""
        return self.key + "".join(Path(self.url).suffixes)

    @property
    def layout(self) -> tuple[str, ...]:
        return ("trainA", "trainB") if self.kind == "cyclegan" else ("train",)


_FLICKR = "Flickr photos; research use, each photo under its owner's terms"
_IMAGENET = "ImageNet images; non-commercial research use (ImageNet terms)"
_WIKIART = "WikiArt paintings and Flickr photos; research use"
DATASETS: dict[str, Dataset] = {d.key: d for d in [
    Dataset("apple2orange", "cyclegan", "apples <-> oranges", "996 apples, 1020 oranges", _IMAGENET),
    Dataset("summer2winter_yosemite", "cyclegan", "Yosemite summer <-> winter", "1273 summer, 854 winter", _FLICKR),
    Dataset("horse2zebra", "cyclegan", "horses <-> zebras", "939 horses, 1177 zebras", _IMAGENET),
    Dataset("monet2photo", "cyclegan", "Monet paintings <-> photos", "1074 Monet, 6853 photos", _WIKIART),
    Dataset("cezanne2photo", "cyclegan", "Cezanne paintings <-> photos", "584 Cezanne, 6853 photos", _WIKIART),
    Dataset("ukiyoe2photo", "cyclegan", "ukiyo-e prints <-> photos", "1433 ukiyo-e, 6853 photos", _WIKIART),
    Dataset("vangogh2photo", "cyclegan", "Van Gogh paintings <-> photos", "401 Van Gogh, 6853 photos", _WIKIART),
    Dataset("maps", "cyclegan", "map tiles <-> aerial photos", "1096", "Google Maps imagery; research use"),
    Dataset("facades", "cyclegan", "facade labels <-> photos", "400",
            "CMP Facade Database; research use, cite Tylecek and Sara 2013"),
    Dataset("iphone2dslr_flower", "cyclegan", "iPhone <-> DSLR flower photos", "1813 iPhone, 3316 DSLR", _FLICKR),
    Dataset("ae_photos", "cyclegan", "test photos of the CycleGAN paper (no training set)", "not documented",
            _FLICKR),
    Dataset("grumpifycat", "cyclegan", "cats <-> Grumpy Cat", "not documented", "web images; research use"),
    Dataset("mini", "cyclegan", "a few horse2zebra images, for trying the code", "not documented", _IMAGENET),
    Dataset("mini_pix2pix", "cyclegan", "a few facades pairs, for trying pix2pix", "not documented",
            "CMP Facade Database; research use"),
    Dataset("mini_colorization", "cyclegan", "a few photos, for trying colorization", "not documented", _FLICKR),
    Dataset("cityscapes", "pix2pix", "street labels <-> photos", "2975",
            "Cityscapes; registration and its licence required (not downloadable here)"),
    Dataset("night2day", "pix2pix", "night <-> day webcam scenes", "not documented",
            "Transient Attributes webcams (Laffont et al.); research use"),
    Dataset("edges2handbags", "pix2pix", "edges <-> handbag photos", "137K", "iGAN's Amazon handbags; research use"),
    Dataset("edges2shoes", "pix2pix", "edges <-> shoe photos", "50K", "UT Zappos50K; research use"),
    Dataset("facades", "pix2pix", "facade labels <-> photos (pairs)", "400", "CMP Facade Database; research use"),
    Dataset("maps", "pix2pix", "map tiles <-> aerial photos (pairs)", "1096", "Google Maps imagery; research use"),
]}


def find(name: str) -> Dataset:
    """A registry entry by name; `NAME_pix2pix` picks the pix2pix archive of a name both have."""
    if name in DATASETS:
        return DATASETS[name]
    raise UsageError(f"no dataset {name!r}; `transfigure data list` shows them")


def folder_summary(folder: Path) -> str:
    """'N images, X MB' of a downloaded dataset folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    images = sum(1 for p in files if is_image_file(p))
    return f"{images} images, {sum(p.stat().st_size for p in files) / 2**20:.0f} MB"


def format_list(root: str | Path = "datasets") -> str:
    rows = [("name", "task", "training images", "here", "terms", "source")]
    for key, d in DATASETS.items():
        here = Path(root) / key
        present = folder_summary(here) if here.is_dir() else "not downloaded"
        source = "registration needed" if d.name == "cityscapes" else d.url
        rows.append((key, d.task, d.images, present, d.terms, source))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + f"  {r[4]}; {r[5]}" for r in rows)


def check_layout(folder: Path, dataset: Dataset) -> dict[str, int]:
    """Image counts of the folders the dataset must have; an error names what is missing."""
    counts = {}
    for sub in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        counts[sub] = sum(1 for p in (folder / sub).rglob("*") if is_image_file(p))
    missing = [s for s in dataset.layout if not counts.get(s)]
    if missing:
        raise UsageError(f"{folder}: the archive of {dataset.key} has no images in {', '.join(missing)} (found "
                         f"{', '.join(counts) or 'no folders'}); the archive is not the dataset expected")
    return counts


def download_dataset(name: str, root: str | Path = "datasets", progress: bool = True) -> Path:
    """Download and extract a registry dataset into root/NAME (resuming a broken download);
    returns the folder. An existing folder is kept as it is."""
    dataset = find(name)
    if dataset.name == "cityscapes":
        raise UsageError(CITYSCAPES_HINT)
    root = Path(root)
    target = root / dataset.key  # facades_pix2pix beside facades: both papers have one
    if target.exists():
        raise FileExistsError(f"{target}: already exists (remove it to download {dataset.key} again)")
    archive = root / dataset.archive
    hint = f"set ${MIRROR_ENV} to a mirror, or put {archive.name} in {root}/ and run the command again"
    if not archive.is_file():
        download(dataset.url, archive, progress=progress, hint=hint, resume=True)
    try:
        extract(archive, target)
    except UsageError:
        archive.unlink(missing_ok=True)  # damaged: the next run downloads it afresh
        raise
    try:
        counts = check_layout(target, dataset)
    except UsageError:
        import shutil
        shutil.rmtree(target)
        raise
    archive.unlink()
    print(f"{dataset.key} in {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return target


def resolve_dataroot(dataroot: str, root: str | Path = "datasets") -> str:
    """--dataroot as given when it is a folder; a registry name when it has been downloaded
    into `root`; otherwise an error saying how to download it."""
    if not dataroot or Path(dataroot).exists() or dataroot not in DATASETS:
        return dataroot
    dataset = DATASETS[dataroot]
    folder = Path(root) / dataset.key
    if folder.is_dir():
        return str(folder)
    partial = (" (a partial download is there; it resumes)" if partial_path(Path(root) / dataset.archive).exists()
               else "")
    raise UsageError(f"--dataroot {dataroot}: not downloaded yet{partial}; run `transfigure data download {dataroot}`"
                     + (f" ({CITYSCAPES_HINT})" if dataset.name == "cityscapes" else ""))
