"""Elementwise ops, each beside its derivative.

Binary ops broadcast as NumPy does; ``sum_to`` folds the gradient back to each
input's shape. Either argument of a binary op may be a Python scalar, which is
a constant (its gradient slot is None).
"""
import math

from .. import backend
from ..function import Function
from ..tensor import Tensor
from .shape import add_tangents, lift, sum_to


def _shape(x):
    return x.shape if hasattr(x, "shape") else ()


def _out_ndim(ctx):
    return ctx._out_arrays[0].ndim


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return a + b

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad
        sa, sb = ctx.shapes
        shape = g.shape
        return ((g if sa == shape else sum_to(g, sa)) if na else None,
                (g if sb == shape else sum_to(g, sb)) if nb else None)

    @staticmethod
    def jvp(ctx, ta, tb):
        n = _out_ndim(ctx)
        return add_tangents(lift(ta, n), lift(tb, n))


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return a - b

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad
        sa, sb = ctx.shapes
        return sum_to(g, sa) if na else None, sum_to(-g, sb) if nb else None

    @staticmethod
    def jvp(ctx, ta, tb):
        n = _out_ndim(ctx)
        return add_tangents(lift(ta, n), None if tb is None else -lift(tb, n))


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        shape = g.shape
        ga = (g * b if a.shape == shape else sum_to(g * b, a.shape)) if na else None
        return ga, (g * a if b.shape == shape else sum_to(g * a, b.shape)) if nb else None

    @staticmethod
    def jvp(ctx, ta, tb):
        """d(a b) = da b + a db."""
        a, b = ctx.saved_tensors
        n = _out_ndim(ctx)
        return add_tangents(None if ta is None else lift(ta, n) * b, None if tb is None else a * lift(tb, n))


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = sum_to(g / b, a.shape) if na else None
        gb = sum_to(-g * a / (b * b), b.shape) if nb else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        """d(a / b) = da / b - a db / b^2."""
        a, b = ctx.saved_tensors
        n = _out_ndim(ctx)
        return add_tangents(None if ta is None else lift(ta, n) / b,
                            None if tb is None else -a * lift(tb, n) / (b * b))


class Remainder(Function):
    """``a % b`` with the sign of b (NumPy's and PyTorch's ``remainder``):
    a - b floor(a / b), so d/da = 1 and d/db = -floor(a / b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return backend.get_array_module(a, b).remainder(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = sum_to(g, _shape(a)) if na else None
        gb = sum_to(-g * ctx.xp.floor(a / b), _shape(b)) if nb else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        """d(a % b) = da - floor(a / b) db."""
        a, b = ctx.saved_tensors
        n = _out_ndim(ctx)
        return add_tangents(lift(ta, n), None if tb is None else -lift(tb, n) * ctx.xp.floor(a / b))


class Pow(Function):
    """``a ** b``: d/da = b a^(b-1), d/db = a^b log a."""

    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = sum_to(_power_grad(ctx.xp, g, a, b), a.shape) if na else None
        gb = sum_to(g * out * _log(ctx.xp, a), b.shape) if nb else None
        return ga, gb

    @staticmethod
    def jvp(ctx, ta, tb):
        """d(a^b) = b a^(b-1) da + a^b log(a) db."""
        a, b, out = ctx.saved_tensors
        n = _out_ndim(ctx)
        return add_tangents(None if ta is None else _power_grad(ctx.xp, lift(ta, n), a, b),
                            None if tb is None else lift(tb, n) * out * _log(ctx.xp, a))


def _power_grad(xp, g, a, b):
    """g b a^(b-1), with the limit 0 where b = 0 (not 0 * inf = NaN at a = 0), as PyTorch."""
    if not hasattr(b, "shape"):
        return g * 0 if b == 0 else g * b * a ** (b - 1)
    return xp.where(b == 0, 0, g * b * a ** (b - 1))


def _log(xp, a):
    return xp.log(a) if hasattr(a, "shape") else math.log(a)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g

    @staticmethod
    def jvp(ctx, t):
        return -t


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = backend.get_array_module(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g * out

    @staticmethod
    def jvp(ctx, t):
        out, = ctx.saved_tensors
        return t * out


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend.get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return g / a

    @staticmethod
    def jvp(ctx, t):
        a, = ctx.saved_tensors
        return t / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = backend.get_array_module(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g / (2 * out)

    @staticmethod
    def jvp(ctx, t):
        """d sqrt(a) = da / (2 sqrt(a))."""
        out, = ctx.saved_tensors
        return t / (2 * out)


class Abs(Function):
    """|a|, with gradient sign(a) (0 at 0, as PyTorch)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend.get_array_module(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return g * ctx.xp.sign(a)

    @staticmethod
    def jvp(ctx, t):
        """d|a| = sign(a) da (0 at a = 0, as the backward)."""
        a, = ctx.saved_tensors
        return t * ctx.xp.sign(a)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = backend.get_array_module(a).tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g * (1 - out * out)

    @staticmethod
    def jvp(ctx, t):
        out, = ctx.saved_tensors
        return t * (1 - out * out)


def sigmoid_array(a):
    """1 / (1 + e^-a), computed as (1 + tanh(a/2)) / 2 so it never overflows (in place on one
    new array)."""
    xp = backend.get_array_module(a)
    if getattr(a, "ndim", 0) == 0:
        return 0.5 * xp.tanh(0.5 * a) + 0.5
    half = backend.constant(0.5, a)
    out = xp.multiply(a, half)
    xp.tanh(out, out=out)
    out *= half
    out += half
    return out


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = sigmoid_array(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g * out * (1 - out)

    @staticmethod
    def jvp(ctx, t):
        out, = ctx.saved_tensors
        return t * (out * (1 - out))


class Relu(Function):
    @staticmethod
    def forward(ctx, a):
        out = backend.get_array_module(a).maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return ctx.xp.where(out > 0, g, 0)

    @staticmethod
    def jvp(ctx, t):
        out, = ctx.saved_tensors
        return ctx.xp.where(out > 0, t, 0)


class Softplus(Function):
    """log(1 + e^a), computed as logaddexp(0, a); its derivative is sigmoid(a)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend.get_array_module(a).logaddexp(0, a)

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return g * (Sigmoid.apply(a) if isinstance(a, Tensor) else sigmoid_array(a))

    @staticmethod
    def jvp(ctx, t):
        """d softplus(a) = sigmoid(a) da."""
        a, = ctx.saved_tensors
        return t * sigmoid_array(a)


class Maximum(Function):
    """Elementwise max; at ties each input gets half the gradient (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return backend.get_array_module(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_grads(ctx, g, lambda a, b: (a > b) | _and(a != a, b == b))     # a NaN wins

    @staticmethod
    def jvp(ctx, ta, tb):
        """The tangent of the larger operand; at ties the mean of both (the backward's half each)."""
        return _select_tangents(ctx, ta, tb, lambda a, b: a > b)


class Minimum(Function):
    """Elementwise min; at ties each input gets half the gradient (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return backend.get_array_module(a, b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        return _select_grads(ctx, g, lambda a, b: (a < b) | _and(a != a, b == b))     # a NaN wins

    @staticmethod
    def jvp(ctx, ta, tb):
        """The tangent of the smaller operand; at ties the mean of both (the backward's half each)."""
        return _select_tangents(ctx, ta, tb, lambda a, b: a < b)


def _and(x, y):
    """x & y, where either may be a Python bool (the comparison of a number operand)."""
    if not hasattr(x, "shape"):
        return y if x else False
    return x & y


def _select_grads(ctx, g, a_wins):
    a, b = ctx.saved_tensors
    na, nb = ctx.needs_input_grad
    xp = ctx.xp
    tie = g * 0.5
    win_a, tied = a_wins(a, b), (a == b) | _and(a != a, b != b)        # two NaNs tie
    ga = sum_to(xp.where(win_a, g, xp.where(tied, tie, 0)), a.shape) if na else None
    gb = sum_to(xp.where(win_a, 0, xp.where(tied, tie, g)), b.shape) if nb else None
    return ga, gb


def _select_tangents(ctx, ta, tb, a_wins):
    """ta where ``a`` wins, tb where ``b`` does, (ta + tb) / 2 at ties; None is zero."""
    a, b = ctx.saved_tensors
    xp = ctx.xp
    n = _out_ndim(ctx)
    ta, tb = lift(ta, n), lift(tb, n)
    tie = 0.5 * add_tangents(ta, tb)
    tied = (a == b) | _and(a != a, b != b)                                 # two NaNs tie
    return xp.where(a_wins(a, b), 0 if ta is None else ta, xp.where(tied, tie, 0 if tb is None else tb))


class Where(Function):
    """``a`` where ``cond`` holds, else ``b``; ``cond`` is a constant bool array."""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = _shape(a), _shape(b)
        return backend.get_array_module(cond).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        cond, = ctx.saved_tensors
        _, na, nb = ctx.needs_input_grad
        sa, sb = ctx.shapes
        xp = ctx.xp
        ga = sum_to(xp.where(cond, g, 0), sa) if na else None
        gb = sum_to(xp.where(cond, 0, g), sb) if nb else None
        return None, ga, gb

    @staticmethod
    def jvp(ctx, _, ta, tb):
        cond, = ctx.saved_tensors
        n = _out_ndim(ctx)
        ta, tb = lift(ta, n), lift(tb, n)
        return ctx.xp.where(cond, 0 if ta is None else ta, 0 if tb is None else tb)


class Clip(Function):
    """Clamp to [lo, hi] (either may be None); the gradient passes where lo <= a <= hi."""

    @staticmethod
    def forward(ctx, a, lo, hi):
        ctx.save_for_backward(a)
        ctx.lo, ctx.hi = lo, hi
        return backend.get_array_module(a).clip(a, lo, hi)

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        inside = g
        if ctx.lo is not None:
            inside = ctx.xp.where(a >= ctx.lo, inside, 0)
        if ctx.hi is not None:
            inside = ctx.xp.where(a <= ctx.hi, inside, 0)
        return inside, None, None

    @staticmethod
    def jvp(ctx, t, *_):
        """da where lo <= a <= hi, else 0 (the bounds included, as the backward)."""
        a, = ctx.saved_tensors
        inside = t
        if ctx.lo is not None:
            inside = ctx.xp.where(a >= ctx.lo, inside, 0)
        if ctx.hi is not None:
            inside = ctx.xp.where(a <= ctx.hi, inside, 0)
        return inside


class Cast(Function):
    """Change the float dtype; the gradient goes back in the input's dtype."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.in_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.in_dtype), None

    @staticmethod
    def jvp(ctx, t, _):
        """The tangent cast to the output's dtype."""
        return t.astype(ctx._out_arrays[0].dtype)


class ToDevice(Function):
    """Copy to another device; the gradient is copied back."""

    @staticmethod
    def forward(ctx, a, device):
        ctx.in_device = backend.device_of(a)
        return backend.to_device(a, device)

    @staticmethod
    def backward(ctx, g):
        return ToDevice.dispatch(g, ctx.in_device), None

    @staticmethod
    def jvp(ctx, t, _):
        """The tangent copied to the output's device."""
        return backend.to_device(t, backend.device_of(ctx._out_arrays[0]))
