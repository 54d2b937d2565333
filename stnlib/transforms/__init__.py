"""Transformation families (grid generators), one file each, selected by name through one registry."""

from .affine import AffineTransform, affine_from_params, affine_grid, affine_matrix, decompose_affine
from .affine3d import Affine3DTransform, affine3d_matrix, rotation3d, rotation3d_angles
from .attention import AttentionTransform, attention_to_affine
from .base import Transform, available_transforms, get_transform, register_transform
from .projective import ProjectiveTransform, projective_matrix
from .tps import TPSTransform

__all__ = [
    "Transform", "available_transforms", "get_transform", "register_transform",
    "AffineTransform", "affine_from_params", "affine_grid", "affine_matrix", "decompose_affine", "AttentionTransform", "attention_to_affine",
    "ProjectiveTransform", "projective_matrix", "TPSTransform", "Affine3DTransform", "affine3d_matrix", "rotation3d",
    "rotation3d_angles",
]
