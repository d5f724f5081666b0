"""Numbers for the page: NumPy arrays and scalars as JSON-ready lists, rounded to a fixed
number of significant digits (the page is for eyes, and the file stays small), with
NaN and infinities as None (JSON has no spelling for them; the page draws a gap)."""
import math

import numpy as np

from ... import backend
from ...tensor import Tensor

DIGITS = 6


def plain(value, digits=DIGITS):
    """``value`` (a Tensor, an array, a number, or a list/tuple/dict of them) as JSON-ready
    Python: lists of floats rounded to ``digits`` significant digits, None for NaN or +-inf."""
    if isinstance(value, Tensor):
        value = value.numpy()
    elif hasattr(value, "__cuda_array_interface__"):
        value = backend.to_device(value, "cpu")
    if isinstance(value, dict):
        return {str(k): plain(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, digits) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return _rounded(np.asarray(value, dtype=np.float64), digits)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round_number(float(value), digits)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"plain: cannot put a {type(value).__name__} on the page, expected numbers, arrays, "
                    "strings, or lists and dicts of them")


def round_number(x, digits=DIGITS):
    """``x`` to ``digits`` significant digits; None when it is NaN or infinite."""
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _rounded(array, digits):
    if array.ndim == 0:
        return round_number(float(array), digits)
    if array.ndim == 1:
        return [round_number(v, digits) for v in array.tolist()]
    return [_rounded(row, digits) for row in array]
