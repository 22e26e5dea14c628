"""Runs of the reference implementations (pytorch-CycleGAN-and-pix2pix, and
contrastive-unpaired-translation for CUT) carried over, and back.

`transfigure import RUN_DIR --name NAME` reads a reference run folder: its
train_opt.txt (the options it printed) and one epoch's `<epoch>_net_<G|D...>.pth`
files. The networks are loaded strictly (after the reference's own clean-up of
legacy InstanceNorm keys), the options mapped, and a transfigure checkpoint is
written with fresh optimizers and schedules placed at the next epoch: the reference
saves no optimizer state, so Adam's moments start from zero.

`transfigure export --format official` writes a run's networks back in the
reference's layout, files its --continue_train loads."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .config import OPTION_FIELDS, make_options, parse_option
from .errors import UsageError
from .nets.common import load_official_state_dict
from .torchfiles import read_torch_file

OPTIONS_FILE = "train_opt.txt"
# Reference options with no counterpart here (display, logging, hardware, and bookkeeping).
NO_COUNTERPART = {"display_freq", "display_ncols", "display_id", "display_server", "display_env", "display_port",
                  "update_html_freq", "no_html", "display_winsize", "verbose", "suffix", "phase", "isTrain",
                  "use_wandb", "wandb_project_name", "save_by_iter", "load_iter", "continue_train", "epoch",
                  "gpu_ids", "num_threads", "checkpoints_dir", "name", "results_dir", "aspect_ratio", "eval",
                  "num_test", "model_suffix"}
METHODS = {"cycle_gan", "pix2pix", "cut"}


def parse_train_opt(path: Path) -> dict[str, str]:
    """The `name: value` lines between the reference's Options banners ([default: ...] notes dropped)."""
    options = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z_][\w]*):\s?(.*?)\s*(\[default: .*\])?\s*$", line)
        if match and not line.lstrip().startswith("-"):
            options[match.group(1)] = match.group(2).strip()
    if "model" not in options:
        raise UsageError(f"{path}: not a reference train_opt.txt (no 'model:' line)")
    return options


def _one_norm(reference: dict[str, str], path: Path) -> dict[str, str]:
    """The CUT repository's normG and normD as the one --norm that serves both here."""
    norms = {reference[k] for k in ("normG", "normD") if k in reference}
    if not norms:
        return reference
    if len(norms) > 1:
        raise UsageError(f"{path}: normG {reference.get('normG')} and normD {reference.get('normD')}; transfigure's "
                         "--norm is one for the generator and the discriminator, so this run cannot be imported")
    return {**{k: v for k, v in reference.items() if k not in ("normG", "normD")}, "norm": norms.pop()}


def map_options(reference: dict[str, str]) -> tuple[dict, list[str]]:
    """(our options, the reference's options that have no counterpart here)."""
    mapped, skipped = {}, []
    for key, text in reference.items():
        if key in NO_COUNTERPART or key not in OPTION_FIELDS:
            skipped.append(key)
            continue
        if text in ("None", ""):
            continue
        mapped[key] = parse_option(key, text)
    return mapped, sorted(skipped)


def _epoch_of(run_dir: Path, epoch: str, names: list[str]) -> int:
    """The finished epoch the chosen files hold: their number, or for 'latest' the numbered
    epoch whose files are the same tensors, or else the last epoch of the loss log."""
    if epoch != "latest":
        return int(epoch)
    latest = read_torch_file(run_dir / f"latest_net_{names[0]}.pth")
    numbered = sorted((int(p.name.split("_")[0]) for p in run_dir.glob(f"*_net_{names[0]}.pth")
                       if p.name.split("_")[0].isdigit()), reverse=True)
    for n in numbered:
        saved = read_torch_file(run_dir / f"{n}_net_{names[0]}.pth")
        if saved.keys() == latest.keys() and all(torch.equal(saved[k], latest[k]) for k in latest):
            return n
    log = run_dir / "loss_log.txt"
    epochs = re.findall(r"\(epoch: (\d+),", log.read_text()) if log.is_file() else []
    return max(int(epochs[-1]) - 1, 0) if epochs else 0  # latest was saved part-way through that epoch


def import_run(run_dir: str | Path, name: str, checkpoints_dir: str | Path = "checkpoints",
               epoch: str = "latest") -> tuple[Path, list[str], int]:
    """Write checkpoints_dir/name from a reference run folder; returns (the run folder, the
    reference options with no counterpart, the epoch training continues with)."""
    from .methods import create_method
    from .train import Trainer, make_optimizers, write_checkpoint

    run_dir = Path(run_dir)
    opt_file = run_dir / OPTIONS_FILE
    if not opt_file.is_file():
        raise UsageError(f"{run_dir}: no {OPTIONS_FILE}; give the reference run's folder (checkpoints/NAME)")
    reference = _one_norm(parse_train_opt(opt_file), opt_file)
    if reference["model"] not in METHODS:
        raise UsageError(f"{opt_file}: model {reference['model']!r}; import reads cycle_gan, pix2pix and cut runs")
    mapped, skipped = map_options(reference)
    target = Path(checkpoints_dir) / name
    if ckpt.state_path(target).exists():
        raise FileExistsError(f"{target}: already holds a run; choose another --name")
    opt = make_options({**mapped, "name": name, "checkpoints_dir": str(checkpoints_dir), "device": "cpu"})
    method = create_method(opt, torch.device("cpu"))
    names = list(method.nets)
    missing = [f"{epoch}_net_{n}.pth" for n in names if not (run_dir / f"{epoch}_net_{n}.pth").is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: {', '.join(missing)} missing (a {opt.model} run saves "
                                f"{', '.join(f'<epoch>_net_{n}.pth' for n in names)})")
    for n in names:
        load_official_state_dict(method.nets[n], run_dir / f"{epoch}_net_{n}.pth")
    done = _epoch_of(run_dir, epoch, names)
    optimizers, schedulers = make_optimizers(opt, method, epochs_done=done)  # where the reference left off
    state = Trainer.checkpoint(opt, method, optimizers, schedulers, epoch=opt.epoch_count + done)
    target.mkdir(parents=True, exist_ok=True)
    ckpt.write_options(opt, target)
    write_checkpoint(target, "latest", state, method)
    return target, skipped, opt.epoch_count + done


def export_official(state: dict, out_dir: str | Path, label: str = "latest", overwrite: bool = False) -> list[Path]:
    """A training checkpoint's networks as the reference saves them: out_dir/<label>_net_<name>.pth
    (the same keys; its --continue_train --epoch <label> loads them), and its options as train_opt.txt."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: is a file; give a folder (the reference's checkpoints/NAME)")
    files = [out_dir / f"{label}_net_{n}.pth" for n in state["nets"]]
    taken = [f for f in files if f.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{taken[0]}: already exists; pass --overwrite to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, sd in zip(files, state["nets"].values()):
        ckpt.atomic_torch_save({k: v.cpu() for k, v in sd.items()}, f)
    options = {k: v for k, v in state["options"].items() if k in OPTION_FIELDS}
    if options.get("model") == "cut":  # the CUT repository names the two nets' norms apart
        options["normG"] = options["normD"] = options.pop("norm")
    lines = ["----------------- Options ---------------",
             *(f"{k:>25}: {str(v):<30}" for k, v in sorted(options.items())),
             "----------------- End -------------------"]
    ckpt.atomic_write_text("\n".join(lines) + "\n", out_dir / OPTIONS_FILE)
    return files
