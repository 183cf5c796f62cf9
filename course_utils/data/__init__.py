"""Datasets: the bundled SynthObjects-10, CIFAR-10 / STL-10 / ImageFolder, wrappers and loaders."""
from .bundled import data_root, load_synthetic, load_synthetic_videos
from .catalog import class_names, load_images
from .datasets import (DEFAULT_MEAN, DEFAULT_STD, PairDataset, TensorImageDataset, denormalize,
                       make_loader, normalize, to_float)
from .synthetic import CLASSES
from .torchvision_sets import download, load_cifar10, load_image_folder, load_stl10

__all__ = [
    "CLASSES", "class_names", "load_images", "DEFAULT_MEAN", "DEFAULT_STD", "PairDataset", "TensorImageDataset", "data_root",
    "denormalize", "download", "load_cifar10", "load_image_folder", "load_stl10", "load_synthetic",
    "load_synthetic_videos", "make_loader", "normalize", "to_float",
]
