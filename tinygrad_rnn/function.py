"""Function: the one way an op enters the graph, and the thread-local grad mode.

An op is a subclass with two static methods::

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):              # arrays in, array(s) out
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):             # one grad per output in, one per input out
            a, b = ctx.saved_tensors
            return grad * b, grad * a

``Mul.apply(x, y)`` unwraps the tensors, runs ``forward`` on their arrays and,
when grad mode is on and an input requires grad, records the call as a node of
the graph. The node *is* the ``ctx``: whatever forward stores on it is there in
backward.

Write ``backward`` with operators, array methods that Tensor shares (``sum``,
``reshape``, ``transpose``, ``swapaxes``) and functions of ``ctx.xp``. In a
plain backward those are NumPy/CuPy arrays and ``ctx.xp`` is numpy or cupy; under
``create_graph=True`` the same code receives Tensors, ``ctx.xp`` is the
graph-building namespace :mod:`tinygrad_rnn.xp`, and the backward is itself
recorded, which gives gradients of any order without writing anything twice.
"""
import threading
import traceback

import numpy as np

from . import backend
from .tensor import Tensor


class _GradState(threading.local):
    enabled = True
    anomaly = False
    tape = None         # while a step is being traced (tinygrad_rnn.nn.trace_scan): where apply records


_state = _GradState()


def is_grad_enabled():
    return _state.enabled


class set_grad_enabled:
    """Context manager and decorator that sets grad mode, restoring it on exit."""

    def __init__(self, mode):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = _state.enabled
        _state.enabled = self.mode

    def __exit__(self, *exc):
        _state.enabled = self.prev

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


class no_grad(set_grad_enabled):
    """``with tg.no_grad():`` (or ``@tg.no_grad()``) records no graph inside."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turns grad mode back on inside a ``no_grad`` block."""

    def __init__(self):
        super().__init__(True)


class detect_anomaly:
    """Raise at the first op whose forward or backward produces NaN or Inf.

    Each node also keeps the stack of the line that created it, so an error in
    backward says where in the forward code the guilty op was called. Slow;
    for debugging only.
    """

    def __enter__(self):
        self.prev = _state.anomaly
        _state.anomaly = True

    def __exit__(self, *exc):
        _state.anomaly = self.prev


def is_anomaly_enabled():
    return _state.anomaly


class recording:
    """Inside the block, every ``Function.apply`` on this thread also calls
    ``tape.record(cls, args, kwargs, result, ctx)``, and reading a tensor's values into
    Python (``item``, ``bool``, ``numpy``...) raises :class:`DataDependentError`:
    how :mod:`tinygrad_rnn.nn.trace_scan` turns a Python step into a tape of ops.
    Blocks nest; the outer tape sees none of the inner one's ops."""

    def __init__(self, tape):
        self.tape = tape

    def __enter__(self):
        self.prev = _state.tape
        _state.tape = self.tape
        return self.tape

    def __exit__(self, *exc):
        _state.tape = self.prev


def is_recording():
    return _state.tape is not None


class DataDependentError(RuntimeError):
    """A traced step read a tensor's values into Python, so its ops may differ from step to step."""


def _check_finite(fn_name, phase, arrays, stack=None):
    for i, a in enumerate(arrays):
        if a is None or not hasattr(a, "dtype") or a.dtype.kind != "f":
            continue
        if not bool(backend.get_array_module(a).isfinite(a).all()):
            where = "".join(stack[-4:-1]) if stack else ""
            raise FloatingPointError(
                f"detect_anomaly: {fn_name}.{phase} produced NaN or Inf in its output {i}"
                + (f"; the op was created at:\n{where}" if where else ""))


class Function:
    """Base class of every op; see the module docstring."""

    # Set by apply() when the call is recorded in the graph. Slots keep a node
    # small; "__dict__" stays so that forward may store anything on ctx (the
    # dict is only made when it does).
    __slots__ = ("inputs", "needs_input_grad", "generation", "n_outputs", "_saved", "_out_arrays", "__dict__")

    differentiable = True     # False for ops with no gradient (comparisons): their outputs never require grad
    _graph_mode = False       # True while a create_graph backward runs this node
    _xp = np
    _stack = None             # where the node was created, under detect_anomaly
    _out_hooks = None         # {output index: [hook, ...]} for non-leaf tensors
    _retained = None          # {output index: weakref to tensor} for retain_grad()

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(f"{type(ctx).__name__} defines no backward")

    def save_for_backward(self, *arrays):
        """Keep arrays for backward. Save inputs or outputs of forward (recompute
        anything else in backward): under create_graph they come back as the
        matching Tensors, so the second derivative flows through them."""
        self._saved = arrays

    @property
    def saved_tensors(self):
        saved = getattr(self, "_saved", ())
        if not self._graph_mode:
            return saved
        return tuple(self._as_graph_tensor(a) for a in saved)

    @property
    def create_graph(self):
        """True while this node's backward runs under create_graph=True (its inputs are Tensors)."""
        return self._graph_mode

    @property
    def xp(self):
        """numpy or cupy in a plain backward; tinygrad_rnn.xp under create_graph."""
        if self._graph_mode:
            from . import xp
            return xp
        return self._xp

    def _as_graph_tensor(self, array):
        from .tensor import Tensor
        for inp in self.inputs:
            if isinstance(inp, Tensor) and inp.data is array:
                return inp
        for i, out in enumerate(self._out_arrays):
            if out is array:
                return Tensor._make(array, True, self, i)
        if not hasattr(array, "dtype"):
            return array            # a Python number: a constant
        raise RuntimeError(
            f"{type(self).__name__} saved an array that is neither an input nor an output of forward, so "
            "create_graph=True cannot differentiate through it; save the inputs and recompute it in backward")

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the arrays of ``args`` and record the node if needed."""
        ctx = cls()
        arrays, needs = [], []
        record, generation, array_type = False, 0, None
        for a in args:
            if isinstance(a, Tensor):
                data = a.data
                if array_type is None:
                    array_type = type(data)
                elif type(data) is not array_type:
                    raise ValueError(f"{cls.__name__}: tensors on {_device_list(args)}; move them to one device")
                arrays.append(data)
                needs.append(a._requires_grad)
                node = a.grad_fn
                if node is not None and node.generation > generation:
                    generation = node.generation
            else:
                arrays.append(a)
                needs.append(False)
        out = cls.forward(ctx, *arrays, **kwargs)
        state = _state
        record = state.enabled and True in needs and cls.differentiable
        node = ctx if record else None
        if type(out) is np.ndarray:
            outs = (out,)
            result = Tensor._make(out, record, node, 0)
        else:
            raw = out if type(out) is tuple else (out,)
            outs = tuple(_as_array(o, cls) for o in raw)
            if any(o is not r for o, r in zip(outs, raw)):
                _rewrap_saved(ctx, raw, outs)
            result = (tuple(Tensor._make(o, record, node, i) for i, o in enumerate(outs)) if type(out) is tuple
                      else Tensor._make(outs[0], record, node, 0))
        if state.anomaly:
            _check_finite(cls.__name__, "forward", outs)
        if record:
            ctx.inputs = args
            ctx.needs_input_grad = tuple(needs)
            ctx.generation = generation + 1
            ctx.n_outputs = len(outs)
            ctx._out_arrays = outs
            if array_type is not np.ndarray:
                ctx._xp = backend.get_array_module(outs[0])
            if state.anomaly:
                ctx._stack = traceback.format_stack()
        if state.tape is not None:
            state.tape.record(cls, args, kwargs, result, ctx)
        return result

    @classmethod
    def dispatch(cls, *args, **kwargs):
        """``apply`` on Tensors, a bare ``forward`` on arrays.

        A backward calls other ops through this, so the same line computes on
        arrays in a plain backward and records graph under create_graph."""
        if any(isinstance(a, Tensor) for a in args):
            return cls.apply(*args, **kwargs)
        return cls.forward(cls(), *args, **kwargs)

    def release(self):
        """Drop the inputs and saved arrays once backward no longer needs them
        (``inputs`` reads None after). With its inputs gone the node no longer
        holds the rest of the graph, whatever else forward stored on it."""
        self.inputs = None
        self._saved = self._out_arrays = ()


def _rewrap_saved(ctx, raw, outs):
    """NumPy returns scalars for 0-d results; once they are wrapped as arrays, saved
    references to them must point at the wrapped arrays, so backward sees outputs."""
    saved = getattr(ctx, "_saved", ())
    swap = {id(r): o for r, o in zip(raw, outs) if r is not o}
    if saved:
        ctx._saved = tuple(swap.get(id(s), s) for s in saved)


def _as_array(out, cls):
    if type(out) is np.ndarray:
        return out
    if isinstance(out, np.generic):          # NumPy returns scalars for 0-d results
        return np.asarray(out)
    if hasattr(out, "__cuda_array_interface__"):
        return out
    raise TypeError(f"{cls.__name__}.forward must return arrays, got {type(out).__name__}")


def _device_list(args):
    return " and ".join(sorted({a.device for a in args if isinstance(a, Tensor)}))

