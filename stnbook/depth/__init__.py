"""A transformer at any depth (paper Sec. 3.4): the experiment and its report."""
