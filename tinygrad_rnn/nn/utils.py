"""Gradient clipping (Pascanu, Mikolov & Bengio 2013 clip the global norm), and state dicts
to and from PyTorch."""
import math
from collections.abc import Mapping

import numpy as np

from .. import backend
from ..tensor import Tensor
from .module import Module, _host


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


# ----- state dicts to and from PyTorch (torch is imported only when these are called)
def _import_torch(name):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{name} needs PyTorch, which is not installed (pip install torch); "
                          "the rest of tinygrad_rnn works without it") from None
    return torch


def to_torch_state_dict(module):
    """A PyTorch state dict, {name: torch.Tensor}, of a Module's parameters (or of a
    {name: array or Tensor} state dict): CPU copies with the same names, shapes and
    dtypes, ready for ``torch_module.load_state_dict`` or ``torch.save``. The
    recurrent layers use PyTorch's parameter names, so the weights carry over as they are.

    Example::

        >>> ours = tg.nn.LSTM(3, 5, num_layers=2)
        >>> theirs = torch.nn.LSTM(3, 5, num_layers=2)
        >>> theirs.load_state_dict(tg.nn.utils.to_torch_state_dict(ours))
    """
    torch = _import_torch("to_torch_state_dict")
    state = module.state_dict() if isinstance(module, Module) else module
    if not isinstance(state, Mapping):
        raise TypeError(f"to_torch_state_dict: expected a Module or a state dict, got {type(module).__name__}")
    return {k: torch.from_numpy(np.array(_host(v), copy=True)) for k, v in state.items()}


def from_torch_state_dict(state):
    """The {name: NumPy array} state dict of a ``torch.nn.Module`` (or of its
    ``state_dict()``): copies with the same names, shapes and dtypes, for
    ``module.load_state_dict`` (which casts to each parameter's dtype) or ``tg.save``.

    Example::

        >>> theirs = torch.nn.GRU(3, 5, batch_first=True)
        >>> ours = tg.nn.GRU(3, 5, batch_first=True)
        >>> ours.load_state_dict(tg.nn.utils.from_torch_state_dict(theirs))
    """
    torch = _import_torch("from_torch_state_dict")
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise TypeError(f"from_torch_state_dict: expected a torch.nn.Module or its state dict, "
                        f"got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"from_torch_state_dict: {k!r} is a {type(v).__name__}, expected a torch.Tensor")
        try:
            out[k] = v.detach().cpu().numpy().copy()
        except TypeError:
            raise TypeError(f"from_torch_state_dict: {k!r} is {v.dtype}, which NumPy cannot hold; "
                            "convert it first, e.g. with .float()") from None
    return out
