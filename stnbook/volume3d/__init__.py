"""The 3D spatial transformer (paper A.3): posed 3D digits, the experiment and its report."""
