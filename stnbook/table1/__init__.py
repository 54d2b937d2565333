"""Table 1 of the paper (distorted MNIST: R, RTS, P, E) and the TC row: the experiment and its chapter's report."""
