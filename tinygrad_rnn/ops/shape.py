"""Ops that move elements without changing them: reshape, transpose, broadcast,
index, concatenate, split. Their backwards move the gradient back."""
from .. import backend
from ..function import Function


def sum_to(x, shape):
    """Sum ``x`` (array or Tensor) down to ``shape``: undo NumPy broadcasting."""
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    y = x.sum(axis=axes, keepdims=True)
    return y.reshape(shape) if lead else y


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = tuple(sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__))
        return g.transpose(inverse), None


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return backend.get_array_module(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return sum_to(g, ctx.in_shape), None


def is_basic_index(index):
    """True for an index of ints, slices, None and Ellipsis only (a view, no repeats)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


class GetItem(Function):
    """``a[index]``; the backward scatters (and for repeated indices, adds) ``g`` back."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.in_shape = a.shape
        ctx.index = index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        return IndexAdd.dispatch(g, ctx.index, ctx.in_shape), None


class IndexAdd(Function):
    """``zeros(shape)`` with ``g`` added at ``index`` (the adjoint of GetItem)."""

    @staticmethod
    def forward(ctx, g, index, shape):
        ctx.index = index
        xp = backend.get_array_module(g)
        out = xp.zeros(shape, dtype=g.dtype)
        if is_basic_index(index):
            out[index] = g
        else:
            backend.index_add(out, index, g)
        return out

    @staticmethod
    def backward(ctx, gg):
        return GetItem.dispatch(gg, ctx.index), None, None


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return backend.get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return Split.dispatch(g, ctx.sizes, ctx.axis)


class Split(Function):
    """Split along ``axis`` into pieces of the given sizes (one output each)."""

    @staticmethod
    def forward(ctx, a, sizes, axis):
        ctx.axis = axis
        lead = (slice(None),) * (axis % a.ndim)
        bounds, start = [], 0
        for n in sizes:
            bounds.append(slice(start, start + n))
            start += n
        return tuple(a[lead + (b,)] for b in bounds)

    @staticmethod
    def backward(ctx, *grads):
        return Concatenate.dispatch(*grads, axis=ctx.axis), None, None


class Stack(Function):
    """Join arrays of one shape along a new ``axis``."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        return backend.get_array_module(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return Unbind.dispatch(g, ctx.axis)


class Unbind(Function):
    """The slices along ``axis``, that axis removed (one output each): a sequence's time steps."""

    @staticmethod
    def forward(ctx, a, axis):
        ctx.axis = axis
        lead = (slice(None),) * axis
        return tuple(a[lead + (i,)] for i in range(a.shape[axis]))

    @staticmethod
    def backward(ctx, *grads):
        return Stack.dispatch(*grads, axis=ctx.axis), None
