"""Image loading, preprocessing and folder datasets."""
from .datasets import AlignedDataset, SingleDataset, UnalignedDataset, create_dataset
from .images import (IMG_EXTENSIONS, DatasetFolderError, ImageLoadError, image_to_tensor, list_images,
                     load_image, save_image, tensor_to_image)
from .transforms import apply_transform, get_params, sample_rng, transform

__all__ = ["AlignedDataset", "SingleDataset", "UnalignedDataset", "create_dataset", "IMG_EXTENSIONS",
           "DatasetFolderError", "ImageLoadError", "image_to_tensor", "list_images", "load_image",
           "save_image", "tensor_to_image", "apply_transform", "get_params", "sample_rng", "transform"]
