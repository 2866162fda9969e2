"""Napari-agnostic data: image stacks, point annotations, readers, transforms, synthetic data."""

from .images import ImageStack, image_to_tensor
from .points import PointAnnotations

__all__ = ["ImageStack", "PointAnnotations", "image_to_tensor"]
