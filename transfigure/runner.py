"""How a trained generator runs, decided in one place: device, precision,
backend (PyTorch, ONNX Runtime or OpenVINO), padding, tiling and memory
format. translate, cartoonize, video and the Python API all translate through
a `GeneratorRunner`.

The ONNX Runtime and OpenVINO backends run the same graph `transfigure
export` writes (padding inside, any batch, height and width), converted once
and cached on disk under the cache folder, keyed by the weights' hash and the
converter's version.
"""
from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .devices import PRECISIONS, Precision, choose_precision, report_choice, resolve_device
from .errors import SetupError, UsageError
from .export import INSTALL_HINT
from .torchfiles import tensor_digest
from .nets.common import _min_size, accepts_any_size, size_multiple
from .nets.tiling import SharedStatistics, check_tiling, run_tiled

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
BACKEND_ENV = "TRANSFIGURE_BACKEND"  # the default of --backend, e.g. torch on a machine where conversions do not pay


DEFAULT_TILE_OVERLAP = 128  # its outer quarter, 32 px, is dropped: where border artifacts lie
_EXPORT_MODULES = ("onnx", "onnxscript")  # what converting a net to ONNX needs


def default_backend() -> str:
    return os.environ.get(BACKEND_ENV) or "auto"


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for; `GeneratorRunner` resolves 'auto' for the hardware."""
    device: str = "auto"
    precision: str = "auto"
    backend: str = field(default_factory=default_backend)
    tile: int = 0
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    channels_last: bool = True  # torch backend on the CPU: measured faster for these conv nets
    compile: str = "off"  # torch backend: torch.compile the net with this backend (inductor, aot_eager)

    def __post_init__(self):  # refused when made, before any download or conversion
        check_tiling(self.tile, self.tile_overlap)
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend (or ${BACKEND_ENV}) {self.backend!r}: choose one of {', '.join(BACKENDS)}")

    @classmethod
    def from_args(cls, args) -> "RunOptions":
        return cls(**{k: getattr(args, k) for k in ("device", "precision", "backend", "tile", "tile_overlap",
                                                     "compile") if hasattr(args, k)})

    @classmethod
    def reference(cls, device: str | torch.device = "cpu", **changes) -> "RunOptions":
        """PyTorch in fp32: what evaluations and benchmarks measure models with, so their
        numbers do not depend on the machine's fastest path."""
        return replace(cls(device=str(device), precision="fp32", backend="torch"), **changes)


def add_run_arguments(parser) -> None:
    """--precision and --backend, for every command that translates (--device and the
    tile options are added with the others of their command)."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="arithmetic: auto picks bf16 where the CPU (avx512_bf16/amx_bf16) or GPU runs it "
                             "natively, fp32 otherwise, and says why")
    parser.add_argument("--backend", default=default_backend(), choices=BACKENDS,
                        help=f"what runs the generator (default ${BACKEND_ENV}, else auto): auto picks the fastest "
                             "installed for the device and precision (on the CPU: onnxruntime for fp32, openvino "
                             "for bf16; torch on CUDA); the first use of a model converts it to ONNX once and "
                             "caches it")
    parser.add_argument("--compile", default="off", choices=["off", "inductor", "aot_eager"],
                        help="with the torch backend: torch.compile the generator (the first images compile)")


def installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def train_mode_matters(net: nn.Module) -> bool:
    """Whether the net in training mode computes something an exported (eval-mode)
    graph cannot: batch statistics of batch norm, or dropout."""
    return net.training and any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m in net.modules())


@dataclass(frozen=True)
class Backend:
    name: str
    reason: str


def choose_backend(requested: str, device: torch.device, precision: Precision, net: nn.Module,
                   tile: int = 0, available: dict[str, bool] | None = None) -> Backend:
    """Which backend runs `net` (`requested` is one of BACKENDS, as RunOptions checks).
    'auto': PyTorch on CUDA; on the CPU OpenVINO for bf16 and fp16 (ONNX Runtime's CPU
    kernels are fp32 only), ONNX Runtime for fp32 (level with OpenVINO on an avx512_bf16
    CPU, faster on an AVX2 one; see the README), else whichever is installed, else
    PyTorch. PyTorch also where only it computes the same result: a net in training mode
    with batch norm or dropout, or tiles whose normalisation shares whole-image
    statistics. `available` (backend -> installed) defaults to this machine's."""
    if available is None:
        available = {"onnxruntime": installed("onnxruntime", *_EXPORT_MODULES),
                     "openvino": installed("openvino", *_EXPORT_MODULES)}
    only_torch = ""
    if train_mode_matters(net):
        only_torch = "the net runs in training mode with batch norm or dropout (pass --eval for other backends)"
    elif tile and SharedStatistics(net).layers:
        only_torch = "tiles share whole-image normalisation statistics, which only the PyTorch backend records"
    if requested == "torch":
        return Backend("torch", "asked for")
    if requested != "auto":
        if only_torch:
            raise UsageError(f"--backend {requested} cannot run this model: {only_torch}; use --backend torch")
        if device.type != "cpu":
            raise UsageError(f"--backend {requested} runs on the CPU here; use --device cpu or --backend torch")
        if not available[requested]:
            raise SetupError(f"--backend {requested} needs the {requested} and ONNX export packages: {INSTALL_HINT}")
        if requested == "onnxruntime" and precision.name != "fp32":
            raise UsageError("--backend onnxruntime runs fp32 only on the CPU; use --precision fp32, or "
                             "--backend openvino for bf16")
        return Backend(requested, "asked for")
    if only_torch:
        return Backend("torch", f"auto: {only_torch}")
    if device.type != "cpu":
        return Backend("torch", f"auto: PyTorch on {device.type}")
    if precision.name != "fp32" and available["openvino"]:
        return Backend("openvino", f"auto: OpenVINO runs {precision.name} on the CPU")
    if precision.name == "fp32":
        for name in ("onnxruntime", "openvino"):
            if available[name]:
                return Backend(name, f"auto: {name} is the fastest installed fp32 CPU backend")
    return Backend("torch", f"auto: no faster backend installed ({INSTALL_HINT})")


def cached_onnx(net: nn.Module, input_nc: int, progress: bool = True):
    """The net as ONNX (the `transfigure export` graph), converted once and cached."""
    from .download import cache_dir
    from .export import export_generator

    key = tensor_digest(net.state_dict(), type(net).__qualname__, input_nc, torch.__version__)
    path = cache_dir() / "runtime" / f"{key}.onnx"
    if not path.is_file():
        if progress:
            print(f"Converting the generator to ONNX once (cached in {path.parent})...", flush=True)
        export_generator(net, path, "onnx", input_nc=input_nc, overwrite=True)
    return path


class _ConvertedNet:
    """A converted graph standing in for `net` on [-1, 1] CPU tensors. It keeps the net's
    size rules, so `run_padded` pads as for the net (the graph's own padding then has
    nothing to do) and the tiler cuts tiles on the same stride grid."""

    def __init__(self, run, net: nn.Module):
        self._run = run
        self.size_multiple, self.min_size = size_multiple(net), _min_size(net)
        self.accepts_any_size = accepts_any_size(net)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self._run(((x.float() + 1) / 2).cpu().contiguous().numpy())
        return torch.from_numpy(y) * 2 - 1

    def parameters(self):  # the tiler asks where a net runs: the CPU
        return iter(())

    def modules(self):  # no layers of ours to patch
        return iter(())


def _onnxruntime_net(path, net: nn.Module) -> _ConvertedNet:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _ConvertedNet(lambda x: session.run(None, {"image": x})[0], net)


def _openvino_net(path, net: nn.Module, precision: Precision) -> _ConvertedNet:
    import openvino as ov
    from .download import cache_dir

    core = ov.Core()
    hint = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}[precision.name]
    # OpenVINO keeps its compiled blobs there, per its own version.
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                      "PERFORMANCE_HINT": "LATENCY",
                                                      "CACHE_DIR": str(cache_dir() / "runtime" / "openvino")})
    return _ConvertedNet(lambda x: compiled({"image": x})[0], net)


# Peak memory of a whole-image run per pixel and per channel of the net's full-size layers:
# the published CartoonGAN (64 channels) peaked at ~700 bytes a pixel (README, tiling table).
BYTES_PER_PIXEL_CHANNEL = 12
GIB = 2 ** 30


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a run on `device` (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def full_size_channels(net: nn.Module) -> int:
    """The channels of the net's first convolution: the width of its full-resolution layers."""
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first.out_channels if first is not None else 64


class GeneratorRunner:
    """Runs a generator on [-1, 1] image tensors ([N, C, H, W] of any size, on the CPU),
    returning [-1, 1] float32 CPU tensors of the same size; `describe()` says what it
    picked and why. `eval_mode=False` keeps batch norm and dropout in training mode, as
    the official test script does. `announce` prints what it picked; otherwise only a
    slow precision is warned of."""

    def __init__(self, net: nn.Module, options: RunOptions | None = None, input_nc: int = 3,
                 eval_mode: bool = True, progress: bool = True, announce: bool = False):
        o = options or RunOptions()
        self.options = o
        self.device = resolve_device(o.device)
        self.bytes_per_pixel = full_size_channels(net) * BYTES_PER_PIXEL_CHANNEL
        net.train(not eval_mode)
        precision = choose_precision(o.precision, self.device)
        self.backend = choose_backend(o.backend, self.device, precision, net, o.tile)
        if self.backend.name == "onnxruntime" and precision.name != "fp32":
            precision = Precision("fp32", "onnxruntime runs fp32 on the CPU")
        self.precision = precision
        if self.backend.name == "torch":
            self.channels_last = o.channels_last and self.device.type == "cpu"
            self.net = net.to(self.device)
            if self.channels_last:
                self.net = self.net.to(memory_format=torch.channels_last)
            if o.compile != "off":  # in place; image sizes vary, so shapes are compiled dynamic
                self.net.compile(backend=o.compile, dynamic=True)
        else:
            self.channels_last = False
            try:  # exported in the default memory order: a channels_last net exports a broken graph
                path = cached_onnx(net.cpu().to(memory_format=torch.contiguous_format), input_nc, progress)
                self.net = _openvino_net(path, net, precision) if self.backend.name == "openvino" else \
                    _onnxruntime_net(path, net)
            except Exception as e:  # noqa: BLE001 - auto never fails where PyTorch runs; asked for, it does
                if o.backend != "auto":
                    raise
                self.backend = Backend("torch", f"auto: the {self.backend.name} backend failed ({e})")
                self.net = net.to(self.device)
        report_choice(self.describe(), self.precision, announce)

    def describe(self) -> str:
        return (f"Running on {self.device.type} with the {self.backend.name} backend ({self.backend.reason}), "
                f"{self.precision.describe()}")

    def check_memory(self, x: torch.Tensor) -> None:
        """Refuse, before allocating, a whole-image run that cannot fit, with the numbers and
        what to do instead."""
        if self.options.tile:
            return
        n, _, h, w = x.shape
        need, free = n * h * w * self.bytes_per_pixel, available_memory(self.device)
        if free is None or need <= free:
            return
        long_side = int(math.sqrt(free / self.bytes_per_pixel / n * max(h, w) / min(h, w)))
        raise UsageError(f"translating a {w}x{h} image whole needs about {need / GIB:.1f} GiB and {free / GIB:.1f} "
                         f"GiB is free on {self.device.type}: use --tile 512 (memory then stays about the same at "
                         f"any size) or --max_size {long_side // 64 * 64}")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_memory(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.precision.autocast(self.device) if self.backend.name == "torch" else contextlib.nullcontext()
        with autocast:
            y = run_tiled(self.net, x, self.options.tile, self.options.tile_overlap).float().cpu()
        if not torch.isfinite(y).all():
            hint = "; try --precision fp32" if self.precision.name != "fp32" else ""
            raise SetupError(f"the generator gave NaN or Inf values for a {x.shape[-1]}x{x.shape[-2]} image: its "
                             f"weights or this precision ({self.precision.name}) cannot be used{hint}")
        return y

