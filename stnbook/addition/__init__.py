"""Two-digit MNIST addition (paper A.1, Table 4): the experiment and its chapter's report."""
