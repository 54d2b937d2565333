"""stnlib: spatial transformer modules (Jaderberg et al., NIPS 2015) and the helpers the STN Book runs on."""

from .coords import ALIGN_CORNERS, base_grid, normalized_to_pixel, pixel_to_normalized
from .sampler import bilinear_sample, trilinear_sample
from .spatial_transformer import ParallelSpatialTransformers, SpatialTransformer
from .transforms import Transform, available_transforms, get_transform, register_transform

__version__ = "0.1.0"

__all__ = [
    "ALIGN_CORNERS", "base_grid", "normalized_to_pixel", "pixel_to_normalized",
    "bilinear_sample", "trilinear_sample", "SpatialTransformer", "ParallelSpatialTransformers",
    "Transform", "available_transforms", "get_transform", "register_transform", "__version__",
]
