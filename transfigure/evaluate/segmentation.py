"""Segmentation scores of the pix2pix/CycleGAN papers (FCN-score style).

Confusion matrix H with rows = ground truth, columns = prediction:
pixel acc = trace(H) / sum(H); class acc = mean_c H_cc / row_c;
IoU_c = H_cc / (row_c + col_c - H_cc), averaged over classes. Classes that
never occur are ignored (NaN-mean), as in the reference evaluation scripts.
Generated label images are mapped to classes by nearest palette color.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from ..errors import UsageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def colors_to_classes(image: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Class index (int64 HxW) of the nearest palette color (squared RGB distance) per pixel."""
    img = np.asarray(image)
    if img.ndim == 2:                                        # greyscale: treat as grey RGB
        img = np.repeat(img[..., None], 3, axis=-1)
    pix = img[..., :3].reshape(-1, 3).astype(np.float64)     # drop alpha
    pal = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; |p|^2 is the same for every c. Values are
    # integers below 2^53, so float64 is exact and ties resolve to the first color.
    # Chunks bound memory for large images with many classes.
    out = np.empty(len(pix), np.int64)
    cc = (pal ** 2).sum(1)
    for s in range(0, len(pix), 1 << 18):
        out[s:s + (1 << 18)] = np.argmin(cc - 2 * pix[s:s + (1 << 18)] @ pal.T, axis=1)
    return out.reshape(img.shape[:2])


def confusion_matrix(gt, pred, n_classes: int) -> np.ndarray:
    """[C, C] int64 counts, rows = ground truth; gt pixels outside [0, C) are ignored."""
    gt, pred = np.asarray(gt).ravel(), np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise UsageError(f"gt and pred sizes differ: {gt.size} vs {pred.size}")
    keep = (gt >= 0) & (gt < n_classes)                     # e.g. an "ignore" label like 255
    idx = n_classes * gt[keep].astype(np.int64) + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def _nanmean(a):
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def segmentation_scores(H) -> dict:
    """pixel_acc, class_acc, mean_iou, per_class_iou (NaN where a class is absent) and per_class_acc."""
    H = np.asarray(H, dtype=np.float64)
    diag, rows, cols = np.diag(H), H.sum(1), H.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):    # 0/0 -> NaN marks absent classes
        acc = diag / rows
        iou = diag / (rows + cols - diag)
    total = H.sum()
    return {"pixel_acc": float(diag.sum() / total) if total else float("nan"),
            "class_acc": _nanmean(acc),
            "mean_iou": _nanmean(iou),
            "per_class_iou": [float(v) for v in iou],
            "per_class_acc": [float(v) for v in acc]}


def _images_by_stem(folder: Path) -> dict:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


def score_label_folders(pred_dir, gt_dir, palette_colors, progress=False) -> dict:
    """Score predicted label images against ground-truth label images matched by file stem.

    palette_colors: [C, 3] colors, or a palette.json / dataset folder holding one.
    Predictions of another size are resized (NEAREST) to the ground truth's size.
    Predictions without a ground truth are ignored; a ground truth without a
    prediction is an error. Returns segmentation_scores(...) plus "n_images".
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if isinstance(palette_colors, (str, Path)):
        from transfigure.data.synthetic import load_palette
        palette_colors = load_palette(palette_colors)[1]
    colors = np.asarray(palette_colors).reshape(-1, 3)
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"no such folder: {d}")
    gts, preds = _images_by_stem(gt_dir), _images_by_stem(pred_dir)
    if not gts:
        raise FileNotFoundError(f"no images in {gt_dir}")
    missing = [s for s in gts if s not in preds]
    if missing:
        shown = ", ".join(gts[s].name for s in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{pred_dir} has no prediction for {len(missing)} ground-truth "
                                f"image(s) of {gt_dir}: {shown}{more}")
    items = list(gts.items())
    if progress:
        try:
            from tqdm import tqdm
            items = tqdm(items, desc="segmentation scores", unit="image")
        except ImportError:
            pass
    H = np.zeros((len(colors), len(colors)), np.int64)
    for stem, gt_path in items:
        with Image.open(gt_path) as im:
            gt = np.asarray(im.convert("RGB"))
        with Image.open(preds[stem]) as im:
            im = im.convert("RGB")
            if im.size != (gt.shape[1], gt.shape[0]):
                im = im.resize((gt.shape[1], gt.shape[0]), Image.NEAREST)
            pred = np.asarray(im)
        H += confusion_matrix(colors_to_classes(gt, colors), colors_to_classes(pred, colors), len(colors))
    return {**segmentation_scores(H), "n_images": len(gts)}


def format_scores(scores: dict) -> str:
    """One line, e.g. 'pixel acc 0.912  class acc 0.801  mean IoU 0.713'."""
    f = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
    return (f"pixel acc {f(scores.get('pixel_acc'))}  class acc {f(scores.get('class_acc'))}  "
            f"mean IoU {f(scores.get('mean_iou'))}")
