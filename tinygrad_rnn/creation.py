"""Functions that make new tensors: from data, filled, ranges and random draws.

Random draws come from one NumPy generator (seeded by :func:`manual_seed`)
whatever the device, so a seed gives the same numbers on cpu and cuda.
"""
import numpy as np

from . import backend
from .tensor import Tensor, not_a_tensor

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator behind randn, rand, dropout and the initialisers."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_generator():
    """The generator behind the random functions; refused inside a traced step, where one draw
    would be replayed at every step (the step then runs step by step)."""
    from .function import DataDependentError, is_recording
    if is_recording():
        raise DataDependentError("a random draw inside a traced step would repeat the same numbers at every step")
    return _rng


def tensor(data, dtype=None, device="cpu", requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (a number, nested lists or an array).

    With ``dtype=None``, Python floats give float32, ints int64 and bools bool;
    NumPy arrays keep their dtype (as ``torch.tensor``)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        data = data.copy()
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise not_a_tensor(name, "input", t)


def _shape(shape, name):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(f"{name}: shape must be non-negative ints, got {shape}")
    return tuple(int(n) for n in shape)


def _filled(name, shape, value, dtype, device, requires_grad):
    device = backend.check_device(device)
    value = Tensor(value, dtype=dtype).data if not isinstance(value, float) or dtype is not None else value
    dt = backend.check_dtype(dtype) if dtype is not None else (
        backend.DEFAULT_FLOAT if isinstance(value, float) else value.dtype)
    data = backend.array_module(device).full(_shape(shape, name), value, dtype=dt)
    return Tensor._make(data, False, None, 0).requires_grad_(requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False):
    """A tensor of zeros; ``shape`` as ints or one tuple, float32 unless ``dtype`` is given."""
    return _filled("zeros", shape, 0.0, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False):
    """A tensor of ones; ``shape`` as ints or one tuple, float32 unless ``dtype`` is given."""
    return _filled("ones", shape, 1.0, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device="cpu", requires_grad=False):
    """A tensor of ``shape`` (an int or a tuple) filled with ``fill_value``; the dtype follows the
    value as ``tensor`` infers it (float32 for a float, int64 for an int) unless given."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _filled("full", shape, fill_value, dtype, device, requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    """Zeros of ``t``'s shape, with its dtype and device unless given."""
    _check_tensor(t, "zeros_like")
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    """Ones of ``t``'s shape, with its dtype and device unless given."""
    _check_tensor(t, "ones_like")
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def eye(n, dtype=None, device="cpu", requires_grad=False):
    """The n x n identity matrix, float32 unless ``dtype`` is given."""
    data = np.eye(n, dtype=backend.check_dtype(dtype or backend.DEFAULT_FLOAT))
    return Tensor(data, device=device, requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, device="cpu", requires_grad=False):
    """Values from ``start`` to ``stop`` (exclusive) by ``step``; int64 for int arguments."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    data = np.arange(start, stop, step)
    return Tensor(data, dtype=dtype or backend.infer_dtype(data, True), device=device,
                  requires_grad=requires_grad)


def _random(name, draw, shape, dtype, device, requires_grad, generator):
    dt = backend.check_dtype(dtype or backend.DEFAULT_FLOAT)
    if dt.kind != "f":
        raise TypeError(f"{name}: dtype must be a float dtype, got {dt.name}")
    data = draw(generator or _rng, _shape(shape, name)).astype(dt)
    return Tensor(data, device=device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False, generator=None):
    """Standard normal draws."""
    return _random("randn", lambda g, s: g.standard_normal(s), shape, dtype, device, requires_grad, generator)


def rand(*shape, dtype=None, device="cpu", requires_grad=False, generator=None):
    """Uniform draws on [0, 1)."""
    return _random("rand", lambda g, s: g.random(s), shape, dtype, device, requires_grad, generator)
