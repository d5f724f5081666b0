"""Gradient clipping (Pascanu, Mikolov & Bengio 2013 clip the global norm)."""
import math

from .. import backend
from ..tensor import Tensor


def _with_grads(parameters, name):
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}: parameters[{i}] is a {type(p).__name__}, expected a Tensor")
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their joint ``norm_type`` norm is at
    most ``max_norm``; returns the norm before clipping (a 0-d Tensor).

    The scale is min(1, max_norm / (norm + 1e-6)), computed on the device, so
    clipping costs no host synchronisation unless ``error_if_nonfinite``."""
    params = _with_grads(parameters, "clip_grad_norm_")
    norm_type = float(norm_type)
    if max_norm < 0 or not (norm_type > 0):
        raise ValueError(f"clip_grad_norm_: need max_norm >= 0 and norm_type > 0, got {max_norm}, {norm_type}")
    if not params:
        return Tensor(0.0)
    xp = backend.get_array_module(params[0].grad.data)
    grads = [p.grad.data for p in params]
    if math.isinf(norm_type):
        total = xp.max(xp.stack([xp.abs(g).max() for g in grads]))
    else:
        total = sum(xp.sum(xp.abs(g) ** norm_type) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total {norm_type} norm of the gradients is {float(total)}; "
                           "set error_if_nonfinite=False to clip anyway")
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for p in params:
        p.grad = Tensor._make(xp.asarray(p.grad.data * scale, dtype=p.grad.dtype), False, None, 0)
    return Tensor._make(xp.asarray(total), False, None, 0)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value]."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be non-negative, got {clip_value}")
    for p in _with_grads(parameters, "clip_grad_value_"):
        xp = backend.get_array_module(p.grad.data)
        p.grad = Tensor._make(xp.asarray(xp.clip(p.grad.data, -clip_value, clip_value)), False, None, 0)
