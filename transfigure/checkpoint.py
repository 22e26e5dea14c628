"""Checkpoint files that never lose work.

Every file is written to a temporary name in the same folder and renamed
into place, so a crash at any moment leaves the previous file intact.
Loading never unpickles arbitrary objects (`weights_only=True`).

A run folder `CHECKPOINTS_DIR/NAME/` holds:
  latest.ckpt, epoch_N.ckpt     full training state (nets, optimizers, schedulers,
                                method state such as image pools, RNG states, counters)
  latest_net_G_A.pth, N_net_G_A.pth (+ .safetensors)
                                plain official-layout generator state dicts
  options.yaml                  the options of the run
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from .errors import UsageError
from .config import Options
from .tempfiles import temporary_path
from .torchfiles import read_torch_file

FORMAT = "transfigure-training-state"
FORMAT_VERSION = 1


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable or does not fit the options; the message names the file."""


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename the finished file onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(temporary_path(path))
    try:
        open(tmp, "xb").close()  # a folder we cannot write in fails here, in Python's words with the path
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_generator(state_dict: dict[str, torch.Tensor], path_stem: Path) -> None:
    """Write `<stem>.pth` (official layout, loadable by the official test
    script) and `<stem>.safetensors` with the same tensors."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_torch_save(tensors, path_stem.with_suffix(".pth"))
    atomic_write(path_stem.with_suffix(".safetensors"), lambda tmp: save_file(tensors, tmp))


def load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from .pth/.pt (weights only) or .safetensors."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return read_torch_file(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        from safetensors.torch import load_file
        return load_file(str(path))
    except Exception as e:  # safetensors raises several kinds for bad files
        raise CheckpointError(f"{path}: cannot read it as a safetensors file ({type(e).__name__}: {e})") from e


def run_dir(opt: Options) -> Path:
    return Path(opt.checkpoints_dir) / opt.name


def state_path(folder: Path, epoch: str | int = "latest") -> Path:
    return Path(folder) / ("latest.ckpt" if str(epoch) == "latest" else f"epoch_{int(epoch)}.ckpt")


def load_training_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there (train first, or check --name/--epoch/--checkpoints_dir)")
    state = read_torch_file(path, "training checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a transfigure training checkpoint")
    return state


def check_compatible(saved: dict, opt: Options, path: Path) -> None:
    """Refuse to resume with options that change what the checkpoint holds."""
    conflicts = [f"--{k} {getattr(opt, k)} (checkpoint: {saved.get(k)})"
                 for k in Options.ARCHITECTURE_KEYS if k in saved and saved[k] != getattr(opt, k)]
    if conflicts:
        raise CheckpointError(f"{path} was trained with other settings: {'; '.join(conflicts)}. "
                              "Resume with the checkpoint's values, or start a new run with another --name.")


OPTIONS_FILE = "options.yaml"


def write_options(opt: Options, folder: Path) -> None:
    atomic_write_text(yaml.safe_dump(opt.to_dict(), sort_keys=True), Path(folder) / OPTIONS_FILE)


def read_options(folder: str | Path, required: bool = False) -> dict:
    """A run folder's options.yaml as a dict ({} when absent, unless `required`)."""
    path = Path(folder) / OPTIONS_FILE
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path.parent}: no run here (no {OPTIONS_FILE}); check --name and "
                                  "--checkpoints_dir")
        return {}
    try:
        options = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}); a run's options file must be the YAML "
                              "training wrote") from None
    if not isinstance(options, dict):
        raise CheckpointError(f"{path}: not a mapping of option: value; a run's options file must be the YAML "
                              "training wrote")
    return options


def run_checkpoint(folder: str | Path, epoch: str = "latest", net_name: str | None = None) -> Path:
    """The file a run folder keeps for `epoch`: its training state, else (a folder of
    exported generators) `{epoch}_net_{net_name}.pth`, or with no `net_name` the first
    exported generator. Raises CheckpointError naming the folder when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such run (check --name and --checkpoints_dir)")
    path = state_path(folder, epoch)
    if path.exists():
        return path
    exported = [folder / f"{epoch}_net_{net_name}.pth"] if net_name else sorted(folder.glob(f"{epoch}_net_G*.pth"))
    if exported and exported[0].exists():
        return exported[0]
    raise CheckpointError(f"{folder}: no checkpoint for epoch {epoch!r} ({path.name} or {epoch}_net_G*.pth); "
                          "train first, or check --epoch")


def capture_rng() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
