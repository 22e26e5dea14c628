"""Reading PyTorch files the safe way, with one clear line for each bad file.

Every file is loaded with `weights_only=True`: tensors and plain containers
only, never pickled objects, so a hostile file cannot run code. When PyTorch
refuses one, its own message suggests `weights_only=False`, exactly the wrong
advice for a file of unknown origin; the messages here say what the file is
instead."""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError


class TorchFileError(UsageError):
    """A file that cannot be read as tensors; the message names it."""


def read_torch_file(path: str | os.PathLike, what: str = "weights file") -> Any:
    path = Path(path)
    if path.is_dir():
        raise TorchFileError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise TorchFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TorchFileError(f"{path}: is empty (0 bytes); an interrupted download or copy? Get the file again")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # torch.save's zip, or a legacy pickle
        raise TorchFileError(f"{path}: cannot read it as a {what}: it is not a PyTorch file (it starts with "
                             f"{head!r}, not as torch.save writes)")
    if _is_torchscript(path):  # refused before torch.load, which would hand it to torch.jit.load
        raise TorchFileError(f"{path}: cannot read it as a {what}: it is a TorchScript archive (a program, not "
                             "weights; run it with torch.jit.load)")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TorchFileError(
            f"{path}: not a plain {what}: it holds Python objects that only unpickling could create, which "
            "could run code, so it is not loaded (and should not be, with pickle enabled, unless you trust "
            "where it came from); save a state dict of tensors instead") from None
    except Exception as e:  # noqa: BLE001 - zip, EOF, or format errors of a damaged or foreign file
        raise TorchFileError(f"{path}: cannot read it as a {what}: it is damaged, cut short, or not a PyTorch "
                             f"file ({type(e).__name__})") from None


def key_mismatch(expected: dict, stored: dict) -> tuple[list[str], list[str], list[str]]:
    """(keys missing from `stored`, keys `expected` lacks, keys of another shape), in
    `expected`'s order, so the first of each is where two layouts part ways."""
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    shapes = [k for k in expected if k in stored and stored[k].shape != expected[k].shape]
    return missing, unexpected, shapes


def load_fitting(net: torch.nn.Module, stored: Any, source: str | os.PathLike, what: str) -> torch.nn.Module:
    """Load `stored` into `net` strictly; tensors of another network (or no state dict at
    all) give one line naming `source` and what it should have held."""
    if not isinstance(stored, dict) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise TorchFileError(f"{source}: not a {what}: it does not hold a state dict of tensors")
    expected = net.state_dict()
    missing, unexpected, shapes = key_mismatch(expected, stored)
    if missing or unexpected or shapes:
        found = (f"{len(missing)} of its {len(expected)} tensors missing, {len(unexpected)} unexpected, "
                 f"{len(shapes)} of another shape; e.g. {(missing or unexpected or shapes)[0]}")
        raise TorchFileError(f"{source}: not a {what}: the tensors it holds are another network's ({found})")
    net.load_state_dict(stored)
    return net


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def tensor_digest(tensors: dict[str, torch.Tensor], *extra) -> str:
    """A short hash of named tensors (names, dtypes, shapes and values, in name order, so
    the same weights give the same digest from any file layout) and of `extra`."""
    h = hashlib.sha256(repr(extra).encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        if t.numel():
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]
