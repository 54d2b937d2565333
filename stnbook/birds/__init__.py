"""Fine-grained attention with parallel transformers (paper Sec. 4.3): the synthetic proxy data, its models, the experiment and its report;
the same cells on the real CUB-200-2011 where it is present (``cub.py``, experiment "birds-cub")."""
