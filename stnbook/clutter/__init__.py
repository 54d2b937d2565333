"""Cluttered MNIST at 60 x 60 and 100 x 100 against the recurrent attention model: the experiment and its report."""
