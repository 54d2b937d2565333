"""Does a trained transformer undo the rotation? The rectify experiment (R and R180) and its report."""
