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
import functools
import threading
import traceback

import numpy as np

from . import backend
from .tensor import Tensor, is_torch, not_a_tensor


class _GradState(threading.local):
    enabled = True
    anomaly = False
    tape = None         # while a step is being traced (tinygrad_rnn.nn.trace_scan): where apply records
    capturing = False   # while tg.grad's pass runs: a backward that backpropagates inside must not touch .grad
    retaining = False   # while a backward pass with retain_graph=True runs


def graph_retained():
    """True while a backward pass runs that keeps the graph (``retain_graph=True``): a node's
    backward may then run again, so it must leave what its forward saved as it found it.
    Otherwise a backward may write over its own saved buffers (the node is freed after it)."""
    return _state.retaining


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
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        return wrapper


class _FixedMode(set_grad_enabled):
    """A grad mode that takes no argument, so that, as in PyTorch, the class works bare as a
    decorator (``@tg.no_grad``) as well as called (``@tg.no_grad()``, ``with tg.no_grad():``)."""
    fixed_mode = None

    def __new__(cls, fn=None):
        if fn is None:
            return super().__new__(cls)
        if not callable(fn):
            raise TypeError(f"{cls.__name__}: takes no arguments, or a function to decorate; got {fn!r}")
        return cls()(fn)

    def __init__(self, fn=None):
        super().__init__(self.fixed_mode)


class no_grad(_FixedMode):
    """``with tg.no_grad():``, ``@tg.no_grad`` or ``@tg.no_grad()``: records no graph inside."""
    fixed_mode = False


class enable_grad(_FixedMode):
    """Turns grad mode back on inside a ``no_grad`` block; a context manager or a decorator
    (``@tg.enable_grad`` or ``@tg.enable_grad()``)."""
    fixed_mode = True


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
    #
    # The graph holds nodes, not intermediate Tensors: the n arguments of apply sit
    # in the slots _in0.._in3 (as one tuple in _in0 past four), and an argument that
    # a node made is kept as that node (its output index in _in_index, None when all
    # are 0). A recorded op thus leaves one object for the cyclic garbage collector
    # to track instead of three (output Tensor, node, inputs tuple); every full
    # collection walks all of them, so a long unroll pays for each one again and
    # again. ``inputs`` rebuilds the tuple of arguments on demand.
    __slots__ = ("_in0", "_in1", "_in2", "_in3", "_n_in", "_in_index",
                 "needs_input_grad", "generation", "n_outputs", "_saved", "_out_arrays", "__dict__")

    differentiable = True     # False for ops with no gradient (comparisons): their outputs never require grad
    materialize_grads = True  # False: backward gets None (not zeros) for an output no gradient reached
    fresh_grads = False       # True: backward's arrays are new, one per input, kept nowhere else, so a
                              # leaf may take one as its .grad without a copy
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

    @property
    def inputs(self):
        """The arguments of apply as a tuple, None once ``release`` has run. An argument
        that a node made comes back as a Tensor with the same ``grad_fn``, ``_index``
        and data (the very object if it called retain_grad and is alive, else a new
        one); leaves and other arguments are the objects passed. Raises if a node
        that made an argument was released by a backward since."""
        n = self._n_in
        if n < 0:
            return None
        return tuple(self._input(k, e) for k, e in enumerate(self._edges(n)))

    @inputs.setter
    def inputs(self, args):
        """Set the arguments as they are (a ctx made by hand, e.g. to run a jvp rule on arrays);
        None marks the node released."""
        self._in0 = self._in1 = self._in2 = self._in3 = self._in_index = None
        if args is None:
            self._n_in = -1
            return
        args = tuple(args)
        n = self._n_in = len(args)
        if n > 4:
            self._in0 = args
        else:
            for name, a in zip(("_in0", "_in1", "_in2", "_in3"), args):
                setattr(self, name, a)

    def _edges(self, n):
        """What the slots hold for the n arguments (a node for a Tensor that a node made)."""
        if n == 1:
            return (self._in0,)
        if n == 2:
            return self._in0, self._in1
        if n == 3:
            return self._in0, self._in1, self._in2
        if n == 4:
            return self._in0, self._in1, self._in2, self._in3
        return self._in0 if n else ()

    def _input(self, k, e):
        """Argument ``k`` from its slot ``e``: a node stands for one of its outputs exactly when
        the argument needs grad (a Function passed as a plain argument never does)."""
        if isinstance(e, Function) and self.needs_input_grad[k]:
            index = self._in_index
            return e._output_tensor(index[k] if index else 0)
        return e

    def _output_tensor(self, i):
        """A Tensor for output ``i``: the one that called retain_grad while it is alive (it holds
        the ``.grad``), else a new one with the same data, grad_fn and index."""
        if self._retained is not None:
            ref = self._retained.get(i)
            t = None if ref is None else ref()
            if t is not None:
                return t
        if self._n_in < 0:
            raise freed_error(self)
        return Tensor._make(self._out_arrays[i], True, self, i)

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
        arrays, needs, edges = [], [], []
        record, generation, array_type, index = False, 0, None, None
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
                if node is None:
                    edges.append(a)
                    continue
                if node.generation > generation:
                    generation = node.generation
                if node._n_in < 0:          # a backward released its node: keep the Tensor, data and all
                    edges.append(a)
                    continue
                if a._index:
                    index = _with_index(index, len(edges), a._index, len(args))
                edges.append(node)
            else:
                arrays.append(a)
                needs.append(False)
                edges.append(a)
        try:
            out = cls.forward(ctx, *arrays, **kwargs)
        except Exception:
            _refuse_torch(cls, args)        # what a torch.Tensor argument makes forward raise is no help
            raise
        state = _state
        record = state.enabled and True in needs and cls.differentiable
        node = ctx if record else None
        if type(out) is np.ndarray:
            outs = (out,)
            result = Tensor._make(out, record, node, 0)
        else:
            raw = out if type(out) is tuple else (out,)
            outs = tuple(_as_array(o, cls, args) for o in raw)
            if any(o is not r for o, r in zip(outs, raw)):
                _rewrap_saved(ctx, raw, outs)
            result = (tuple(Tensor._make(o, record, node, i) for i, o in enumerate(outs)) if type(out) is tuple
                      else Tensor._make(outs[0], record, node, 0))
        if state.anomaly:
            _check_finite(cls.__name__, "forward", outs)
        if record:
            n = len(edges)
            if n == 1:
                ctx._in0 = edges[0]
            elif n == 2:
                ctx._in0, ctx._in1 = edges
            elif n == 3:
                ctx._in0, ctx._in1, ctx._in2 = edges
            elif n == 4:
                ctx._in0, ctx._in1, ctx._in2, ctx._in3 = edges
            else:
                ctx._in0 = tuple(edges)
            ctx._n_in = n
            ctx._in_index = index
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
        self._n_in = -1
        self._in0 = self._in1 = self._in2 = self._in3 = None
        self._saved = self._out_arrays = ()


def freed_error(node):
    return RuntimeError(
        f"{type(node).__name__}: trying to backward through the graph a second time, but its saved "
        "arrays were freed; pass retain_graph=True to the first backward if you need to")


def _with_index(index, k, i, n):
    """The output indices of the n arguments (all 0 if ``index`` is None) with argument k's set to i."""
    index = [0] * n if index is None else list(index)
    index[k] = i
    return tuple(index)


def _rewrap_saved(ctx, raw, outs):
    """NumPy returns scalars for 0-d results; once they are wrapped as arrays, saved
    references to them must point at the wrapped arrays, so backward sees outputs."""
    saved = getattr(ctx, "_saved", ())
    swap = {id(r): o for r, o in zip(raw, outs) if r is not o}
    if saved:
        ctx._saved = tuple(swap.get(id(s), s) for s in saved)


def _as_array(out, cls, args):
    if type(out) is np.ndarray:
        return out
    if isinstance(out, np.generic):          # NumPy returns scalars for 0-d results
        return np.asarray(out)
    if hasattr(out, "__cuda_array_interface__"):
        return out
    _refuse_torch(cls, args)
    raise TypeError(f"{cls.__name__}.forward must return arrays, got {type(out).__name__}")


def _refuse_torch(cls, args):
    """Raise the TypeError for the first torch.Tensor among the arguments of ``cls.apply``, if any."""
    for i, a in enumerate(args):
        if is_torch(a):
            raise not_a_tensor(f"{cls.__name__}.apply", f"argument {i}", a) from None


def _device_list(args):
    return " and ".join(sorted({a.device for a in args if isinstance(a, Tensor)}))

