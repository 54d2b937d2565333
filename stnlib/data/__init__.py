"""Datasets for stnlib: MNIST files, fetched with checksums and loaded as tensors.

Only plain imports of light modules belong here: ``import stnlib.data`` must stay cheap and must not
touch the network or the disk.
"""

from stnlib.data.mnist import MNIST_FILES, MnistDataError, fetch_mnist, load_mnist, read_idx, verify_mnist

__all__ = ["MNIST_FILES", "MnistDataError", "fetch_mnist", "load_mnist", "read_idx", "verify_mnist"]

from stnlib.data.distortions import (DIGIT_SIZE, DISTORTIONS, KINDS, SPLIT_SEEDS, DistortedMNIST, DistortionSpec,
                                     apply_distortion, as_image_batch, derive_seed, digit_box, distortion_matrix,
                                     fixed_test_set, make_addition_batch, ramp_strength, RAMPABLE_KINDS,
                                     sample_distortion, soften_distortion)

__all__ += ["DIGIT_SIZE", "DISTORTIONS", "KINDS", "SPLIT_SEEDS", "DistortedMNIST", "DistortionSpec", "apply_distortion",
            "as_image_batch", "derive_seed", "digit_box", "distortion_matrix", "fixed_test_set", "make_addition_batch",
            "RAMPABLE_KINDS", "ramp_strength", "sample_distortion", "soften_distortion"]

from stnlib.data.streams import STREAMS, StepSource, register_stream, stream, stream_generator

__all__ += ["STREAMS", "StepSource", "register_stream", "stream", "stream_generator"]

from stnlib.data.volumes import (PAPER_SIZE, VolumeMNIST, VolumeSpec, apply_pose, pose_matrix, pose_rotation, sample_pose,
                                 volume_test_set)

__all__ += ["PAPER_SIZE", "VolumeMNIST", "VolumeSpec", "apply_pose", "pose_matrix", "pose_rotation", "sample_pose",
            "volume_test_set"]
