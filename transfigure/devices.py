"""The one place that turns a device request into a torch.device, and a
precision request into the arithmetic that device runs fastest."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

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


# --- precision ----------------------------------------------------------------
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# CPU features that make bf16 matrix work faster than fp32 (oneDNN uses them); without
# them PyTorch emulates bf16 and it runs tens of times slower (measured ~35x on AVX2).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo; elsewhere, the ones PyTorch reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    found = {"avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx_bf16": torch.cpu._is_amx_tile_supported(),
             "avx2": torch.cpu._is_avx2_supported()}
    return frozenset(name for name, present in found.items() if present)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Precision:
    """The arithmetic a run uses and why; `warning` is set when it will be slow."""
    name: str  # fp32, bf16 or fp16
    reason: str
    warning: str = ""

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self, device: torch.device):
        """Mixed precision for the forward pass; a no-op for fp32. Parameters, loss
        reductions and optimizer state stay fp32."""
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.name != "fp32")

    def describe(self) -> str:
        return f"precision {self.name}: {self.reason}" + (f". Warning: {self.warning}" if self.warning else "")


def report_choice(line: str, precision: Precision, verbose: bool) -> None:
    """Say what a run picked: the whole `line` when `verbose`, else only a warning when the
    precision will be slow (so library callers still hear of it)."""
    if verbose:
        print(line)
    elif precision.warning:
        warnings.warn(precision.warning, RuntimeWarning, stacklevel=3)


def choose_precision(requested: str, device: torch.device, flags: frozenset[str] | None = None,
                     cuda_bf16: bool | None = None) -> Precision:
    """What `--precision` means on `device`. 'auto' picks bf16 where the hardware runs it
    natively (a CUDA device with bf16 support, a CPU with one of NATIVE_BF16_FLAGS) and
    fp32 otherwise. `flags` and `cuda_bf16` default to this machine's (given in tests)."""
    if requested not in PRECISIONS:
        raise UsageError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        where = "this CUDA device"
    else:
        flags = cpu_flags() if flags is None else flags
        have = [f for f in NATIVE_BF16_FLAGS if f in flags]
        native = bool(have)
        where = f"this CPU ({', '.join(have)})" if have else "this CPU (no avx512_bf16 or amx_bf16)"
    if requested == "auto":
        if native:
            return Precision("bf16", f"auto: {where} runs bf16 natively")
        return Precision("fp32", f"auto: {where} has no native bf16, so fp32 is fastest")
    if requested == "fp32":
        return Precision("fp32", "asked for")
    if device.type == "cpu":
        slow = {"bf16": "" if native else f"{where} emulates bf16: expect it to be many times slower than fp32",
                "fp16": "CPUs emulate most fp16 arithmetic: expect it to be slower than fp32"}[requested]
        return Precision(requested, "asked for", slow)
    if requested == "bf16" and not native:
        return Precision("bf16", "asked for", f"{where} does not support bf16 natively: expect it to be slow")
    return Precision(requested, "asked for")
