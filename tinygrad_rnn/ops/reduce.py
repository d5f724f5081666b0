"""Reductions over axes: sum, and max/min (amax semantics: ties share the gradient; a NaN
extreme sends it to the NaNs, as PyTorch's ``max()``)."""
from ..function import Function


def normalize_axes(axis, ndim, op):
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:
        return (axis % ndim,)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for ax in axes:
        if not isinstance(ax, int) or not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"{op}: axis {ax} is out of range for a tensor of {ndim} dims")
        out.append(ax % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return tuple(sorted(out))


def kept_shape(shape, axes):
    """``shape`` with the reduced ``axes`` kept as size 1."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        ctx.in_shape, ctx.axes = a.shape, axes
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = g.reshape(kept_shape(ctx.in_shape, ctx.axes))
        return ctx.xp.broadcast_to(g, ctx.in_shape), None, None

    @staticmethod
    def jvp(ctx, t, *_):
        """The same sum, one axis further right (behind K); keepdims read off the output's rank."""
        keepdims = ctx._out_arrays[0].ndim == len(ctx.in_shape)
        return t.sum(axis=tuple(a + 1 for a in ctx.axes), keepdims=keepdims)


def _hits(a, out, axes):
    """Where ``a`` holds its extreme ``out`` (reduced over ``axes``); where the extreme is NaN,
    the NaNs that made it (NaN == NaN is False, so every share would be 0 / 0)."""
    out = out.reshape(kept_shape(a.shape, axes))
    return (a == out) | ((a != a) & (out != out))


class _Extreme(Function):
    """max or min over axes; every element equal to the extreme gets an equal share."""
    reduce = None

    @classmethod
    def forward(cls, ctx, a, axes, keepdims):
        if a.size == 0:
            raise ValueError(f"{cls.__name__.lower()}: cannot reduce an empty tensor of shape {a.shape}")
        ctx.axes = axes
        out = getattr(a, cls.reduce)(axis=axes, keepdims=keepdims)
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        hit = _hits(a, out, ctx.axes).astype(g.dtype)
        return g.reshape(kept_shape(a.shape, ctx.axes)) * hit / hit.sum(axis=ctx.axes, keepdims=True), None, None

    @staticmethod
    def jvp(ctx, t, *_):
        """The mean of the tangent over the positions equal to the extreme (the backward's equal
        shares), reduced over the same axes one further right (behind K)."""
        a, out = ctx.saved_tensors
        hit = _hits(a, out, ctx.axes)
        axes = tuple(ax + 1 for ax in ctx.axes)
        keepdims = out.ndim == a.ndim
        return (ctx.xp.where(hit, t, 0).sum(axis=axes, keepdims=keepdims)
                / hit.sum(axis=ctx.axes, keepdims=keepdims).astype(t.dtype))


class Max(_Extreme):
    reduce = "max"


class Min(_Extreme):
    reduce = "min"
