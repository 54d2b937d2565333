"""Fine-grained attention with parallel transformers (paper Sec. 4.3): the synthetic proxy data, its models, the experiment and its report."""
