"""Export a generator to ONNX or TorchScript as a self-contained image-to-image model:
float32 NCHW images in [0, 1] of any batch size, height and width in, the same out.
The padding to the network's size multiple happens inside the exported graph."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .nets.common import _min_size, accepts_any_size, size_multiple
from .tempfiles import check_output_folder, temporary_path
from .errors import SetupError, UsageError

__all__ = ["ExportWrapper", "export_generator", "check_export", "FORMATS"]

FORMATS = ("onnx", "torchscript")
# transfigure's own dependencies; missing only where an install left them out.
INSTALL_HINT = "pip install onnx onnxscript onnxruntime openvino"


class ExportWrapper(nn.Module):
    """[0, 1] images of any size -> the generator's output in [0, 1], same size.

    Pads H and W at the bottom and right as `nets.run_padded` does (up to the net's
    minimum size, and to its size multiple unless it accepts any size), reflect
    padding where the image is large enough and replicate otherwise, but with index
    arithmetic on tensor shapes and a gather, so the padding stays symbolic under torch.export, tracing and scripting
    (F.pad's mode cannot depend on the input size in a graph). `bgr=True` feeds
    the net BGR (the published CartoonGAN styles) and returns RGB."""

    def __init__(self, net: nn.Module, bgr: bool = False, multiple: int | None = None,
                 min_size: int | None = None, any_size: bool | None = None):
        super().__init__()
        self.net = net
        self.bgr = bool(bgr)
        # Explicit values for a traced net, which no longer carries the size attributes.
        self.multiple = int(multiple if multiple is not None else size_multiple(net))
        self.min_size = int(min_size if min_size is not None else _min_size(net))
        self.any_size = bool(any_size if any_size is not None else accepts_any_size(net))

    def _target(self, n: int) -> int:
        t = n if self.any_size else (n + self.multiple - 1) // self.multiple * self.multiple
        if torch.jit.is_scripting():
            return max(t, self.min_size)
        # sym_max keeps the size symbolic under torch.export (max() would guard on it).
        return torch.sym_max(t, self.min_size)

    def _indices(self, n: int, total: int, device: torch.device):
        """Source rows for padding a length-n axis to `total` at its end: (reflect indices,
        replicate indices, whether reflect is possible on this axis)."""
        i = torch.arange(total, device=device)
        reflect = torch.where(i > n - 1, 2 * (n - 1) - i, i)
        # Reflect needs the pad < n, as in run_padded; a tensor, not a Python bool, so no guard.
        fits = (i < 2 * n - 1).all()
        return reflect, i.clamp(0, n - 1), fits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1
        if self.bgr:
            x = x.flip(1)
        h, w = x.shape[2], x.shape[3]
        th, tw = self._target(h), self._target(w)
        # Bottom/right only: the net's stride grid stays where an unpadded run puts it.
        rh, ch, fit_h = self._indices(h, th, x.device)
        rw, cw, fit_w = self._indices(w, tw, x.device)
        reflect = fit_h & fit_w  # one mode for both axes, like run_padded
        x = x.index_select(2, torch.where(reflect, rh, ch)).index_select(3, torch.where(reflect, rw, cw))
        # narrow (not slicing) keeps the output's H, W the input's symbols in the ONNX graph.
        y = self.net(x).narrow(2, 0, h).narrow(3, 0, w)
        if self.bgr:
            y = y.flip(1)
        return ((y + 1) / 2).clamp(0, 1)


@contextlib.contextmanager
def _quiet():
    # torch 2.9+ marks TorchScript and the TorchScript-based ONNX exporter deprecated on
    # every call; they still work and are what a TorchScript file needs.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*(Constant folding|instance_norm|training mode).*")
        # Tracing warns at the layers' own size checks; the padding math is scripted, not traced.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _require(*modules: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SetupError(f"{what} needs the {', '.join(missing)} package(s): {INSTALL_HINT}")


def _scripted(wrapper: ExportWrapper, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The wrapper as TorchScript: the net traced at the padded example size (its layers
    are size-agnostic, so the trace is too), the padding logic scripted so that it is
    recomputed from each input's shape (tracing would bake the example's pad amounts)."""
    n, c, h, w = example.shape
    padded = torch.rand(n, c, wrapper._target(h), wrapper._target(w), device=example.device) * 2 - 1
    with torch.no_grad():
        # check_trace=False: the check re-runs the net twice and compares, doubling the time.
        traced = torch.jit.trace(wrapper.net, padded, check_trace=False)
    return torch.jit.script(ExportWrapper(traced, wrapper.bgr, wrapper.multiple, wrapper.min_size, wrapper.any_size))


def _onnx(wrapper: ExportWrapper, example: torch.Tensor, path: str, opset: int | None,
          dynamo: bool | None) -> None:
    names = dict(input_names=["image"], output_names=["translated"])
    first = None
    if dynamo is not False:
        from torch.export import Dim

        dims = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
        try:
            with torch.no_grad(), contextlib.redirect_stdout(None):  # it prints its progress
                torch.onnx.export(wrapper, (example,), path, dynamo=True, dynamic_shapes={"x": dims},
                                  opset_version=opset, external_data=False, verbose=False, **names)
            return
        except Exception as e:  # noqa: BLE001 - any failure: the older exporter may still do
            if dynamo:
                raise
            first = root = e
        # It lacks some ops (e.g. linalg.inv in the colorization model's Lab conversion),
        # which the TorchScript-based exporter constant-folds.
        while root.__cause__ is not None:  # the innermost error names the op
            root = root.__cause__
        reason = (str(root).strip().splitlines() or [""])[0]
        warnings.warn(f"the torch.export-based ONNX exporter failed ({type(root).__name__}: {reason}); "
                      "using the TorchScript-based exporter", RuntimeWarning, stacklevel=3)
    axes = {0: "batch", 2: "height", 3: "width"}
    with _quiet():
        try:
            torch.onnx.export(_scripted(wrapper, example), (example,), path, dynamo=False, opset_version=opset,
                              dynamic_axes={"image": axes, "translated": axes}, **names)
        except Exception as e:
            if first is None:
                raise
            raise SetupError(f"ONNX export failed with both exporters: {type(first).__name__}: "
                               f"{first}; then {type(e).__name__}: {e}") from e


# Suffixes of weights files, which a TorchScript export must not take (translate would
# then read it as weights and refuse it).
WEIGHTS_SUFFIXES = (".pth", ".ckpt", ".safetensors", ".npy")


def check_export_path(out: str | os.PathLike, format: str, overwrite: bool = False,
                      source: str | os.PathLike | None = None) -> None:
    """Refuse, before any work, an --out that is a folder, names the wrong kind of file,
    is the model being exported, or exists without --overwrite."""
    out = Path(out)
    if out.is_dir():
        example = out / ("model.onnx" if format == "onnx" else "model.pt")
        raise UsageError(f"--out {out}: is a folder; give a file name, e.g. {example}")
    if format == "onnx" and out.suffix.lower() != ".onnx":
        raise UsageError(f"--out {out}: an ONNX file must end in .onnx")
    if format == "torchscript" and out.suffix.lower() in (".onnx", *WEIGHTS_SUFFIXES):
        raise UsageError(f"--out {out}: {out.suffix} is for weights or ONNX files; name a TorchScript file .pt")
    if source is not None and out.exists() and out.resolve() == Path(source).resolve():
        raise UsageError(f"--out {out} is the --checkpoint being exported; choose another file")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    check_output_folder(out.parent, "--out")


def export_generator(net: nn.Module, out_path: str | os.PathLike, format: str = "onnx", input_nc: int = 3,
                     bgr: bool = False, example_size: tuple[int, int] = (256, 256), opset: int | None = None,
                     overwrite: bool = False, dynamo: bool | None = None,
                     verify: Callable[[Path], object] | None = None) -> Path:
    """Write `net` wrapped in `ExportWrapper` (any-size [0, 1] images in and out) to
    `out_path` as ONNX (input "image", output "translated", dynamic batch, height and
    width) or TorchScript (load with torch.jit.load). The file appears whole or not at
    all: written beside the target under a temporary name, then renamed. The net is
    exported in eval mode and left in the mode it was in.

    ONNX uses the torch.export-based exporter (`dynamo=True`; needs onnxscript), falling
    back with a RuntimeWarning to the TorchScript-based one when it fails (`dynamo=None`,
    the default); `dynamo=False` uses only the latter: 5-10x faster to export, deprecated
    by PyTorch, same outputs. `verify(path)` runs on the written file before it is renamed
    into place, so an export that fails it replaces nothing."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if bgr and input_nc != 3:
        raise UsageError(f"bgr=True swaps the channels of RGB input; this model takes {input_nc} channel(s)")
    if min(example_size) < 2:  # torch.export specialises size-1 dims to constants
        raise UsageError(f"example_size {tuple(example_size)}: height and width must be >= 2")
    out = Path(out_path)
    check_export_path(out, format, overwrite)
    if format == "onnx":
        _require("onnx", *(["onnxscript"] if dynamo is not False else []), what="ONNX export")
    out.parent.mkdir(parents=True, exist_ok=True)

    example = torch.rand(1, input_nc, *example_size, generator=torch.Generator().manual_seed(0))
    param = next(net.parameters(), None)
    example = example.to(param.device) if param is not None else example
    was_training = net.training
    net.eval()
    tmp = str(temporary_path(out))
    try:
        # Made first, with the default mode (mkstemp's 0600 would stick to the exported file): an
        # unwritable folder fails here, in Python's words with the path, not the exporter's.
        open(tmp, "xb").close()
        wrapper = ExportWrapper(net, bgr=bgr).eval()
        if format == "onnx":
            _onnx(wrapper, example, tmp, opset, dynamo)
        else:
            with _quiet():
                _scripted(wrapper, example).save(tmp)
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, out)
    finally:
        net.train(was_training)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # only still there when the export failed
    return out


def check_export(path: str | os.PathLike, reference: nn.Module,
                 sizes: Sequence[tuple[int, int]] = ((64, 96), (70, 50)), input_nc: int = 3, batch: int = 1,
                 format: str | None = None, seed: int = 0) -> float:
    """Largest |exported - reference| over random [0, 1] inputs of each (H, W) in `sizes`,
    with the exported file run by onnxruntime (ONNX) or torch.jit.load (TorchScript).
    `reference` is the eager `ExportWrapper`; an output of the wrong shape raises."""
    path = Path(path)
    format = format or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    if format == "onnx":
        _require("onnxruntime", what="Checking an ONNX export")
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])  # noqa: E731
    else:
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu")
        run = module
    param = next(reference.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for h, w in sizes:
            x = torch.rand(batch, input_nc, h, w, generator=gen)
            got, want = run(x).float(), reference(x.to(device)).float().cpu()
            if not (torch.isfinite(got).all() and torch.isfinite(want).all()):
                raise SetupError(f"the model gives NaN or Inf for a {h}x{w} input; its weights are broken (a "
                                 "diverged run?) and an export of it is not usable")
            if got.shape != want.shape:
                raise SetupError(f"the exported model's output shape is {tuple(got.shape)} for a {h}x{w} input, "
                                 f"expected {tuple(want.shape)}")
            worst = max(worst, (got - want).abs().max().item())
    return worst
