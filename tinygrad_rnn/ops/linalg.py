"""Matrix product with NumPy's matmul rules: 1-D operands, batches, broadcast batch dims."""
import numpy as np

from .. import backend
from ..function import Function
from .shape import add_tangents, lift, sum_to


class MatMul(Function):
    """``a @ b``. With 2-D views A (.., n, k) and B (.., k, m) of the operands,
    dA = G B^T and dB = A^T G, each summed back over broadcast batch dims."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            out = backend.get_array_module(a).matmul(a, b)
        except ValueError:
            _check_operands(a, b)
            raise
        ctx.save_for_backward(a, b)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:
            return _product(g, b.swapaxes(0, 1)) if na else None, _product(a.swapaxes(0, 1), g) if nb else None
        a2 = a.reshape((1, a.shape[0])) if a.ndim == 1 else a
        b2 = b.reshape((b.shape[0], 1)) if b.ndim == 1 else b
        if b.ndim == 1:
            g = g.reshape(g.shape + (1,))
        if a.ndim == 1:
            g = g.reshape(g.shape[:-2] + (1,) + g.shape[-1:] if b.ndim == 1 else g.shape[:-1] + (1, g.shape[-1]))
        ga = sum_to(_product(g, b2.swapaxes(-1, -2)), a2.shape).reshape(a.shape) if na else None
        if nb and b2.ndim == 2 and a2.ndim > 2:      # a batch times one matrix: one matmul over all rows
            gb = (a2.reshape((-1, a2.shape[-1])).T @ g.reshape((-1, g.shape[-1]))).reshape(b.shape)
        else:
            gb = sum_to(_product(a2.swapaxes(-1, -2), g), b2.shape).reshape(b.shape) if nb else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        """d(a b) = da b + a db on the 2-D views (1-D operands as a row and a column); each
        tangent is lifted to the rank of the product so K sits in front of its batch dims."""
        a, b = ctx.saved_tensors
        a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
        b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
        n = max(a2.ndim, b2.ndim)
        if ta is not None and a.ndim == 1:
            ta = ta.reshape(ta.shape[:1] + (1,) + a.shape)
        if tb is not None and b.ndim == 1:
            tb = tb.reshape(tb.shape + (1,))
        t = add_tangents(None if ta is None else lift(ta, n) @ b2, None if tb is None else a2 @ lift(tb, n))
        return t.reshape(t.shape[:1] + ctx._out_arrays[0].shape)


def _check_operands(a, b):
    """Raise a clear error for operands that matmul refused."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({k_a} != {k_b})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of shapes {a.shape} and {b.shape} do not broadcast "
                         f"({a.shape[:-2]} vs {b.shape[:-2]})") from None


def _product(x, y):
    """x @ y; an outer product (contraction over a size-1 axis) as a broadcast multiply, which
    NumPy does far faster than a batch of rank-1 matmuls."""
    return x * y if x.shape[-1] == 1 else x @ y
