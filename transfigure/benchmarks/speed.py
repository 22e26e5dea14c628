"""`transfigure benchmark speed`: how fast each way of running trains and
translates on this machine. Every mode runs in its own process (so one mode's
caches, threads and memory do not colour the next), on the same data, after
warm-up; the table gives seconds per iteration or per image, the process's
peak memory, the ratio to fp32 eager PyTorch and, for translation, the PSNR of
the output against fp32 eager PyTorch's."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write_text
from ..devices import NATIVE_BF16_FLAGS, cpu_flags, cpu_name, resolve_device
from ..errors import SetupError, UsageError
from .runs import log

MODELS = {  # the papers' settings for one training iteration
    "cycle_gan": {"model": "cycle_gan", "netG": "resnet_9blocks", "batch_size": 1},
    "pix2pix": {"model": "pix2pix", "netG": "unet_256", "dataset_mode": "aligned", "batch_size": 1},
    "cartoongan": {"model": "cartoongan", "content_weights": "random", "batch_size": 1},
}
BASELINE = "torch fp32"
# Mode name -> what differs from fp32 eager PyTorch.
TRAIN_MODES = {
    "torch fp32": {"precision": "fp32"},
    "torch fp32 channels_last": {"precision": "fp32", "channels_last": True},
    "torch bf16": {"precision": "bf16"},
    "torch fp16": {"precision": "fp16"},
    "torch fp32 compiled": {"precision": "fp32", "compile": "inductor"},
    "auto": {"precision": "auto"},
}
TRANSLATE_MODES = {
    "torch fp32": {"backend": "torch", "precision": "fp32", "channels_last": False},
    "torch fp32 channels_last": {"backend": "torch", "precision": "fp32", "channels_last": True},
    "torch bf16": {"backend": "torch", "precision": "bf16"},
    "torch fp32 compiled": {"backend": "torch", "precision": "fp32", "compile": "inductor"},
    "onnxruntime fp32": {"backend": "onnxruntime", "precision": "fp32"},
    "openvino fp32": {"backend": "openvino", "precision": "fp32"},
    "openvino bf16": {"backend": "openvino", "precision": "bf16"},
    "auto": {"backend": "auto", "precision": "auto"},
}
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def machine(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"device": torch.cuda.get_device_name(device), "flags": []}
    return {"device": cpu_name(), "flags": [f for f in RELEVANT_FLAGS if f in cpu_flags()],
            "threads": torch.get_num_threads()}


def default_modes(device: torch.device, modes: dict) -> list[str]:
    """Every mode this hardware runs natively: bf16 only where it is native (emulated
    bf16 takes tens of times longer), fp16 only on CUDA, converted backends on the CPU;
    compiled modes only when asked for (compiling takes minutes on a CPU)."""
    native_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else \
        any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)
    keep = []
    for name, mode in modes.items():
        if mode.get("precision") == "bf16" and not native_bf16:
            continue
        if mode.get("precision") == "fp16" and device.type != "cuda":
            continue
        if mode.get("backend") in ("onnxruntime", "openvino") and device.type != "cpu":
            continue
        if mode.get("compile"):
            continue
        keep.append(name)
    return keep


# --- the child processes ------------------------------------------------------
def _train_worker(spec: dict) -> dict:
    from ..config import make_options
    from .runs import seconds_per_iteration

    from ..devices import choose_precision

    opt = make_options(spec["options"])
    seconds = seconds_per_iteration(opt, warmup=spec["warmup"], steps=spec["steps"])
    return {"seconds": seconds, "precision": choose_precision(opt.precision, resolve_device(opt.device)).name}


def _translate_worker(spec: dict) -> dict:
    from PIL import Image

    from ..cartoonize import load_style
    from ..data.images import image_to_tensor
    from ..runner import GeneratorRunner, RunOptions

    net = load_style(spec["style"], weights=spec["weights"], progress=False)
    runner = GeneratorRunner(net, RunOptions(device=spec["device"], **spec["mode"]), progress=False)
    x = image_to_tensor(Image.open(spec["photo"]).convert("RGB"))[[2, 1, 0]].unsqueeze(0)  # the styles take BGR
    for _ in range(spec["warmup"]):
        runner(x)
    started = time.perf_counter()
    for _ in range(spec["steps"]):
        y = runner(x)
    seconds = (time.perf_counter() - started) / spec["steps"]
    np.save(spec["output"], y[0].numpy())
    return {"seconds": seconds, "backend": runner.backend.name, "precision": runner.precision.name}


def _worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    device = resolve_device(spec["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = (_train_worker if spec["kind"] == "train" else _translate_worker)(spec)
    if device.type == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    Path(spec["result"]).write_text(json.dumps(result))


def _run_child(spec: dict, folder: Path) -> dict:
    """One mode in its own process; its result and its peak resident memory."""
    spec_path = folder / f"{spec['id']}.spec.json"
    spec["result"] = str(folder / f"{spec['id']}.result.json")
    spec_path.write_text(json.dumps(spec))
    child = subprocess.Popen([sys.executable, "-m", "transfigure.benchmarks.speed", str(spec_path)])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SetupError(f"the {spec['kind']} mode {spec['id']!r} failed (exit status "
                         f"{os.waitstatus_to_exitcode(status)}); its error is printed above")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024  # KiB on Linux
    return result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two [-1, 1] images, in dB (a range of 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 4
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# --- the parent -----------------------------------------------------------------
def run_speed(out: str | Path, model: str = "cycle_gan", size: int = 256, photo: str | None = None,
              style: str = "hayao", weights: str | None = None, translate_size: tuple[int, int] = (1024, 768),
              train_modes: list[str] | None = None, translate_modes: list[str] | None = None,
              warmup: int = 1, steps: int = 3, device: str = "auto") -> dict:
    """Time every mode (each list None: `default_modes`; [] skips that part) and write
    OUT/table.md and OUT/results.json."""
    from ..data.synthetic import make_labels2photo, make_photo2cartoon
    from .tiling import make_photo

    if model not in MODELS:
        raise UsageError(f"--model {model!r}: choose one of {', '.join(MODELS)}")
    torch_device = resolve_device(device)
    train_modes = default_modes(torch_device, TRAIN_MODES) if train_modes is None else train_modes
    translate_modes = default_modes(torch_device, TRANSLATE_MODES) if translate_modes is None else translate_modes
    for names, known in ((train_modes, TRAIN_MODES), (translate_modes, TRANSLATE_MODES)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    out = Path(out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    info = machine(torch_device)
    log(f"Benchmarking on {info['device']} ({', '.join(info['flags']) or 'no listed flags'})")
    results = {"machine": info, "model": model, "size": size, "translate_size": list(translate_size),
               "style": style, "warmup": warmup, "steps": steps, "train": {}, "translate": {}}

    if train_modes:
        data = work / f"data_{model}_{size}"
        if not data.is_dir():
            make = make_photo2cartoon if model == "cartoongan" else make_labels2photo
            make(data, size=size, n_train=4, n_test=1, seed=0, progress=False)
        for name in ([BASELINE] if BASELINE not in train_modes else []) + train_modes:
            options = {**MODELS[model], "dataroot": str(data), "load_size": size, "crop_size": size,
                       "device": device, "num_threads": 0, **TRAIN_MODES[name]}
            log(f"training {model} at {size} px: {name}...")
            results["train"][name] = _run_child({"kind": "train", "id": f"train_{name.replace(' ', '_')}",
                                                 "device": device, "options": options, "warmup": warmup,
                                                 "steps": steps}, work)
            log(f"  {results['train'][name]['seconds']:.2f} s per iteration")

    if translate_modes:
        photo_path = make_photo(work / f"photo_{translate_size[0]}x{translate_size[1]}.png", translate_size, photo)
        for name in ([BASELINE] if BASELINE not in translate_modes else []) + translate_modes:
            ident = f"translate_{name.replace(' ', '_')}"
            log(f"translating {translate_size[0]}x{translate_size[1]} with {style}: {name}...")
            results["translate"][name] = _run_child({
                "kind": "translate", "id": ident, "device": device, "mode": TRANSLATE_MODES[name], "style": style,
                "weights": weights, "photo": str(photo_path), "output": str(work / f"{ident}.npy"),
                "warmup": warmup, "steps": max(1, steps - 1)}, work)
            log(f"  {results['translate'][name]['seconds']:.2f} s per image")
        reference = np.load(work / "translate_torch_fp32.npy")
        for name in results["translate"]:
            results["translate"][name]["psnr_db"] = psnr(np.load(work / f"translate_{name.replace(' ', '_')}.npy"),
                                                         reference)

    for part in ("train", "translate"):
        base = results[part].get(BASELINE)
        for r in results[part].values():
            r["speedup"] = base["seconds"] / r["seconds"] if base else None
    atomic_write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
    atomic_write_text(format_table(results), out / "table.md")
    log(f"Wrote {out / 'table.md'} and {out / 'results.json'}")
    return results


def format_table(results: dict) -> str:
    info = results["machine"]
    lines = [f"Machine: {info['device']}; flags: {', '.join(info['flags']) or '-'}"
             + (f"; {info['threads']} threads" if "threads" in info else ""), ""]
    rows = [("train", f"{results['model']} training step, {results['size']} px, batch 1", "s/iteration")] \
        + [("translate", f"{results['style']} on one {results['translate_size'][0]}x{results['translate_size'][1]} "
                         "image", "s/image")]
    lines += ["| work | mode | time | peak memory | vs fp32 eager | PSNR vs fp32 eager |", "|---|---|---|---|---|---|"]
    for part, what, unit in rows:
        for name, r in results[part].items():
            mode = name if name != "auto" else (f"auto ({r['backend']} {r['precision']})" if part == "translate"
                                                else f"auto ({r['precision']})")
            memory = r.get("peak_gpu_bytes", r["peak_rss_bytes"]) / 2 ** 30
            quality = "-" if "psnr_db" not in r else ("identical" if math.isinf(r["psnr_db"]) else
                                                     f"{r['psnr_db']:.1f} dB")
            speed = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
            lines.append(f"| {what} | {mode} | {r['seconds']:.2f} {unit} | {memory:.2f} GiB | {speed} | {quality} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _worker(sys.argv[1])
