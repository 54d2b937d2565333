"""Datasets for stnlib: MNIST files, fetched with checksums and loaded as tensors.

Only plain imports of light modules belong here: ``import stnlib.data`` must stay cheap and must not
touch the network or the disk.
"""

from stnlib.data.mnist import MNIST_FILES, MnistDataError, fetch_mnist, load_mnist, read_idx, verify_mnist

__all__ = ["MNIST_FILES", "MnistDataError", "fetch_mnist", "load_mnist", "read_idx", "verify_mnist"]
