"""Published models by name: the official CycleGAN and pix2pix generators, the
CUT/FastCUT generators and the four CartoonGAN styles, each with its
architecture and preprocessing, so `transfigure translate --pretrained
horse2zebra` needs nothing else.

The CUT authors publish their six generators in one archive: the first CUT
model asked for downloads it (resumable), every CUT generator in it is
cached as its own file, and the archive is deleted.

Files are downloaded once into the cache ($TRANSFIGURE_CACHE, else
~/.cache/transfigure, under pretrained/) through `download.download`: a
temporary file renamed into place only when complete and, where the
registry knows them, of the right size and sha256. $TRANSFIGURE_MIRROR
replaces the official hosts (same paths below it), for mirrors and tests.
Weights load with `torch.load(..., weights_only=True)`: never unpickled as code.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cartoonize import DEFAULT_LOAD_SIZE, STYLES
from .download import DownloadError, cache_dir, download
from .errors import UsageError

MIRROR_ENV = "TRANSFIGURE_MIRROR"
OFFICIAL_HOST = "http://efrosgans.eecs.berkeley.edu"
CARTOONGAN_HOST = "https://raw.githubusercontent.com/mnicnc404/CartoonGan-tensorflow/master"

CYCLEGAN_ARCH = {"netG": "resnet_9blocks", "ngf": 64, "norm": "instance", "no_dropout": True,
                 "input_nc": 3, "output_nc": 3}
PIX2PIX_ARCH = {"netG": "unet_256", "ngf": 64, "norm": "batch", "no_dropout": False, "input_nc": 3, "output_nc": 3}
# The CUT authors' default generator: CycleGAN's, with anti-aliased down- and upsampling.
CUT_ARCH = {**CYCLEGAN_ARCH, "no_antialias": False, "no_antialias_up": False}
CYCLEGAN_LICENCE = "BSD licence of junyanz/pytorch-CycleGAN-and-pix2pix; each dataset's own terms apply"
CUT_LICENCE = "BSD licence of taesungp/contrastive-unpaired-translation; each dataset's own terms apply"
CUT_ARCHIVE = "CUT/pretrained_models.tar"
CARTOONGAN_LICENCE = ("converted from the CartoonGAN authors' release by mnicnc404/CartoonGan-tensorflow; "
                      "see that repository's licence; research use")


@dataclass(frozen=True)
class Preprocessing:
    """What a generator expects of its input, as data: callers follow it, never a family name.
    `load_size` > 0 resizes each image so its long side is that (bicubic, the short side
    truncated), which is why such models translate one image at a time."""
    channel_order: str = "RGB"                      # the net's input and output channel order
    load_size: int = 0                              # 0: the image's own size
    value_range: tuple[float, float] = (-1.0, 1.0)  # what [0, 255] maps to
    note: str = ""

    @property
    def bgr(self) -> bool:
        return self.channel_order == "BGR"

    @property
    def per_image(self) -> bool:
        """Whether images go through their own resize and colour order (not the plain path)."""
        return self.bgr or self.load_size > 0


PLAIN = Preprocessing(note="RGB in [-1, 1] at the image's own size")
# The CartoonGAN authors' test.py: long side resized to 450, BGR, [-1, 1].
CARTOONGAN_PREPROCESSING = Preprocessing("BGR", DEFAULT_LOAD_SIZE,
                                         note="long side resized to 450 (bicubic), RGB -> BGR, [-1, 1]")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    family: str                 # cyclegan, pix2pix or cartoongan (for listing)
    task: str
    path: str                   # below the host: a .pth file, a folder of .npy files, or an archive
    host: str
    architecture: dict = field(default_factory=dict)
    preprocessing: Preprocessing = PLAIN
    licence: str = ""
    sha256: str | None = None   # checked when known
    size: int | None = None
    # torchfiles.tensor_digest of the loaded generator's state_dict, when known: checks local
    # --weights (and downloads) really are this model, whatever their file layout.
    fingerprint: str | None = None
    member: str = ""            # the weights' path inside the archive at `path` (ending there)

    @property
    def tensor_folder(self) -> bool:
        """Whether the weights are a folder of one .npy file per tensor (not one .pth file)."""
        return not self.path.endswith(".pth") and not self.member

    @property
    def url(self) -> str:
        return f"{(os.environ.get(MIRROR_ENV) or self.host).rstrip('/')}/{self.path}"


def _cyclegan(name: str, task: str) -> PublishedModel:
    return PublishedModel(name, "cyclegan", task, f"cyclegan/pretrained_models/{name}.pth", OFFICIAL_HOST,
                          CYCLEGAN_ARCH, Preprocessing(note="RGB in [-1, 1] at the image's own size (the paper: "
                                                         "256 px); instance norm, no dropout"), CYCLEGAN_LICENCE)


def _pix2pix(name: str, task: str) -> PublishedModel:
    return PublishedModel(f"pix2pix_{name}", "pix2pix", task, f"pix2pix/models-pytorch/{name}.pth", OFFICIAL_HOST,
                          PIX2PIX_ARCH, Preprocessing(note="RGB in [-1, 1], 256x256 as trained (other sizes are "
                                                        "padded to a multiple of 256); batch norm and dropout in "
                                                        "training mode, as the official test script"),
                          CYCLEGAN_LICENCE)


def _cut(name: str, run: str, mode: str, task: str) -> PublishedModel:
    return PublishedModel(name, "cut", task, CUT_ARCHIVE, OFFICIAL_HOST, CUT_ARCH,
                          Preprocessing(note=f"RGB in [-1, 1] at the image's own size (the paper: 256 px); {mode}, "
                                             "anti-aliased resnet_9blocks, instance norm"),
                          CUT_LICENCE, member=f"{run}/latest_net_G.pth")


# Digests of the public copies, computed from the files in this project's shared/weights
# (the same files); hosoda and paprika have none recorded yet.
CARTOONGAN_FINGERPRINTS = {"hayao": "5c963cf49cc5f0b5bfd1", "shinkai": "1ce3b7e681d13565840e"}


def _cartoongan(style: str) -> PublishedModel:
    return PublishedModel(style, "cartoongan", f"photo -> {style.capitalize()} cartoon",
                          f"style_transfer/cartoongan/pretrained_weights/{style}", CARTOONGAN_HOST,
                          {"netG": "cartoongan"}, CARTOONGAN_PREPROCESSING, CARTOONGAN_LICENCE,
                          fingerprint=CARTOONGAN_FINGERPRINTS.get(style))


def check_fingerprint(model: PublishedModel, net: torch.nn.Module, source) -> None:
    """Weights that load into the model's architecture but are not its weights: another
    published model's (e.g. the hayao folder given as shinkai) are refused; weights of
    no published model (fine-tuned, your own) are used, with a warning that the output
    is not the published model's."""
    from .torchfiles import tensor_digest

    if model.fingerprint is None:
        return
    digest = tensor_digest(net.state_dict())
    if digest == model.fingerprint:
        return
    others = [m.name for m in MODELS.values() if m.fingerprint == digest]
    if others:
        raise UsageError(f"{source}: these are the published {others[0]} weights, not {model.name}'s; "
                         f"ask for {others[0]}, or give {model.name}'s own weights")
    warnings.warn(f"{source}: not the published {model.name} weights (their values differ); the results come "
                  "from these weights", RuntimeWarning, stacklevel=3)


MODELS: dict[str, PublishedModel] = {m.name: m for m in [
    _cyclegan("apple2orange", "apple -> orange"), _cyclegan("orange2apple", "orange -> apple"),
    _cyclegan("summer2winter_yosemite", "summer -> winter (Yosemite)"),
    _cyclegan("winter2summer_yosemite", "winter -> summer (Yosemite)"),
    _cyclegan("horse2zebra", "horse -> zebra"), _cyclegan("zebra2horse", "zebra -> horse"),
    _cyclegan("monet2photo", "Monet painting -> photo"), _cyclegan("style_monet", "photo -> Monet style"),
    _cyclegan("style_cezanne", "photo -> Cezanne style"), _cyclegan("style_ukiyoe", "photo -> Ukiyo-e style"),
    _cyclegan("style_vangogh", "photo -> Van Gogh style"), _cyclegan("sat2map", "satellite photo -> map"),
    _cyclegan("map2sat", "map -> satellite photo"),
    _cyclegan("cityscapes_photo2label", "street photo -> Cityscapes labels"),
    _cyclegan("cityscapes_label2photo", "Cityscapes labels -> street photo"),
    _cyclegan("facades_photo2label", "facade photo -> labels"),
    _cyclegan("facades_label2photo", "facade labels -> photo"),
    _cyclegan("iphone2dslr_flower", "iPhone flower photo -> DSLR (shallow depth of field)"),
    _pix2pix("edges2shoes", "edges -> shoe photo"), _pix2pix("sat2map", "satellite photo -> map"),
    _pix2pix("map2sat", "map -> satellite photo"), _pix2pix("facades_label2photo", "facade labels -> photo"),
    _pix2pix("day2night", "day -> night"),
    _cut("cut_horse2zebra", "horse2zebra_cut_pretrained", "CUT", "horse -> zebra"),
    _cut("fastcut_horse2zebra", "horse2zebra_fastcut_pretrained", "FastCUT", "horse -> zebra"),
    _cut("cut_cat2dog", "cat2dog_cut_pretrained", "CUT", "cat -> dog (AFHQ)"),
    _cut("fastcut_cat2dog", "cat2dog_fastcut_pretrained", "FastCUT", "cat -> dog (AFHQ)"),
    _cut("cut_cityscapes_label2photo", "cityscapes_cut_pretrained", "CUT", "Cityscapes labels -> street photo"),
    _cut("fastcut_cityscapes_label2photo", "cityscapes_fastcut_pretrained", "FastCUT",
         "Cityscapes labels -> street photo"),
    *(_cartoongan(s) for s in STYLES),
]}


def get_model(name: str) -> PublishedModel:
    key = name.lower()
    if key not in MODELS:
        close = [n for n in MODELS if key in n or n in key]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown pretrained model {name!r}{hint}; `transfigure models` lists them")
    return MODELS[key]


def cached_path(model: PublishedModel) -> Path:
    return cache_dir() / "pretrained" / f"{model.name}.pth"


def fetch(model: PublishedModel, progress: bool = True) -> Path:
    """The model's weights file in the cache, downloaded when missing (cartoongan
    styles: their folder of tensors, through `cartoonize.fetch_style`)."""
    if model.tensor_folder:
        from .cartoonize import fetch_style
        base = os.environ.get(MIRROR_ENV)
        return fetch_style(model.name, base_url=f"{base.rstrip('/')}/style_transfer/cartoongan/pretrained_weights"
                           if base else None, progress=progress)
    path = cached_path(model)
    if path.is_file():
        return path
    try:
        if model.member:
            return _fetch_from_archive(model, progress)
        return download(model.url, path, sha256=model.sha256, size=model.size, progress=progress,
                        validate=lambda f: torch.load(f, map_location="cpu", weights_only=True))
    except DownloadError as e:
        raise DownloadError(f"{e}. Offline? Download it elsewhere and pass --weights PATH, or put it at {path}") \
            from None


def _member_of(t: tarfile.TarFile, member: str) -> tarfile.TarInfo | None:
    """The regular file of the archive whose path ends with `member` (archives differ in
    what comes before: checkpoints/, ./checkpoints/, ...)."""
    for info in t.getmembers():
        name = info.name.replace("\\", "/")
        if info.isfile() and (name == member or name.endswith("/" + member)):
            return info
    return None


def _fetch_from_archive(model: PublishedModel, progress: bool) -> Path:
    """Download the archive holding `model` (resumable), cache every registry model it
    holds as its own file (each checked to load), delete the archive."""
    from .checkpoint import atomic_write

    archive = cache_dir() / "pretrained" / "archives" / Path(model.path).name
    if not archive.is_file():
        download(model.url, archive, progress=progress, resume=True,
                 validate=lambda f: tarfile.open(f, "r:*").close())
    try:
        with tarfile.open(archive, "r:*") as t:
            for other in (m for m in MODELS.values() if m.path == model.path and m.member):
                target = cached_path(other)
                info = _member_of(t, other.member)
                if info is None or target.is_file():
                    continue

                def write(tmp: str, info: tarfile.TarInfo = info) -> None:
                    with t.extractfile(info) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    torch.load(tmp, map_location="cpu", weights_only=True)  # checked before the rename

                atomic_write(target, write)
    except (tarfile.TarError, EOFError, OSError, RuntimeError, ValueError) as e:
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{model.url}: the archive is damaged ({type(e).__name__}: {e}); it was removed, run "
                            "the command again to download it anew") from None
    path = cached_path(model)
    if not path.is_file():
        raise DownloadError(f"{model.url}: the archive holds no {model.member}")
    archive.unlink()
    return path


def load_pretrained(name: str, weights: str | os.PathLike | None = None, progress: bool = True):
    """A LoadedGenerator for a published model: from `weights` if given, else the cache/download.
    Its net expects `get_model(name).preprocessing`."""
    from .translate import LoadedGenerator, load_generator

    model = get_model(name)
    if model.tensor_folder:  # the CartoonGAN styles' layout
        from .cartoonize import load_style
        return LoadedGenerator(load_style(model.name, weights=weights, progress=progress), 3, 3, model.name)
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"--weights {weights}: no such file")
        loaded = load_generator(checkpoint=weights, architecture=model.architecture)
        check_fingerprint(model, loaded.net, f"--weights {weights}")
        return loaded
    path = fetch(model, progress)
    try:
        return load_generator(checkpoint=path, architecture=model.architecture)
    except (ValueError, RuntimeError) as e:  # damaged in the cache: never reuse it
        path.unlink(missing_ok=True)
        raise DownloadError(f"{e}; the cached file was removed: run the command again to download it anew") from e


def format_models() -> str:
    lines = [f"{'name':<28} {'family':<10} {'task':<46} architecture", "-" * 110]
    for m in MODELS.values():
        arch = ", ".join(f"{k} {v}" for k, v in m.architecture.items() if k in ("netG", "norm"))
        lines.append(f"{m.name:<28} {m.family:<10} {m.task:<46} {arch}")
        lines.append(f"{'':<28} source: {m.url}" + (f" (member .../{m.member})" if m.member else ""))
        lines.append(f"{'':<28} input: {m.preprocessing.note}")
        lines.append(f"{'':<28} licence: {m.licence}")
    lines.append(f"{len(MODELS)} models. Weights are cached in {cache_dir() / 'pretrained'}; "
                 f"${MIRROR_ENV} replaces the hosts.")
    return "\n".join(lines)
