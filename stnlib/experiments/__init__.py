"""Experiments as named cells in named profiles, run by one command and saved as artifacts the book loads.

    python -m stnlib.experiments list
    python -m stnlib.experiments run table1 --profile full            # every cell, resumable
    python -m stnlib.experiments run table1 --profile smoke --cells RTS-cnn RTS-st-cnn-affine

Beyond one machine: `torchrun --nproc_per_node=4 -m stnlib.experiments run table1 --profile full --cells RTS-st-cnn-tps`
trains one cell data-parallel (DDP; NCCL on GPUs, gloo on CPUs); `--shard I/N` spreads the cells of a table
over N independent processes, e.g. one per GPU:
`for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i python -m stnlib.experiments run table1 --profile full --shard $i/4 & done`.

See :mod:`stnlib.experiments.core` for the artifact layout; each experiment lives in its own module and
registers itself.
"""

from .core import (EXPERIMENTS, Cell, Experiment, Profile, artifact_dir, get_cells, get_experiment, get_profile,
                   load_cell, load_results, register, run, run_cell, train_config)
from . import table1  # noqa: F401  (registers "table1")
from . import addition, colocalisation  # noqa: F401  (register "addition" and "colocalisation")
from . import birds  # noqa: F401  (registers "birds")
from . import rectify  # noqa: F401  (registers "rectify")

__all__ = ["EXPERIMENTS", "Cell", "Experiment", "Profile", "artifact_dir", "get_cells", "get_experiment", "get_profile",
           "load_cell", "load_results", "register", "run", "run_cell", "train_config"]
