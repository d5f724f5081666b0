"""Tensor: one array (NumPy or CuPy), its gradient, and the node that made it.

Methods mirror ``numpy.ndarray`` where the two overlap (``sum(axis, keepdims)``,
``reshape``, ``transpose``, ``swapaxes``, ``astype``, operators), so an op's
backward written for arrays also runs, recording graph, on Tensors.
"""
import numbers

import numpy as np

from . import backend


class Tensor:
    """An n-dimensional array that records the ops applied to it.

    Create one with :func:`tinygrad_rnn.tensor`, ``zeros``, ``randn``...; ``.data`` is
    the underlying array, ``.grad`` the accumulated gradient (a Tensor) of a leaf
    that requires grad, ``.grad_fn`` the Function node that produced it (None
    for a leaf).
    """

    __slots__ = ("data", "grad", "_requires_grad", "grad_fn", "_index", "_hooks", "__weakref__")
    __array_ufunc__ = None      # ndarray (op) Tensor defers to Tensor's reflected operator
    __hash__ = object.__hash__  # __eq__ is elementwise; hash by identity as PyTorch does

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        device = backend.check_device(device) if device is not None else (
            "cpu" if not _is_array(data) else backend.device_of(data))
        from_python = not _is_array(data)
        if from_python:
            data = np.asarray(data)
            if data.dtype.kind not in "biuf":
                raise TypeError(f"tensor: data must be real numbers, nested sequences of them or an array; "
                                f"got values of dtype {data.dtype}")
        dt = backend.check_dtype(dtype) if dtype is not None else backend.infer_dtype(data, from_python)
        data = backend.to_device(data, device)
        self.data = data.astype(dt, copy=False) if data.dtype != dt else data
        self.grad = None
        self.grad_fn = None
        self._index = 0
        self._hooks = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _make(cls, data, requires_grad, grad_fn, index):
        """Wrap an array that already has the right dtype and device (no checks)."""
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t._requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._index = index
        t._hooks = None
        return t

    # ----- properties -----
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        flag = bool(flag)
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only float tensors can require grad, this one is {self.dtype.name}")
        if not flag and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf; use .detach()")
        self._requires_grad = flag

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def numel(self):
        return self.data.size

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        body = np.array2string(backend.to_device(self.data, "cpu"), separator=", ", prefix="tensor(")
        extra = "" if self.dtype == backend.DEFAULT_FLOAT or self.dtype == backend.int64 else f", dtype={self.dtype.name}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{type(self.grad_fn).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ----- leaving the graph -----
    def numpy(self):
        """The data as a NumPy array (shared on cpu, copied from cuda)."""
        _refuse_while_tracing(self, "numpy()")
        return backend.to_device(self.data, "cpu")

    def item(self):
        """The value of a one-element tensor as a Python number."""
        _refuse_while_tracing(self, "item()")
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        _refuse_while_tracing(self, "bool()")
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.item())

    def detach(self):
        """The same data, cut from the graph (an op, so that a traced step replays it)."""
        return _ops.Discrete.apply(self, name="detach")

    # ----- device and dtype -----
    def to(self, device=None, dtype=None):
        """Move to ``device`` and/or cast to ``dtype``; differentiable for float dtypes."""
        out = self
        if device is not None and backend.check_device(device) != self.device:
            if device == "cuda":
                backend.cupy()
            out = _ops.ToDevice.apply(out, device)
        if dtype is not None:
            out = out.astype(dtype)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def astype(self, dtype):
        dt = backend.check_dtype(dtype)
        if dt == self.dtype:
            return self
        if dt.kind != "f":
            return _ops.Discrete.apply(self, name="astype", dtype=dt)
        return _ops.Cast.apply(self, dt)

    def float(self):
        return self.astype(backend.float32)

    def double(self):
        return self.astype(backend.float64)

    def long(self):
        return self.astype(backend.int64)

    # ----- autograd -----
    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``; see :func:`tinygrad_rnn.engine.backward`."""
        from .engine import backward
        backward([self], None if grad is None else [grad], retain_graph, create_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a non-None
        return value replaces the gradient. Returns a handle with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            node = self.grad_fn
            if node._out_hooks is None:
                node._out_hooks = {}
            hooks = node._out_hooks.setdefault(self._index, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if self.grad_fn is None:
            return
        import weakref
        node = self.grad_fn
        if node._retained is None:
            node._retained = {}
        node._retained[self._index] = weakref.ref(self)

    # ----- math (see tinygrad_rnn.xp for the definitions) -----
    def exp(self):
        return _ops.Exp.apply(self)

    def log(self):
        return _ops.Log.apply(self)

    def sqrt(self):
        return _ops.Sqrt.apply(self)

    def abs(self):
        return _ops.Abs.apply(self)

    def tanh(self):
        return _ops.Tanh.apply(self)

    def sigmoid(self):
        return _ops.Sigmoid.apply(self)

    def relu(self):
        return _ops.Relu.apply(self)

    def clip(self, min=None, max=None):
        return _xp.clip(self, min, max)

    clamp = clip

    def sum(self, axis=None, keepdims=False, dim=None):
        return _xp.sum(self, axis, keepdims, dim=dim)

    def mean(self, axis=None, keepdims=False, dim=None):
        return _xp.mean(self, axis, keepdims, dim=dim)

    def max(self, axis=None, keepdims=False, dim=None):
        return _xp.max(self, axis, keepdims, dim=dim)

    def min(self, axis=None, keepdims=False, dim=None):
        return _xp.min(self, axis, keepdims, dim=dim)

    def var(self, axis=None, keepdims=False, correction=1, dim=None):
        return _xp.var(self, axis, keepdims, correction, dim=dim)

    # ----- shape -----
    def reshape(self, *shape):
        return _xp.reshape(self, *shape)

    view = reshape

    def flatten(self):
        return _xp.reshape(self, -1)

    def transpose(self, *axes):
        return _xp.transpose(self, *axes)

    def permute(self, *axes):
        return _xp.transpose(self, *axes)

    def swapaxes(self, axis1, axis2):
        return _xp.swapaxes(self, axis1, axis2)

    @property
    def T(self):
        return _xp.transpose(self)

    def broadcast_to(self, shape):
        return _xp.broadcast_to(self, shape)

    def squeeze(self, axis=None, dim=None):
        return _xp.squeeze(self, axis, dim)

    def unsqueeze(self, axis=None, dim=None):
        return _xp.expand_dims(self, axis, dim)

    # ----- operators -----
    def __add__(self, other):
        return _ops.Add.apply(self, other) if type(other) is Tensor else _binary(_ops.Add, self, other)

    def __radd__(self, other):
        return _binary(_ops.Add, self, other)

    def __sub__(self, other):
        return _ops.Sub.apply(self, other) if type(other) is Tensor else _binary(_ops.Sub, self, other)

    def __rsub__(self, other):
        return _binary(_ops.Sub, self, other, reflected=True)

    def __mul__(self, other):
        return _ops.Mul.apply(self, other) if type(other) is Tensor else _binary(_ops.Mul, self, other)

    def __rmul__(self, other):
        return _binary(_ops.Mul, self, other)

    def __truediv__(self, other):
        return _binary(_ops.Div, self, other)

    def __rtruediv__(self, other):
        return _binary(_ops.Div, self, other, reflected=True)

    def __mod__(self, other):
        return _binary(_ops.Remainder, self, other)

    def __rmod__(self, other):
        return _binary(_ops.Remainder, self, other, reflected=True)

    def __pow__(self, other):
        return _binary(_ops.Pow, self, other)

    def __rpow__(self, other):
        return _binary(_ops.Pow, self, other, reflected=True)

    def __matmul__(self, other):
        return _binary(_ops.MatMul, self, other, scalars=False)

    def __rmatmul__(self, other):
        return _binary(_ops.MatMul, self, other, reflected=True, scalars=False)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.Abs.apply(self)

    # Comparisons and logic give bool tensors outside the graph.
    def __lt__(self, other):
        return _compare(np.less, self, other)

    def __le__(self, other):
        return _compare(np.less_equal, self, other)

    def __gt__(self, other):
        return _compare(np.greater, self, other)

    def __ge__(self, other):
        return _compare(np.greater_equal, self, other)

    def __eq__(self, other):
        return _compare(np.equal, self, other)

    def __ne__(self, other):
        return _compare(np.not_equal, self, other)

    def __and__(self, other):
        return _compare(np.logical_and, self, other)

    def __or__(self, other):
        return _compare(np.logical_or, self, other)

    def __invert__(self):
        if self.dtype != backend.bool_:
            raise TypeError(f"~ needs a bool tensor, got {self.dtype.name}")
        return _ops.Discrete.apply(self, name="logical_not")

    def any(self):
        """True if any element is nonzero (a 0-d bool tensor)."""
        return _ops.Discrete.apply(self, name="any")

    def all(self):
        """True if every element is nonzero (a 0-d bool tensor)."""
        return _ops.Discrete.apply(self, name="all")

    def __getitem__(self, index):
        return _ops.GetItem.apply(self, _raw_index(index, self))

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))


def _refuse_while_tracing(tensor, what):
    """Reading values into Python while a step is traced would bake one step's values
    into every step; the tracer catches this and runs the step step by step instead."""
    if _function.is_recording():
        raise _function.DataDependentError(
            f"{what} of a tensor of shape {tensor.shape} inside a traced step: the step reads tensor values "
            "into Python, so it cannot be replayed as a fixed sequence of ops")


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _is_array(x):
    return isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")


def as_operand(x, like, op_name):
    """Make ``x`` usable beside the tensor ``like`` in an op: Tensors pass (same
    device required), Python numbers stay scalars, arrays become constants on
    ``like``'s device."""
    if isinstance(x, Tensor):
        if x.device != like.device:
            raise ValueError(f"{op_name}: tensors on {like.device} and {x.device}; move them to one device")
        return x
    if isinstance(x, (bool, numbers.Number)) and not isinstance(x, complex):
        return x
    if _is_array(x) or isinstance(x, np.generic):
        return Tensor(x, device=like.device)
    raise TypeError(f"{op_name}: expected a Tensor, a number or an array, got {type(x).__name__}")


def _binary(fn, tensor, other, reflected=False, scalars=True):
    name = fn.__name__.lower()
    try:
        other = as_operand(other, tensor, name)
    except TypeError:
        return NotImplemented
    if not isinstance(other, Tensor):
        if not scalars:
            raise TypeError(f"{name}: both operands must be tensors or arrays, got {type(other).__name__}")
        if isinstance(other, float) and tensor.dtype.kind != "f":
            tensor = tensor.astype(backend.DEFAULT_FLOAT)   # int tensor * 0.5 is float32, as in PyTorch
    return fn.apply(other, tensor) if reflected else fn.apply(tensor, other)


def _compare(ufunc, tensor, other):
    return _ops.Discrete.apply(tensor, as_operand(other, tensor, ufunc.__name__), name=ufunc.__name__)


def _raw_index(index, like):
    """Replace Tensors and lists inside an index by arrays on ``like``'s device."""
    if isinstance(index, tuple):
        return tuple(_raw_index(i, like) for i in index)
    if isinstance(index, Tensor):
        if index.dtype.kind not in "ib":
            raise TypeError(f"getitem: index tensors must be integer or bool, got {index.dtype.name}")
        if index.device != like.device:
            raise ValueError(f"getitem: index on {index.device}, tensor on {like.device}")
        return index.data
    if isinstance(index, list):
        return backend.to_device(np.asarray(index), like.device)
    if isinstance(index, np.ndarray) and like.device != "cpu":
        return backend.to_device(index, like.device)
    return index


from . import ops as _ops  # noqa: E402  (the ops import Tensor; methods look them up at call time)
from . import function as _function  # noqa: E402
from . import xp as _xp  # noqa: E402
