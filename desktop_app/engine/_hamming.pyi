"""Types of the compiled Hamming 2-NN (``_hamming.c``); see ``regions._two_nearest``."""

import numpy as np

native: bool  # counts bits with the CPU's own instruction; two_nearest raises if not

def two_nearest(
    query: np.ndarray, candidates: np.ndarray, d0: np.ndarray, d1: np.ndarray, nearest: np.ndarray
) -> None: ...
