"""Ops that move elements without changing them: reshape, transpose, broadcast,
index, concatenate, split. Their backwards move the gradient back."""
import functools

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


# Forward mode (see tinygrad_rnn.study.forward_mode): a tangent is an array (K, *shape),
# K directions at once, or None for zero. An op's ``jvp(ctx, *tangents)`` sits beside its backward.

def lift(t, ndim):
    """The tangent ``t`` (K, *shape) with size-1 dims inserted after K up to 1 + ``ndim`` dims,
    so that K lines up with the K of an output tangent (K, *out) under NumPy broadcasting
    (a (K, 3) tangent beside a (2, 3) operand becomes (K, 1, 3)). None stays None."""
    if t is None or t.ndim > ndim:
        return t
    return t.reshape(t.shape[:1] + (1,) * (ndim + 1 - t.ndim) + t.shape[1:])


def add_tangents(*tangents):
    """The sum of the tangents that are not None (None is zero); None if all are."""
    total = None
    for t in tangents:
        if t is not None:
            total = t if total is None else total + t
    return total


def zero_filled(tangents, shapes, xp):
    """The tangents with each None replaced by zeros (K, *shape); K and dtype from the others."""
    like = next(t for t in tangents if t is not None)
    return [xp.zeros(like.shape[:1] + tuple(s), dtype=like.dtype) if t is None else t
            for t, s in zip(tangents, shapes)]


def _lead(axis):
    """The slices that lead up to ``axis`` of a primal in its tangent: K and the axes before it."""
    return (slice(None),) * (axis + 1)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape), None

    @staticmethod
    def jvp(ctx, t, _):
        return t.reshape(t.shape[:1] + ctx._out_arrays[0].shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = tuple(sorted(range(len(ctx.axes)), key=ctx.axes.__getitem__))
        return g.transpose(inverse), None

    @staticmethod
    def jvp(ctx, t, _):
        return t.transpose((0,) + tuple(a + 1 for a in ctx.axes))


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return backend.get_array_module(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return sum_to(g, ctx.in_shape), None

    @staticmethod
    def jvp(ctx, t, _):
        return lift(t, ctx._out_arrays[0].ndim)     # broadcast to (K, *shape) by the caller


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

    @staticmethod
    def jvp(ctx, t, _):
        """The same index behind the K axis. An advanced index runs on the tangent with K moved
        last, where it stays (NumPy places the dims of an advanced index first when
        they are split by slices, so a leading K could move)."""
        index = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        if is_basic_index(index):
            return t[(slice(None),) + index]
        xp = ctx.xp
        return xp.moveaxis(xp.moveaxis(t, 0, -1)[_expand_ellipsis(index, len(ctx.in_shape))], -1, 0)


def _expand_ellipsis(index, ndim):
    """``index`` with its Ellipsis written out as slices, so it never reaches a trailing K axis."""
    if not any(p is Ellipsis for p in index):
        return index
    used = sum(_dims_indexed(p) for p in index)
    at = next(i for i, p in enumerate(index) if p is Ellipsis)
    return index[:at] + (slice(None),) * (ndim - used) + index[at + 1:]


def _dims_indexed(part):
    """How many dims of the indexed array one part of an index consumes."""
    if part is None or part is Ellipsis:
        return 0
    return part.ndim if getattr(part, "dtype", None) == bool else 1


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

    @staticmethod
    def jvp(ctx, t, *_):
        """The same scatter-add behind the K axis. A basic index writes through a view; an advanced
        one adds into zeros with K moved last, as GetItem.jvp indexes (repeats add up)."""
        xp = ctx.xp
        out = ctx._out_arrays[0]
        index = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        if is_basic_index(index):
            tangent = xp.zeros(t.shape[:1] + out.shape, dtype=t.dtype)
            tangent[(slice(None),) + index] = t
            return tangent
        tangent = xp.zeros(out.shape + t.shape[:1], dtype=t.dtype)
        backend.index_add(tangent, _expand_ellipsis(index, out.ndim), xp.moveaxis(t, 0, -1))
        return xp.moveaxis(tangent, -1, 0)


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return backend.get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return Split.dispatch(g, ctx.sizes, ctx.axis)

    @staticmethod
    def jvp(ctx, *tangents):
        xp = ctx.xp
        return xp.concatenate(zero_filled(tangents, [a.shape for a in ctx.inputs], xp), axis=ctx.axis + 1)


@functools.lru_cache(maxsize=256)
def _split_indices(sizes, axis):
    """The index of each piece of a split along ``axis`` into ``sizes``."""
    lead = (slice(None),) * axis
    indices, start = [], 0
    for n in sizes:
        indices.append(lead + (slice(start, start + n),))
        start += n
    return tuple(indices)


class Split(Function):
    """Split along ``axis`` into pieces of the given sizes (one output each)."""

    @staticmethod
    def forward(ctx, a, sizes, axis):
        ctx.axis = axis
        return tuple(a[index] for index in _split_indices(tuple(sizes), axis % a.ndim))

    @staticmethod
    def backward(ctx, *grads):
        if ctx.create_graph:
            return Concatenate.dispatch(*grads, axis=ctx.axis), None, None
        return ctx.xp.concatenate(grads, axis=ctx.axis), None, None

    @staticmethod
    def jvp(ctx, t, *_):
        lead, bounds, start = _lead(ctx.axis), [], 0
        for n in ctx.inputs[1]:
            bounds.append(slice(start, start + n))
            start += n
        return tuple(t[lead + (b,)] for b in bounds)


class Stack(Function):
    """Join arrays of one shape along a new ``axis``."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        return backend.get_array_module(arrays[0]).stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return Unbind.dispatch(g, ctx.axis)

    @staticmethod
    def jvp(ctx, *tangents):
        xp = ctx.xp
        return xp.stack(zero_filled(tangents, [a.shape for a in ctx.inputs], xp), axis=ctx.axis + 1)


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

    @staticmethod
    def jvp(ctx, t, _):
        lead = _lead(ctx.axis)
        return tuple(t[lead + (i,)] for i in range(t.shape[ctx.axis + 1]))
