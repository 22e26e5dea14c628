import math

import numpy as np
import pytest
from PIL import Image

from transfigure.evaluate.segmentation import (colors_to_classes, confusion_matrix, format_scores,
                                               score_label_folders, segmentation_scores)

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def test_confusion_matrix_rows_are_ground_truth():
    gt = np.array([0, 0, 1, 2, 255])                         # 255: ignored label
    pred = np.array([0, 1, 1, 0, 2])
    assert confusion_matrix(gt, pred, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert confusion_matrix(gt, pred, 3).dtype == np.int64


def test_scores_hand_made_matrix():
    H = np.array([[50, 10, 0],
                  [5, 30, 5],
                  [0, 10, 40]])
    s = segmentation_scores(H)
    assert s["pixel_acc"] == pytest.approx(120 / 150)        # (50+30+40) / 150 = 0.8
    # rows 60, 40, 50: (50/60 + 30/40 + 40/50) / 3 = (0.8333 + 0.75 + 0.8) / 3
    assert s["class_acc"] == pytest.approx(0.7944444, abs=1e-6)
    # cols 55, 50, 45: IoU = 50/(60+55-50)=0.76923, 30/(40+50-30)=0.5, 40/(50+45-40)=0.72727
    assert s["per_class_iou"] == pytest.approx([0.7692308, 0.5, 0.7272727], abs=1e-6)
    assert s["mean_iou"] == pytest.approx(0.6655012, abs=1e-6)


def test_absent_class_ignored():
    H = np.array([[8, 2, 0],
                  [1, 9, 0],
                  [0, 0, 0]])                                # class 2 in neither gt nor pred
    s = segmentation_scores(H)
    assert math.isnan(s["per_class_iou"][2])
    # IoU 8/(10+9-8)=0.72727, 9/(10+11-9)=0.75 -> mean 0.73864; class acc (0.8+0.9)/2
    assert s["mean_iou"] == pytest.approx(0.7386364, abs=1e-6)
    assert s["class_acc"] == pytest.approx(0.85)
    # A class predicted but absent from gt counts with IoU 0 (but not in class acc).
    s = segmentation_scores([[5, 5], [0, 0]])
    assert s["per_class_iou"] == [pytest.approx(0.5), 0.0] and s["class_acc"] == pytest.approx(0.5)


def test_perfect_prediction():
    gt = np.random.default_rng(0).integers(0, 4, (16, 16))
    s = segmentation_scores(confusion_matrix(gt, gt, 5))    # class 4 absent: ignored
    assert s["pixel_acc"] == s["class_acc"] == s["mean_iou"] == 1.0
    assert format_scores(s) == "pixel acc 1.000  class acc 1.000  mean IoU 1.000"


def test_colors_to_classes_nearest_color():
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 3, (9, 7))
    noisy = np.clip(PALETTE[cls].astype(int) + rng.integers(-60, 61, (9, 7, 3)), 0, 255).astype(np.uint8)
    out = colors_to_classes(noisy, PALETTE)
    assert out.shape == (9, 7) and np.array_equal(out, cls)
    assert colors_to_classes(np.array([[[200, 90, 10], [20, 20, 140]]], np.uint8), PALETTE).tolist() == [[0, 2]]


def _save(path, cls):
    Image.fromarray(PALETTE[cls]).save(path)


def test_score_label_folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    a = np.zeros((4, 4), int); a[2:] = 1                     # top half 0, bottom half 1
    b = np.full((4, 4), 2)
    _save(gt_dir / "a.png", a)
    _save(gt_dir / "b.png", b)
    # Prediction for a at twice the size (NEAREST resize back); b is all wrong in one column.
    _save(pred_dir / "a.png", np.kron(a, np.ones((2, 2), int)))
    pb = b.copy(); pb[:, 0] = 0
    _save(pred_dir / "b.png", pb)
    _save(pred_dir / "extra.png", b)                          # no ground truth: ignored
    s = score_label_folders(pred_dir, gt_dir, PALETTE)
    assert s["n_images"] == 2
    assert s["pixel_acc"] == pytest.approx(28 / 32)          # 16 right in a, 12 of 16 in b
    # IoU: class 0 8/(8+12-8), class 1 8/8, class 2 12/(16+12-12) -> mean (0.6667+1+0.75)/3
    assert s["mean_iou"] == pytest.approx((8 / 12 + 1 + 0.75) / 3)


def test_missing_prediction_named(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for name in ("a", "b"):
        _save(gt_dir / f"{name}.png", np.zeros((4, 4), int))
    _save(pred_dir / "a.png", np.zeros((4, 4), int))
    with pytest.raises(FileNotFoundError, match=r"pred.*b\.png"):
        score_label_folders(pred_dir, gt_dir, PALETTE)


def test_score_synthetic_dataset_with_palette_file(tiny_dataset):
    # Ground truth against itself through the palette.json path: perfect; photos as
    # predictions (an identity mapping) must score far below it.
    s = score_label_folders(tiny_dataset / "testA", tiny_dataset / "testA", tiny_dataset)
    assert s["mean_iou"] == 1.0 and s["n_images"] == 3
    s = score_label_folders(tiny_dataset / "testB", tiny_dataset / "testA", tiny_dataset)
    assert s["mean_iou"] < 0.2
