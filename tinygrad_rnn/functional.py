"""Differentiable functions composed from the primitive ops.

Being compositions, they are differentiable to any order with no backward of
their own. Also reachable as ``tinygrad_rnn.nn.functional``.
"""
import numpy as np

from . import backend, creation
from . import xp as _xp
from .function import DataDependentError, is_recording
from .tensor import Tensor, not_a_tensor
from .xp import relu, sigmoid, softplus, tanh  # noqa: F401  (re-exported)

_REDUCTIONS = ("none", "mean", "sum")


def _check_tensor(x, name, arg="input"):
    if not isinstance(x, Tensor):
        raise not_a_tensor(name, arg, x)
    return x


def linear(x, weight, bias=None):
    """x W^T + b. Shapes: x (*, in), weight (out, in) or (in,), bias (out,) -> (*, out) or (*)."""
    _check_tensor(x, "linear")
    _check_tensor(weight, "linear", "weight")
    if x.ndim == 0 or weight.ndim not in (1, 2):
        raise ValueError(f"linear: expected input of shape (*, in_features) and weight of shape "
                         f"(out_features, in_features), got {x.shape} and {weight.shape}")
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features, weight expects {weight.shape[-1]} "
                         f"(weight shape {weight.shape})")
    if x.ndim > 2:          # one (N, in) x (in, out) matmul over all leading dims
        out = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(x.shape[:-1] + weight.shape[:-1])
    else:
        out = x @ weight.T
    return out if bias is None else out + bias


def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope * x otherwise."""
    _check_tensor(x, "leaky_relu")
    return _xp.where(x > 0, x, x * negative_slope)


def elu(x, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) otherwise (Clevert et al. 2016)."""
    _check_tensor(x, "elu")
    negative_part = _xp.where(x > 0, 0.0, x)          # keeps exp from overflowing for large x
    return _xp.where(x > 0, x, alpha * (_xp.exp(negative_part) - 1))


def logsumexp(x, axis=-1, keepdims=False, dim=None):
    """log(sum(exp(x))) over ``axis``, shifted by the max so it cannot overflow."""
    _check_tensor(x, "logsumexp")
    axis = axis if dim is None else dim
    shift = x.max(axis, keepdims=True).detach()
    shift = _xp.where(_xp.isfinite(shift), shift, 0.0)    # rows of -inf stay -inf, not NaN
    out = _xp.log(_xp.exp(x - shift).sum(axis, keepdims=True)) + shift
    return out if keepdims else _xp.squeeze(out, axis)


def log_softmax(x, axis=-1, dim=None):
    """x - logsumexp(x) over ``axis``: log-probabilities, stable for large |x|."""
    _check_tensor(x, "log_softmax")
    axis = axis if dim is None else dim
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x, axis=-1, dim=None):
    """exp(x) / sum(exp(x)) over ``axis``, shifted by the max so it cannot overflow."""
    _check_tensor(x, "softmax")
    axis = axis if dim is None else dim
    e = _xp.exp(x - x.max(axis, keepdims=True).detach())
    return e / e.sum(axis, keepdims=True)


def _reduce(loss, reduction, name, count=None):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else total / (loss.size if count is None else count)


def nll_loss(log_probs, target, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices.

    Shapes: log_probs (N, C) or (N, C, d1, ...); target (N,) or (N, d1, ...) of
    ints in [0, C) or ``ignore_index``. ``mean`` averages over the targets that
    are not ignored (NaN if all are), as PyTorch."""
    _check_tensor(log_probs, "nll_loss")
    target = _check_tensor(target, "nll_loss", "target")
    if target.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got {target.dtype.name}")
    if log_probs.ndim < 2 or target.shape != log_probs.shape[:1] + log_probs.shape[2:]:
        raise ValueError(f"nll_loss: input of shape {log_probs.shape} needs a target of shape "
                         f"{log_probs.shape[:1] + log_probs.shape[2:]}, got {target.shape}")
    classes = log_probs.shape[1]
    if log_probs.ndim > 2:          # (N, C, d...) -> (N*d..., C)
        log_probs = log_probs.permute(0, *range(2, log_probs.ndim), 1).reshape(-1, classes)
    t = target.data.reshape(-1)
    keep = t != ignore_index
    xp = backend.get_array_module(t)
    bad = keep & ((t < 0) | (t >= classes))
    if bool(bad.any()):
        raise ValueError(f"nll_loss: target {int(t[bad][0])} is out of range for {classes} classes")
    safe = xp.where(keep, t, 0)
    picked = log_probs[xp.arange(t.shape[0]), safe]
    loss = -_xp.where(Tensor._make(keep, False, None, 0), picked, 0.0)
    if reduction == "none":
        return loss.reshape(target.shape)
    return _reduce(loss, reduction, "nll_loss", count=int(keep.sum()))


def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy of class indices: nll_loss(log_softmax(logits, axis=1), target)."""
    _check_tensor(logits, "cross_entropy")
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy: logits must be (N, C) or (N, C, d...), got shape {logits.shape}")
    return nll_loss(log_softmax(logits, axis=1), target, ignore_index, reduction)


def _same_shape(a, b, name):
    if not isinstance(b, Tensor):
        b = Tensor(b, dtype=a.dtype, device=a.device)
    if a.shape != b.shape:
        raise ValueError(f"{name}: input shape {a.shape} and target shape {b.shape} differ "
                         "(no broadcasting here, to catch a misplaced dim)")
    return b


def mse_loss(x, target, reduction="mean"):
    """Mean squared error; ``x`` and ``target`` must have the same shape."""
    target = _same_shape(_check_tensor(x, "mse_loss"), target, "mse_loss")
    diff = x - target
    return _reduce(diff * diff, reduction, "mse_loss")


def binary_cross_entropy_with_logits(x, target, reduction="mean"):
    """-[y log s(x) + (1-y) log(1 - s(x))] = softplus(x) - x y, with softplus computed as
    logaddexp(0, x): stable for any |x|, and its derivative sigmoid(x) - y holds at x = 0 too."""
    target = _same_shape(_check_tensor(x, "binary_cross_entropy_with_logits"), target,
                         "binary_cross_entropy_with_logits")
    loss = softplus(x) - x * target
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def embedding(ids, weight, padding_idx=None):
    """Rows of ``weight`` (V, E) picked by integer ``ids`` (any shape) -> (*ids.shape, E).
    Rows picked several times accumulate their gradients; positions holding
    ``padding_idx`` pass no gradient to its row."""
    ids = _check_tensor(ids, "embedding", "ids")
    _check_tensor(weight, "embedding", "weight")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got {ids.dtype.name}")
    if ids.size and (int(ids.data.min()) < 0 or int(ids.data.max()) >= weight.shape[0]):
        raise ValueError(f"embedding: ids must be in [0, {weight.shape[0]}), got values in "
                         f"[{int(ids.data.min())}, {int(ids.data.max())}]")
    out = weight[ids]
    if padding_idx is None:
        return out
    rows = weight.shape[0]
    if not isinstance(padding_idx, (int, np.integer)) or not -rows <= padding_idx < rows:
        raise ValueError(f"embedding: padding_idx must be an int in [-{rows}, {rows}) for {rows} rows, "
                         f"got {padding_idx!r}")
    padding_idx %= rows             # -1 is the last row, as in PyTorch
    keep = Tensor._make((ids.data != padding_idx)[..., None], False, None, 0)
    return _xp.where(keep, out, out.detach())


def one_hot(ids, num_classes=-1):
    """int64 tensor (*ids.shape, num_classes) with a 1 at each id (a constant)."""
    ids = _check_tensor(ids, "one_hot", "ids")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"one_hot: ids must be integers, got {ids.dtype.name}")
    top = int(ids.data.max()) + 1 if ids.size else 0
    n = top if num_classes == -1 else num_classes
    if ids.size and (int(ids.data.min()) < 0 or top > n):
        raise ValueError(f"one_hot: ids must be in [0, {n}), got values in [{int(ids.data.min())}, {top - 1}]")
    classes = Tensor(backend.get_array_module(ids.data).arange(n))
    return (ids.unsqueeze(-1) == classes).astype(np.int64)


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout)."""
    _check_tensor(x, "dropout")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if is_recording():
        raise DataDependentError("dropout inside a traced step would repeat one mask at every step")
    keep = (generator or creation.default_generator()).random(x.shape) >= p
    mask = backend.to_device((keep / (1.0 - p)).astype(x.dtype), x.device)
    return x * Tensor._make(mask, False, None, 0)
