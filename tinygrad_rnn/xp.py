"""NumPy-named functions on Tensors: the array module of the graph.

Every function here takes Tensors (or numbers and arrays beside them), returns
Tensors and records graph, with NumPy's name and signature. That is what lets
one backward serve both plain and higher-order gradients: ``ctx.xp`` is numpy
(or cupy) in a plain backward and this module under ``create_graph=True``.

The same functions are the public functional API: ``tg.exp(x)``, ``tg.where(c, a, b)``...
Reductions and joins take NumPy's ``axis``; PyTorch's ``dim`` is an alias.
"""
import builtins
import math
import numbers

import numpy as np

from . import backend, ops
from .ops.reduce import normalize_axes
from .tensor import Tensor, as_operand, not_a_tensor


def _axis(axis, dim, default=None):
    if dim is not None:
        if axis is not None and axis != dim:
            raise ValueError(f"got axis={axis} and dim={dim}; pass one of them")
        return dim
    return default if axis is None else axis


def _tensor(x, name):
    if not isinstance(x, Tensor):
        raise not_a_tensor(name, "input", x)
    return x


def _like(args, name):
    for a in args:
        if isinstance(a, Tensor):
            return a
    foreign = next((a for a in args if not isinstance(a, (bool, numbers.Number))), args[0])
    raise not_a_tensor(name, "at least one argument", foreign)


def _unary(fn):
    def f(x):
        return fn.apply(_tensor(x, fn.__name__.lower()))
    f.__name__ = fn.__name__.lower()
    f.__doc__ = fn.__doc__ or f"Elementwise {f.__name__} (differentiable)."
    return f


exp = _unary(ops.Exp)
log = _unary(ops.Log)
sqrt = _unary(ops.Sqrt)
abs = _unary(ops.Abs)
tanh = _unary(ops.Tanh)
sigmoid = _unary(ops.Sigmoid)
relu = _unary(ops.Relu)
softplus = _unary(ops.Softplus)
negative = _unary(ops.Neg)


def _binary_fn(fn, name):
    def f(a, b):
        like = _like((a, b), name)
        return fn.apply(as_operand(a, like, name), as_operand(b, like, name))
    f.__name__ = name
    f.__doc__ = fn.__doc__ or f"Elementwise {name} with NumPy broadcasting (differentiable)."
    return f


add = _binary_fn(ops.Add, "add")
subtract = _binary_fn(ops.Sub, "subtract")
multiply = _binary_fn(ops.Mul, "multiply")
divide = _binary_fn(ops.Div, "divide")
power = _binary_fn(ops.Pow, "power")
maximum = _binary_fn(ops.Maximum, "maximum")
minimum = _binary_fn(ops.Minimum, "minimum")
matmul = _binary_fn(ops.MatMul, "matmul")


def _constant(fn_name, x):
    """``numpy.<fn_name>(x)``, an op without a gradient (see ops.Discrete)."""
    return ops.Discrete.apply(_tensor(x, fn_name), name=fn_name)


def sign(x):
    """-1, 0 or 1 elementwise; a constant (no gradient)."""
    return _constant("sign", x)


def floor(x):
    """The largest integer <= x elementwise; a constant (its derivative is 0 almost everywhere)."""
    return _constant("floor", x)


def isfinite(x):
    """True where x is neither NaN nor infinite; a constant."""
    return _constant("isfinite", x)


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (broadcast together); ``cond`` must be bool."""
    like = _like((cond, a, b), "where")
    cond = as_operand(cond, like, "where")
    if not isinstance(cond, Tensor) or cond.dtype != backend.bool_:
        got = cond.dtype.name if isinstance(cond, Tensor) else type(cond).__name__
        raise TypeError(f"where: cond must be a bool tensor, got {got}")
    return ops.Where.apply(cond, as_operand(a, like, "where"), as_operand(b, like, "where"))


def clip(x, min=None, max=None):
    """Clamp to [min, max]; the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise ValueError("clip: give at least one of min and max")
    if min is not None and max is not None and min > max:
        raise ValueError(f"clip: min ({min}) is greater than max ({max})")
    return ops.Clip.apply(_tensor(x, "clip"), min, max)


# ----- reductions -----
def sum(x, axis=None, keepdims=False, dim=None):
    """Sum over ``axis`` (None: all; int or tuple; negatives allowed)."""
    axes = normalize_axes(_axis(axis, dim), x.ndim, "sum")
    return ops.Sum.apply(_tensor(x, "sum"), axes, keepdims)


def mean(x, axis=None, keepdims=False, dim=None):
    """Mean over ``axis`` (None: all; int or tuple; negatives allowed)."""
    axes = normalize_axes(_axis(axis, dim), _tensor(x, "mean").ndim, "mean")
    count = math.prod(x.shape[a] for a in axes)
    if count == 0:
        raise ValueError(f"mean: no elements to average over axis {axis} of shape {x.shape}")
    return sum(x, axes, keepdims) / count


def max(x, axis=None, keepdims=False, dim=None):
    """Largest value over ``axis``; tied maxima share the gradient equally."""
    axes = normalize_axes(_axis(axis, dim), x.ndim, "max")
    return ops.Max.apply(_tensor(x, "max"), axes, keepdims)


def min(x, axis=None, keepdims=False, dim=None):
    """Smallest value over ``axis``; tied minima share the gradient equally."""
    axes = normalize_axes(_axis(axis, dim), x.ndim, "min")
    return ops.Min.apply(_tensor(x, "min"), axes, keepdims)


def var(x, axis=None, keepdims=False, correction=1, dim=None):
    """Variance over ``axis`` with PyTorch's default ``correction=1`` (unbiased);
    ``correction=0`` gives NumPy's population variance."""
    axes = normalize_axes(_axis(axis, dim), _tensor(x, "var").ndim, "var")
    count = math.prod(x.shape[a] for a in axes)
    if count - correction <= 0:
        raise ValueError(f"var: {count} elements with correction={correction} leave no degrees of freedom")
    centered = x - mean(x, axes, keepdims=True)
    return sum(centered * centered, axes, keepdims) / (count - correction)


# ----- shapes -----
def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(n if type(n) is int else int(n) for n in shape)


def _resolve_shape(shape, size, old_shape):
    """``shape`` with its one allowed -1 filled in; ValueError if the sizes differ."""
    known = math.prod(n for n in shape if n != -1)
    if -1 not in shape and known == size and builtins.min(shape, default=0) >= 0:
        return shape
    if shape.count(-1) == 1 and known > 0 and size % known == 0 and builtins.min(shape) >= -1:
        return tuple(size // known if n == -1 else n for n in shape)
    raise ValueError(f"reshape: cannot reshape {old_shape} ({size} elements) to {shape}")


def reshape(x, *shape):
    """Same elements, new shape (one dim may be -1)."""
    try:
        shape = _resolve_shape(_shape_arg(shape), x.size, x.shape)
    except (TypeError, ValueError):
        _tensor(x, "reshape")      # a torch.Tensor's size is a method: say what was expected instead
        raise
    return x if shape == x.shape else ops.Reshape.apply(x, shape)


def transpose(x, *axes):
    """Permute axes (reversed when none are given), as ``numpy.transpose``."""
    axes = _shape_arg(axes) if axes and axes != (None,) else tuple(range(x.ndim))[::-1]
    if (len(axes) != x.ndim or any(not -x.ndim <= a < x.ndim for a in axes)
            or sorted(a % x.ndim for a in axes) != list(range(x.ndim))):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {x.ndim} dims")
    return ops.Transpose.apply(x, tuple(a % x.ndim for a in axes))


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    axis1, axis2 = (normalize_axes(a, x.ndim, "swapaxes")[0] for a in (axis1, axis2))
    axes = list(range(x.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transpose(x, axes)


def broadcast_to(x, shape):
    """``x`` repeated along new leading dims and size-1 dims to ``shape`` (NumPy broadcasting;
    PyTorch's ``expand``); its gradient is summed back to ``x``'s shape."""
    shape = tuple(shape)
    try:
        np.broadcast_shapes(x.shape, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}") from None
    if np.broadcast_shapes(x.shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    return x if x.shape == shape else ops.BroadcastTo.apply(x, shape)


def squeeze(x, axis=None, dim=None):
    """Drop size-1 dims (all of them, or only ``axis``, which must have size 1)."""
    axis = _axis(axis, dim)
    axes = normalize_axes(axis, x.ndim, "squeeze")
    if axis is None:
        axes = tuple(a for a in axes if x.shape[a] == 1)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, expected 1 (shape {x.shape})")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def expand_dims(x, axis=None, dim=None):
    """Insert a size-1 dim at ``axis`` (PyTorch's unsqueeze)."""
    axis = _axis(axis, dim)
    if not isinstance(axis, int) or not -x.ndim - 1 <= axis <= x.ndim:
        raise ValueError(f"unsqueeze: axis {axis} is out of range for a tensor of {x.ndim} dims")
    axis %= x.ndim + 1
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def _check_join(tensors, axis, name, same_shape):
    if isinstance(tensors, Tensor) or not len(tensors):
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    first = _tensor(tensors[0], name)
    for i, t in enumerate(tensors):
        _tensor(t, name)
        if t.device != first.device:
            raise ValueError(f"{name}: tensor {i} is on {t.device}, tensor 0 on {first.device}")
        if same_shape and t.shape != first.shape:
            raise ValueError(f"{name}: tensor {i} has shape {t.shape}, expected {first.shape} like tensor 0")
    ndim = first.ndim + (1 if same_shape else 0)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for {ndim} dims")
    return axis % ndim


def concatenate(tensors, axis=None, dim=None):
    """Join along an existing axis (default 0); all other dims must match."""
    axis = _check_join(tensors, _axis(axis, dim, 0), "cat", same_shape=False)
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != axis):
            raise ValueError(f"cat: tensor {i} has shape {t.shape}, which does not match {first.shape} "
                             f"outside axis {axis}")
    return ops.Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=None, dim=None):
    """Join along a new axis (default 0); all shapes must be equal."""
    axis = _check_join(tensors, _axis(axis, dim, 0), "stack", same_shape=True)
    return ops.Stack.apply(*tensors, axis=axis)


def unbind(x, axis=None, dim=None):
    """The slices of ``x`` along ``axis``, with that axis removed (one graph node for all)."""
    axis = normalize_axes(_axis(axis, dim, 0), x.ndim, "unbind")[0]
    return list(ops.Unbind.apply(_tensor(x, "unbind"), axis)) if x.shape[axis] > 1 else [squeeze(x, axis)]


def split(x, sections, axis=None, dim=None):
    """Split along ``axis``: ``sections`` is a piece size (the last piece may be
    smaller, as ``torch.split``) or a list of sizes that sum to the axis length."""
    axis = _axis(axis, dim, 0)
    normalize_axes(axis, x.ndim, "split")
    n = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0:
            raise ValueError(f"split: piece size must be positive, got {sections}")
        sizes = [sections] * (n // sections) + ([n % sections] if n % sections else [])
    else:
        sizes = [int(s) for s in sections]
        if builtins.sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not sum to {n}, the length of axis {axis}")
    return list(ops.Split.apply(x, sizes, axis % x.ndim)) if len(sizes) > 1 else [x]


def chunk(x, chunks, axis=None, dim=None):
    """Split into ``chunks`` pieces of ceil(n / chunks) (the last may be smaller)."""
    axis = normalize_axes(_axis(axis, dim, 0), x.ndim, "chunk")[0]
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[axis]
    return split(x, -(-n // chunks) if n else 1, axis)


def zeros_like(x):
    """Zeros of ``x``'s shape, dtype and device; a constant."""
    return Tensor._make(backend.get_array_module(x.data).zeros_like(x.data), False, None, 0)


def ones_like(x):
    """Ones of ``x``'s shape, dtype and device; a constant."""
    return Tensor._make(backend.get_array_module(x.data).ones_like(x.data), False, None, 0)

