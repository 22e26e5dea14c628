"""`transfigure evaluate run`: translate a run's test split and measure what applies.

For every direction the run translates (CycleGAN: both; pix2pix and
CartoonGAN: the one it was trained for):
  - FID and KID against the target domain (style) and against the source
    domain (content kept), as the CartoonGAN study reports both;
  - segmentation scores when the target images are label maps (a palette is
    given, or the synthetic dataset's palette.json says which side holds labels)
    and ground-truth pairs exist;
  - PSNR and SSIM when ground-truth pairs exist (aligned datasets, or
    unaligned test folders whose files share names, as the synthetic tasks').

Writes RESULTS/NAME/metrics.json and the translated images under
RESULTS/NAME/<phase>_<epoch>/<direction>/images/. A rerun reuses translated
images while the checkpoint file has not changed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .. import checkpoint as ckpt
from ..data.images import list_images, save_image
from ..methods import method_of
from ..runner import RunOptions
from ..translate import load_generator, translate_files
from .fid import INCEPTION, FolderFeatures, distances, metric_label
from .quality import score_pairs
from ..errors import UsageError

METRICS_FILE = "metrics.json"
# Metric name -> whether larger is better; the report marks the best run by it.
HIGHER_IS_BETTER = {"fid_target": False, "kid_target": False, "fid_source": False, "kid_source": False,
                    "psnr": True, "ssim": True, "pixel_acc": True, "class_acc": True, "mean_iou": True}


def run_options(name: str, checkpoints_dir: str | Path) -> dict:
    return ckpt.read_options(Path(checkpoints_dir) / name, required=True)


def _file_key(path: Path) -> dict:
    st = path.stat()
    return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _split_aligned(folder: Path, out: Path) -> tuple[Path, Path]:
    """Halves of an aligned folder's A|B images as two folders (written once, reused)."""
    from ..data.datasets import split_pair

    files = list_images(folder, expected="A|B images side by side")
    a_dir, b_dir = out / "real_A", out / "real_B"
    for f in files:
        if (a_dir / f"{f.stem}.png").is_file() and (b_dir / f"{f.stem}.png").is_file():
            continue
        a, b = split_pair(f)
        save_image(a, a_dir / f"{f.stem}.png")
        save_image(b, b_dir / f"{f.stem}.png")
    return a_dir, b_dir


def _domains(opt: dict, dataroot: Path, phase: str, work: Path) -> tuple[Path, Path, bool]:
    """Folders of the dataset's A and B images for `phase`, and whether they are pairs."""
    mode = opt.get("dataset_mode")
    if mode == "aligned":
        a, b = _split_aligned(dataroot / phase, work)
        return a, b, True
    if mode == "unaligned":
        a, b = dataroot / f"{phase}A", dataroot / f"{phase}B"
        names_a = {p.stem for p in list_images(a, expected=f"the {phase} images of domain A")}
        names_b = {p.stem for p in list_images(b, expected=f"the {phase} images of domain B")}
        return a, b, names_a == names_b
    raise UsageError(f"evaluate run supports unaligned and aligned datasets; this run used --dataset_mode {mode}")


def _label_side(dataroot: Path, palette: str | None, labels_domain: str | None):
    """(colors, 'A' or 'B') when one domain holds label maps, else (None, None)."""
    from ..data.synthetic import PALETTE_FILE, load_palette

    source = palette or (dataroot / PALETTE_FILE if (dataroot / PALETTE_FILE).is_file() else None)
    if source is None:
        return None, None
    _, colors = load_palette(source)
    if labels_domain is None:
        meta_path = Path(source) / PALETTE_FILE if Path(source).is_dir() else Path(source)
        meta = json.loads(meta_path.read_text())
        labels_domain = next((d for d in ("A", "B") if meta.get(d) == "labels"), None)
    return (colors, labels_domain) if labels_domain else (None, None)


def _translate_cached(name, checkpoints_dir, epoch, direction, source, out, eval_mode, device, progress) -> Path:
    """Translated images of `source` in out/images, reused while the checkpoint and inputs are unchanged."""
    ckpt_file = ckpt.run_checkpoint(Path(checkpoints_dir) / name, epoch)
    inputs = list_images(source)
    key = {"checkpoint": _file_key(ckpt_file), "direction": direction, "eval_mode": eval_mode,
           "inputs": [p.name for p in inputs]}
    images, record = out / "images", out / "translation.json"
    if record.is_file() and json.loads(record.read_text()) == key and \
            len(list_images(images)) == len(inputs):
        return images
    generator = load_generator(name=name, checkpoints_dir=str(checkpoints_dir), epoch=epoch, direction=direction)
    record.unlink(missing_ok=True)
    translate_files(generator, inputs, images, RunOptions.reference(device or "auto"),
                    overwrite=True, progress=progress, eval_mode=eval_mode)
    ckpt.atomic_write_text(json.dumps(key, indent=2) + "\n", record)
    return images


def evaluate_run(name: str, checkpoints_dir: str | Path = "checkpoints", results_dir: str | Path = "results",
                 phase: str = "test", epoch: str = "latest", dataroot: str | None = None, palette: str | None = None,
                 labels_domain: str | None = None, extractor: str = INCEPTION, weights_path: str | None = None,
                 kid: bool = True, eval_mode: bool = True, device=None, progress: bool = True) -> dict:
    """Translate the run's `phase` split and write RESULTS/NAME/metrics.json; returns its content."""
    started = time.perf_counter()
    opt = run_options(name, checkpoints_dir)
    root = Path(dataroot or opt.get("dataroot", ""))
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} of run {name} not found; pass --dataroot")
    work = Path(results_dir) / name / f"{phase}_{epoch}"
    folder_a, folder_b, paired = _domains(opt, root, phase, work)
    colors, label_domain = _label_side(root, palette, labels_domain)
    trained = opt.get("direction", "AtoB")
    directions = [trained] if method_of(opt).single_generator() else ["AtoB", "BtoA"]

    features = FolderFeatures(extractor, weights_path, device=device, progress=progress)
    results, missing = {}, {}
    for d in directions:
        source, target = (folder_a, folder_b) if d == "AtoB" else (folder_b, folder_a)
        target_domain = d[-1]
        images = _translate_cached(name, checkpoints_dir, epoch, d, source, work / d, eval_mode, device, progress)
        m = {"images": len(list_images(images)), "folder": str(images)}
        fake = features(images)
        for side, real in (("target", target), ("source", source)):
            scores = distances(features(real, cache=True, keep=True), fake, extractor, kid, (real, images))
            m[f"fid_{side}"] = scores["fid"]
            if kid:
                m[f"kid_{side}"] = scores["kid_mean"]
        if paired:
            m.update({k: v for k, v in score_pairs(images, target).items() if k != "pairs"})
        else:
            missing[f"{d} psnr/ssim"] = "no ground-truth pairs (test files of A and B do not share names)"
        if colors is not None and target_domain == label_domain and paired:
            from .segmentation import score_label_folders
            seg = score_label_folders(images, target, colors)
            m.update({k: seg[k] for k in ("pixel_acc", "class_acc", "mean_iou")})
        elif colors is not None and target_domain != label_domain:
            missing[f"{d} segmentation"] = "outputs are photos: an FCN score needs a segmenter (evaluate segmentation)"
        results[d] = m

    metrics = {"run": name, "phase": phase, "epoch": epoch, "model": opt.get("model"),
               "checkpoint": str(ckpt.run_checkpoint(Path(checkpoints_dir) / name, epoch)),
               "extractor": extractor, "fid_label": metric_label(extractor),
               "directions": results, "missing": missing,
               "evaluated_s": round(time.perf_counter() - started, 1)}
    out = Path(results_dir) / name / METRICS_FILE
    ckpt.atomic_write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n", out)
    return metrics


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def format_metrics(metrics: dict) -> str:
    lines = [f"{metrics['run']} ({metrics['phase']}, epoch {metrics['epoch']}; FID/KID: {metrics['fid_label']})"]
    for d, m in metrics["directions"].items():
        values = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)) and k != "images")
        lines.append(f"  {d} ({m['images']} images): {values}")
    for what, why in metrics["missing"].items():
        lines.append(f"  {what}: — ({why})")
    return "\n".join(lines)
