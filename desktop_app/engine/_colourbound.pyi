"""Types of the compiled colour-layout bound (``_colourbound.c``); see ``colour._Bound``."""

import numpy as np

def may_match(
    integral: np.ndarray, sums: np.ndarray, xs: np.ndarray, ys: np.ndarray, threshold: float
) -> bool: ...
