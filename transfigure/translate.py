"""Apply a trained generator to image files of any size."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import Options, make_options
from .data.images import IMG_EXTENSIONS, image_to_tensor, list_images, load_image, save_image
from .methods.pix2pix import ColorizationNet
from .nets import define_G, load_official_state_dict, run_padded

GENERATOR_OPTION_KEYS = ("model", "input_nc", "output_nc", "ngf", "netG", "norm", "no_dropout", "activation",
                         "activation_slope")
SINGLE_GENERATOR_MODELS = ("pix2pix", "colorization", "cartoongan")


def generator_for(saved: dict, direction: str | None) -> str:
    """Which generator of a run translates `direction`, named by the dataset's
    folders (A -> B or B -> A); None means the direction it was trained for.
    A run trained with --direction BtoA swapped the folders: its G_A maps B -> A."""
    trained = saved.get("direction", "AtoB")
    if saved.get("model") in SINGLE_GENERATOR_MODELS:
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
    in_nc, out_nc = (opt.output_nc, opt.input_nc) if net_name == "G_B" else (opt.input_nc, opt.output_nc)
    net = define_G(in_nc, out_nc, ngf=opt.ngf, netG=opt.netG, norm=opt.norm, use_dropout=not opt.no_dropout,
                   activation=opt.activation, negative_slope=opt.activation_slope)
    try:
        load_official_state_dict(net, state_dict)
    except ValueError as e:
        raise ckpt.CheckpointError(f"{source}: {e}") from e
    if opt.model == "colorization":  # RGB in, RGB out: lightness kept, colors predicted
        return LoadedGenerator(ColorizationNet(net), 3, 3, source)
    return LoadedGenerator(net, in_nc, out_nc, source)


def _read_options_file(folder: Path) -> dict:
    path = folder / "options.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def load_generator(name: str | None = None, checkpoint: str | Path | None = None,
                   checkpoints_dir: str = "checkpoints", epoch: str = "latest", direction: str | None = None,
                   architecture: dict | None = None) -> LoadedGenerator:
    """A generator from a run (`name`), a training checkpoint (.ckpt), or a
    plain state dict (.pth/.safetensors). Plain files take their architecture
    from the run's options.yaml beside them, else from `architecture`
    (defaults: the official CycleGAN generator) and map the way their file
    name says (`*net_G_B*` is B -> A), whatever `direction` says."""
    if (name is None) == (checkpoint is None):
        raise ValueError("give exactly one of --name or --checkpoint")
    if name is not None:
        folder = Path(checkpoints_dir) / name
        if not folder.is_dir():
            raise ckpt.CheckpointError(f"{folder}: no such run (check --name and --checkpoints_dir)")
        checkpoint = ckpt.state_path(folder, epoch)
        if not checkpoint.exists():  # a run folder holding only exported generators
            checkpoint = folder / f"{epoch}_net_{generator_for(_read_options_file(folder), direction)}.pth"
    path = Path(checkpoint)
    if path.suffix == ".ckpt":
        state = ckpt.load_training_state(path)
        net_name = generator_for(state["options"], direction)
        opt = make_options({k: state["options"][k] for k in GENERATOR_OPTION_KEYS})
        return _build(opt, net_name, state["nets"][net_name], str(path))

    state_dict = ckpt.load_tensor_file(path)
    saved = _read_options_file(path.parent) or (architecture or {})
    opt = make_options({k: v for k, v in saved.items() if k in GENERATOR_OPTION_KEYS})
    return _build(opt, "G_B" if "net_G_B" in path.name else "G", state_dict, str(path))


def collect_inputs(input_path: str | Path) -> list[Path]:
    path = Path(input_path)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        if path.suffix.lower() not in IMG_EXTENSIONS:
            raise ValueError(f"--input {path}: not an image file (expected one of {' '.join(IMG_EXTENSIONS)})")
        return [path]
    raise FileNotFoundError(f"--input {path}: no such file or folder")


def output_names(inputs: list[Path]) -> list[str]:
    """`photo.jpg` -> `photo.png`; when two inputs share a stem, keep the extension in the name."""
    stems = [p.stem for p in inputs]
    return [f"{p.stem}.png" if stems.count(p.stem) == 1 else f"{p.name}.png" for p in inputs]


@dataclass
class TranslateSummary:
    written: list[Path] = field(default_factory=list)
    skipped_existing: list[Path] = field(default_factory=list)


def report_written(summary: TranslateSummary, output) -> int:
    """Say what a translate-like command wrote and kept; its exit status (0)."""
    print(f"Wrote {len(summary.written)} image(s) to {output}")
    if summary.skipped_existing:
        print(f"Kept {len(summary.skipped_existing)} existing output(s); use --overwrite to replace them")
    return 0


def plan_outputs(inputs: list[Path], output_dir: Path, overwrite: bool, also_in: tuple[str, ...] = ()
                 ) -> tuple[list[tuple[Path, Path]], TranslateSummary]:
    """(input, output) pairs still to write, and a summary listing the outputs kept
    because they exist. Refuses outright when an output (or its copy in one of
    the `also_in` subfolders) would land on an input file."""
    targets = [output_dir / n for n in output_names(inputs)]
    input_set = {p.resolve() for p in inputs}
    for target in targets:
        if any(t.resolve() in input_set for t in [target, *(output_dir / d / target.name for d in also_in)]):
            raise ValueError(f"--output {output_dir}: writing {target.name} would overwrite an input file; "
                             "choose another output folder")
    summary, todo = TranslateSummary(), []
    for source, target in zip(inputs, targets):
        if target.exists() and not overwrite:
            summary.skipped_existing.append(target)
        else:
            todo.append((source, target))
    return todo, summary


@torch.inference_mode()
def translate_files(generator: LoadedGenerator, inputs: list[Path], output_dir: str | Path,
                    device: torch.device | str = "cpu", batch_size: int = 4, compare: bool = False,
                    overwrite: bool = False, progress: bool = True, eval_mode: bool = False) -> TranslateSummary:
    """Translate each image at its own size (padded for the network, cropped
    back). Same-size neighbours share a batch. Existing outputs are kept
    unless `overwrite`; an input file is never written to.

    As in the official test script, batch norm and dropout stay in training
    mode unless `eval_mode` (the official --eval): batch statistics come from
    the image itself, and dropout stays random. Instance norm without dropout
    (CycleGAN) gives the same result either way."""
    output_dir = Path(output_dir)
    todo, summary = plan_outputs(inputs, output_dir, overwrite, also_in=("compare",) if compare else ())
    net = generator.net.to(device).train(not eval_mode)
    if not eval_mode and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        batch_size = 1  # batch statistics must come from one image, not from its batch neighbours

    def flush(batch):
        x = torch.stack([t for _, _, t in batch]).to(device)
        y = run_padded(net, x).float().cpu()
        for (source, target, t), out in zip(batch, y):
            save_image(out, target)
            if compare:
                side = torch.cat([t.expand(out.shape[0], -1, -1) if t.shape[0] < out.shape[0] else t,
                                  out.expand(t.shape[0], -1, -1) if out.shape[0] < t.shape[0] else out], 2)
                save_image(side, output_dir / "compare" / target.name)
            summary.written.append(target)

    batch: list = []
    for source, target in tqdm(todo, desc="translating", unit="img", disable=not progress):
        tensor = image_to_tensor(load_image(source, generator.input_nc))
        if batch and (len(batch) == batch_size or batch[-1][2].shape != tensor.shape):
            flush(batch)
            batch = []
        batch.append((source, target, tensor))
    if batch:
        flush(batch)
    return summary
