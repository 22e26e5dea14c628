"""The one place that turns a device request into a torch.device."""
from __future__ import annotations

import torch
from .errors import SetupError, UsageError


def resolve_device(device: str | torch.device | None = "auto", gpu_ids: str = "") -> torch.device:
    """'auto' (or None): the first CUDA device when PyTorch sees one, else the CPU;
    'cpu'; 'cuda' or 'cuda:N'. `gpu_ids` is the official flag: "-1" means the CPU, a
    comma list picks its first GPU. Asking for CUDA where there is none is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    device = (device or "auto").strip()
    gpu_ids = (gpu_ids or "").strip()
    if gpu_ids == "-1" or device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda") or gpu_ids:
        if not torch.cuda.is_available():
            raise SetupError(f"--device {device if device != 'auto' else 'cuda'} (or --gpu_ids) was asked for but "
                               "PyTorch sees no CUDA device; use --device cpu or --device auto")
        if device.startswith("cuda:"):
            return torch.device(device)
        return torch.device(f"cuda:{gpu_ids.split(',')[0].strip() if gpu_ids else 0}")
    if device != "auto":
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
