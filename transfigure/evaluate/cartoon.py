"""How close generated cartoons are to ground-truth cartoons of the same
scenes (the synthetic photo -> cartoon task has them for its test split).

Edge F1: Canny edges (the thresholds of CartoonGAN's edge smoothing, 100 and
200) of both images, matched with a tolerance of `tolerance` pixels as in
boundary F-measures: a generated edge pixel is correct when a true edge lies
within the tolerance, a true edge pixel is found when a generated edge lies
within it. Counts are summed over the whole set before precision and recall.

Color error: mean CIE76 color difference (Euclidean distance in Lab, ~2.3
is a just noticeable difference) over all pixels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.color import rgb_to_lab
from .quality import image_pairs


def edge_map(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> bool HxW Canny(100, 200) edges of its grayscale."""
    return cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 100, 200) > 0


def edge_counts(pred: np.ndarray, true: np.ndarray, tolerance: int = 1) -> np.ndarray:
    """[matched predicted, predicted, matched true, true] edge pixel counts of one image pair."""
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    pe, te = edge_map(pred), edge_map(true)
    near_true = cv2.dilate(te.astype(np.uint8), kernel) > 0
    near_pred = cv2.dilate(pe.astype(np.uint8), kernel) > 0
    return np.array([(pe & near_true).sum(), pe.sum(), (te & near_pred).sum(), te.sum()], np.int64)


def f1_from_counts(counts: np.ndarray) -> dict:
    matched_pred, pred, matched_true, true = (int(c) for c in counts)
    precision = matched_pred / pred if pred else 0.0
    recall = matched_true / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"edge_f1": f1, "edge_precision": precision, "edge_recall": recall}


def color_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean CIE76 delta E between two uint8 HxWx3 RGB images."""
    lab = [rgb_to_lab(torch.from_numpy(np.array(a, np.float64)).permute(2, 0, 1) / 255) for a in (pred, true)]
    return float((lab[0] - lab[1]).pow(2).sum(0).sqrt().mean())


def score_cartoon_folders(pred_dir: str | Path, true_dir: str | Path, tolerance: int = 1) -> dict:
    """Edge F1 (with precision and recall) and mean color error of every image in
    `pred_dir` against the file of the same stem in `true_dir`."""
    counts, errors = np.zeros(4, np.int64), []
    for pred, true in image_pairs(pred_dir, true_dir):
        counts += edge_counts(pred, true, tolerance)
        errors.append(color_error(pred, true))
    return {**f1_from_counts(counts), "color_error": float(np.mean(errors)), "images": len(errors)}
