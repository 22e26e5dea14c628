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
from .nets import define_G, load_official_state_dict, run_padded

GENERATOR_OPTION_KEYS = ("input_nc", "output_nc", "ngf", "netG", "norm", "no_dropout")


def generator_for(direction: str, trained_direction: str = "AtoB") -> str:
    """`direction` names the dataset's folders (A -> B or B -> A). A run trained
    with --direction BtoA swapped them, so its G_A maps B -> A."""
    return "G_A" if direction == trained_direction else "G_B"


@dataclass
class LoadedGenerator:
    net: nn.Module
    input_nc: int
    output_nc: int
    source: str


def _build(opt: Options, net_name: str, state_dict: dict, source: str) -> LoadedGenerator:
    # The dataset gives G_A inputs of input_nc channels whatever the training direction.
    in_nc, out_nc = (opt.input_nc, opt.output_nc) if net_name == "G_A" else (opt.output_nc, opt.input_nc)
    net = define_G(in_nc, out_nc, ngf=opt.ngf, netG=opt.netG, norm=opt.norm, use_dropout=not opt.no_dropout)
    try:
        load_official_state_dict(net, state_dict)
    except ValueError as e:
        raise ckpt.CheckpointError(f"{source}: {e}") from e
    return LoadedGenerator(net.eval(), in_nc, out_nc, source)


def load_generator(name: str | None = None, checkpoint: str | Path | None = None,
                   checkpoints_dir: str = "checkpoints", epoch: str = "latest", direction: str = "AtoB",
                   architecture: dict | None = None) -> LoadedGenerator:
    """A generator from a run (`name`), a training checkpoint (.ckpt), or a
    plain state dict (.pth/.safetensors). Plain files take their architecture
    from the run's options.yaml beside them, else from `architecture`
    (defaults: the official CycleGAN generator)."""
    if (name is None) == (checkpoint is None):
        raise ValueError("give exactly one of --name or --checkpoint")
    if name is not None:
        folder = Path(checkpoints_dir) / name
        if not folder.is_dir():
            raise ckpt.CheckpointError(f"{folder}: no such run (check --name and --checkpoints_dir)")
        checkpoint = ckpt.state_path(folder, epoch)
        if not checkpoint.exists():  # a run folder holding only exported generators
            saved = yaml.safe_load((folder / "options.yaml").read_text()) if (folder / "options.yaml").is_file() else {}
            checkpoint = folder / f"{epoch}_net_{generator_for(direction, saved.get('direction', 'AtoB'))}.pth"
    path = Path(checkpoint)
    if path.suffix == ".ckpt":
        state = ckpt.load_training_state(path)
        opt = make_options({k: state["options"][k] for k in GENERATOR_OPTION_KEYS})
        net_name = generator_for(direction, state["options"]["direction"])
        if net_name not in state["nets"]:
            raise ckpt.CheckpointError(f"{path}: holds no {net_name} generator for --direction {direction}")
        return _build(opt, net_name, state["nets"][net_name], str(path))

    # A plain generator file maps whatever its file says, whatever --direction says.
    state_dict = ckpt.load_tensor_file(path)
    options_file = path.parent / "options.yaml"
    if options_file.is_file():
        saved = yaml.safe_load(options_file.read_text())
        opt = make_options({k: saved[k] for k in GENERATOR_OPTION_KEYS if k in saved})
    else:
        opt = make_options({k: v for k, v in (architecture or {}).items() if k in GENERATOR_OPTION_KEYS})
    return _build(opt, "G_B" if "net_G_B" in path.name else "G_A", state_dict, str(path))


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


@torch.inference_mode()
def translate_files(generator: LoadedGenerator, inputs: list[Path], output_dir: str | Path,
                    device: torch.device | str = "cpu", batch_size: int = 4, compare: bool = False,
                    overwrite: bool = False, progress: bool = True) -> TranslateSummary:
    """Translate each image at its own size (padded for the network, cropped
    back). Same-size neighbours share a batch. Existing outputs are kept
    unless `overwrite`; an input file is never written to."""
    output_dir = Path(output_dir)
    targets = [output_dir / n for n in output_names(inputs)]
    input_set = {p.resolve() for p in inputs}
    for target in targets:
        if target.resolve() in input_set or (compare and (output_dir / "compare" / target.name).resolve()
                                             in input_set):
            raise ValueError(f"--output {output_dir}: writing {target.name} would overwrite an input file; "
                             "choose another output folder")
    net = generator.net.to(device)
    summary = TranslateSummary()
    todo = []
    for source, target in zip(inputs, targets):
        if target.exists() and not overwrite:
            summary.skipped_existing.append(target)
        else:
            todo.append((source, target))

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
