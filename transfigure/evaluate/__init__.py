"""Evaluation: segmentation scores (numpy only); FID/KID and reports live in sibling modules."""
from .segmentation import (colors_to_classes, confusion_matrix, format_scores,
                           score_label_folders, segmentation_scores)

__all__ = ["colors_to_classes", "confusion_matrix", "format_scores",
           "score_label_folders", "segmentation_scores"]
