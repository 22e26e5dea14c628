"""Apply a generator to images and videos of any size: loading it, finding the inputs, naming the outputs."""
from __future__ import annotations

import functools
import glob
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import Options, make_options, parse_option
from .data.images import (IMG_EXTENSIONS, ImageLoadError, image_to_tensor, load_image, save_image, tensor_to_image,
                          visible_files)
from .methods import method_class, method_of
from .nets import load_official_state_dict
from .nets.spec import OPTION_KEYS, GeneratorSpec
from .tempfiles import check_output_folder
from .runner import DEFAULT_TILE_OVERLAP, GeneratorRunner, RunOptions, add_run_arguments
from .video import AUDIO_NOTE, VIDEO_EXTENSIONS, is_video_file, translate_video
from .errors import UsageError

GENERATOR_OPTION_KEYS = ("model", *OPTION_KEYS)


def generator_for(saved: dict, direction: str | None) -> str:
    """Which generator of a run translates `direction`, named by the dataset's
    folders (A -> B or B -> A); None means the direction it was trained for.
    A run trained with --direction BtoA swapped the folders: its G_A maps B -> A."""
    trained = saved.get("direction", "AtoB")
    if method_of(saved).single_generator():
        if direction not in (None, trained):
            raise ckpt.CheckpointError(f"this {saved['model']} model translates only {trained} "
                                       f"(it has one generator); drop --direction {direction}")
        return "G"
    return "G_A" if direction in (None, trained) else "G_B"


@dataclass
class LoadedGenerator:
    net: nn.Module
    input_nc: int
    output_nc: int
    source: str


def _build(opt: Options, net_name: str, state_dict: dict, source: str) -> LoadedGenerator:
    # The dataset gives G_A (and pix2pix's G) inputs of input_nc channels whatever the direction.
    spec = GeneratorSpec.from_options(opt, net_name)
    in_nc, out_nc = spec.input_nc, spec.output_nc
    net = spec.build()
    try:
        load_official_state_dict(net, state_dict)
    except ValueError as e:
        raise ckpt.CheckpointError(f"{source}: {e}") from e
    translator = method_class(opt.model).as_translator(net)
    # A wrapper (colorization's: RGB in, RGB out) states its own channels.
    return LoadedGenerator(translator, getattr(translator, "input_nc", in_nc), getattr(translator, "output_nc", out_nc),
                           source)


def load_generator(name: str | None = None, checkpoint: str | Path | None = None,
                   checkpoints_dir: str = "checkpoints", epoch: str = "latest", direction: str | None = None,
                   architecture: dict | None = None) -> LoadedGenerator:
    """A generator from a run (`name`), a training checkpoint (.ckpt), or a
    plain state dict (.pth/.safetensors). Plain files take their architecture
    from the run's options.yaml beside them, completed by `architecture`
    (defaults: the official CycleGAN generator), and map the way their file
    name says (`*net_G_B*` is B -> A). `architecture` values that contradict
    what a run recorded, and `direction` with a plain file, are errors."""
    if (name is None) == (checkpoint is None):
        raise UsageError("give exactly one of --name or --checkpoint")
    given = {k: parse_option(k, v) for k, v in (architecture or {}).items()}
    if name is not None:
        folder = Path(checkpoints_dir) / name
        checkpoint = ckpt.run_checkpoint(folder, epoch, generator_for(ckpt.read_options(folder), direction))
    path = Path(checkpoint)
    if path.suffix == ".ckpt":
        state = ckpt.load_training_state(path)
        _refuse_contradictions(given, state["options"], path)
        net_name = generator_for(state["options"], direction)
        opt = make_options({k: state["options"][k] for k in GENERATOR_OPTION_KEYS if k in state["options"]})
        return _build(opt, net_name, state["nets"][net_name], str(path))

    if name is None and direction is not None:
        raise UsageError(f"--direction {direction}: {path.name} is one generator, which translates the way it was "
                         "trained (a file named *net_G_B* maps B -> A); drop --direction")
    state_dict = ckpt.load_tensor_file(path)
    recorded = ckpt.read_options(path.parent)
    _refuse_contradictions(given, recorded, path.parent / ckpt.OPTIONS_FILE)
    saved = {**given, **recorded}  # options typed here describe what the folder does not record
    opt = make_options({k: v for k, v in saved.items() if k in GENERATOR_OPTION_KEYS})
    return _build(opt, "G_B" if "net_G_B" in path.name else "G", state_dict, str(path))


def _refuse_contradictions(given: dict, recorded: dict, source: Path) -> None:
    """Architecture options typed on the command line must agree with what a run recorded."""
    conflicts = [f"--{k} {v} (recorded: {recorded[k]})" for k, v in given.items()
                 if k in recorded and recorded[k] != v]
    if conflicts:
        raise ckpt.CheckpointError(f"{source} records the architecture this model was trained with, and "
                                   f"{'; '.join(conflicts)} contradict it; drop those options")


def collect_inputs(input_path: str | Path, recursive: bool = False) -> list[Path]:
    """The images and videos named by --input: a file, a folder (its subfolders too
    when `recursive`) or a glob pattern such as 'photos/*.jpg' or 'trip/**/*.mp4'."""
    text = str(input_path)
    path = Path(text)
    media = IMG_EXTENSIONS + VIDEO_EXTENSIONS
    if path.is_dir():
        files = sorted(p for p in visible_files(path, recursive) if p.suffix.lower() in media)
        if not files:
            hint = "" if recursive else "; add --recursive to look in its subfolders"
            raise FileNotFoundError(f"--input {path}: no image or video files ({' '.join(media)}){hint}")
        return files
    if path.is_file():
        if path.suffix.lower() not in media:
            raise UsageError(f"--input {path}: not an image or video file (expected one of {' '.join(media)})")
        return [path]
    if glob.has_magic(text):
        files = sorted(p for p in map(Path, glob.glob(text, recursive=True))
                       if p.is_file() and p.suffix.lower() in media)
        if not files:
            raise FileNotFoundError(f"--input {text}: the pattern matches no image or video file "
                                    "(quote it, or the shell expands it first)")
        return files
    raise FileNotFoundError(f"--input {path}: no such file or folder")


def input_root(input_path: str | Path) -> Path:
    """The folder outputs mirror: a folder input itself, a file's folder, or a glob's fixed prefix."""
    text = str(input_path)
    path = Path(text)
    if path.is_dir():
        return path
    if path.is_file() or not glob.has_magic(text):
        return path.parent
    fixed = []
    for part in path.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def output_names(inputs: list[Path], root: Path | None = None) -> list[Path]:
    """Each input's output path relative to the output folder, mirroring its place under
    `root`: `photo.jpg` -> `photo.png`, `trip/clip.mp4` -> `trip/clip.mp4`. When two images
    of one folder share a stem, the extension stays in the name (`a.jpg.png`)."""
    relative = []
    for p in inputs:
        try:
            relative.append(p.relative_to(root) if root is not None else Path(p.name))
        except ValueError:
            relative.append(Path(p.name))
    stems = [(r.parent, r.stem) for r in relative if not is_video_file(r)]
    return [r if is_video_file(r) else r.with_name(f"{r.stem}.png" if stems.count((r.parent, r.stem)) == 1
                                                 else f"{r.name}.png") for r in relative]


@dataclass
class TranslateSummary:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)
    unreadable: list[ImageLoadError] = field(default_factory=list)  # inputs passed over (without --strict)

    @property
    def videos(self) -> list[Path]:
        return [p for p in self.written if is_video_file(p)]


def report_written(summary: TranslateSummary, output) -> int:
    """Say what a translate-like command wrote, kept and could not read; its exit status
    (1 when an input was unreadable)."""
    videos = len(summary.videos)
    print(f"Wrote {len(summary.written) - videos} image(s)" + (f" and {videos} video(s)" if videos else "")
          + f" to {output}")
    if videos:
        print(f"Note: {AUDIO_NOTE}")
    if summary.skipped_existing:
        print(f"Kept {len(summary.skipped_existing)} existing output(s); use --overwrite to replace them")
    if summary.unreadable:
        print(f"Could not read {len(summary.unreadable)} input(s); nothing was written for them:", file=sys.stderr)
        for error in summary.unreadable:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 0


def plan_outputs(inputs: list[Path], output_dir: Path, overwrite: bool, also_in: tuple[str, ...] = (),
                 root: Path | None = None) -> tuple[list[tuple[Path, Path]], TranslateSummary]:
    """(input, output) pairs still to write, and a summary listing the outputs kept
    because they exist. Refuses outright when an output (or its copy in one of
    the `also_in` subfolders) would land on an input file."""
    check_output_folder(output_dir)
    targets = [output_dir / n for n in output_names(inputs, root)]
    input_set = {p.resolve() for p in inputs}
    for target in targets:
        if any(t.resolve() in input_set for t in [target, *(output_dir / d / target.name for d in also_in)]):
            raise UsageError(f"--output {output_dir}: writing {target.name} would overwrite an input file; "
                             "choose another output folder")
    summary, todo = TranslateSummary(), []
    for source, target in zip(inputs, targets):
        if target.exists() and not overwrite:
            summary.skipped_existing.append(target)
        else:
            todo.append((source, target))
    return todo, summary


def prepare_image(image: Image.Image, channels: int = 3, max_size: int = 0) -> Image.Image:
    """`image` as the generator takes it: 'L' (channels 1) or 'RGB', scaled down (aspect
    kept) so its long side is at most `max_size` (0 = no limit)."""
    image = image.convert("L" if channels == 1 else "RGB")
    if max_size <= 0 or max(image.size) <= max_size:
        return image
    scale = max_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)


ImagesFunction = Callable[[list[Image.Image]], list[Image.Image]]


def generator_images(runner: GeneratorRunner, input_nc: int = 3) -> ImagesFunction:
    """Same-size PIL images -> their translations, as one batch (tile by tile when
    the runner tiles)."""
    mode = "L" if input_nc == 1 else "RGB"

    def run(images: list[Image.Image]) -> list[Image.Image]:
        x = torch.stack([image_to_tensor(image.convert(mode)) for image in images])
        return [tensor_to_image(y) for y in runner(x)]
    return run


def needs_single_images(net: nn.Module, eval_mode: bool) -> bool:
    """Batch norm in training mode takes statistics over the batch: one image at a time."""
    return not eval_mode and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def translate_inputs(translate_images: ImagesFunction, inputs: list[Path], output_dir: str | Path,
                     channels: int = 3, batch_size: int = 4, compare: bool = False, overwrite: bool = False,
                     progress: bool = True, max_size: int = 0, root: Path | None = None,
                     strict: bool = False) -> TranslateSummary:
    """Images and videos through `translate_images` into `output_dir` (names by
    `output_names`; images as PNG, videos in their own container). Same-size
    neighbouring images share a batch; videos go frame batch by frame batch.
    Existing outputs are kept unless `overwrite`; an input file is never written to. An
    unreadable input is listed in the summary and the others go on, unless `strict`."""
    output_dir = Path(output_dir)
    todo, summary = plan_outputs(inputs, output_dir, overwrite, ("compare",) if compare else (), root)
    images = [(s, t) for s, t in todo if not is_video_file(s)]
    prepare = functools.partial(prepare_image, channels=channels, max_size=max_size)

    def flush(batch):
        for (source, target, image), out in zip(batch, translate_images([image for _, _, image in batch])):
            save_image(out, target)
            if compare:
                side = Image.new("RGB", (image.width + out.width, max(image.height, out.height)), "white")
                side.paste(image.convert("RGB"), (0, 0))
                side.paste(out.convert("RGB"), (image.width, 0))
                save_image(side, output_dir / "compare" / target.name)
            summary.written.append(target)

    batch: list = []
    for source, target in tqdm(images, desc="translating", unit="img", disable=not progress or not images):
        try:
            image = prepare(load_image(source, channels))
        except ImageLoadError as e:
            if strict:
                raise
            summary.unreadable.append(e)
            continue
        if batch and (len(batch) == batch_size or batch[-1][2].size != image.size):
            flush(batch)
            batch = []
        batch.append((source, target, image))
    if batch:
        flush(batch)
    for source, target in todo:
        if is_video_file(source):
            try:
                translate_video(translate_images, source, target, batch_size, prepare, progress)
            except ImageLoadError as e:
                if strict:
                    raise
                summary.unreadable.append(e)
                continue
            summary.written.append(target)
    return summary


def translate_files(generator: LoadedGenerator, inputs: list[Path], output_dir: str | Path,
                    run: RunOptions = RunOptions.reference(), batch_size: int = 4, compare: bool = False,
                    overwrite: bool = False, progress: bool = True, eval_mode: bool = False, max_size: int = 0,
                    root: Path | None = None, announce: bool = False, strict: bool = False) -> TranslateSummary:
    """`translate_inputs` with a generator run as `run` says: each image at its own size
    (or at most `max_size`), padded for the network and cropped back. As in the official
    test script, batch norm and dropout stay in training mode unless `eval_mode` (the
    official --eval); instance norm without dropout (CycleGAN) gives the same result
    either way. `announce` prints the backend and precision picked."""
    runner = GeneratorRunner(generator.net, run, generator.input_nc, eval_mode, progress, announce)
    if needs_single_images(generator.net, eval_mode):
        batch_size = 1
    return translate_inputs(generator_images(runner, generator.input_nc), inputs, output_dir, generator.input_nc,
                            batch_size, compare, overwrite, progress, max_size, root, strict)


def add_input_arguments(parser) -> None:
    """--input and the options on how inputs are read, shared by translate and cartoonize."""
    parser.add_argument("--input", required=True,
                        help="an image or video (mp4/avi/mov) file, a folder of them, or a quoted glob pattern "
                             "such as 'photos/*.jpg' or 'trip/**/*.mp4'")
    parser.add_argument("--output", required=True,
                        help="folder for the results: images as PNG, videos in their own format (no audio), "
                             "mirroring the input names and subfolders")
    parser.add_argument("--recursive", action="store_true", help="with a folder --input, include its subfolders")
    parser.add_argument("--tile", type=int, default=0, metavar="SIZE",
                        help="translate images larger than SIZE pixels in overlapping SIZE x SIZE tiles, so any "
                             "size fits in memory (0 = whole images; try 512)")
    parser.add_argument("--tile_overlap", type=int, default=DEFAULT_TILE_OVERLAP, metavar="PX",
                        help=f"pixels shared by neighbouring tiles, cross-faded to hide seams "
                             f"(default {DEFAULT_TILE_OVERLAP}; at most half of --tile)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable input (default: translate the others, list the "
                             "unreadable ones at the end and exit with status 1)")
    add_run_arguments(parser)
