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

    __slots__ = {"data": "The underlying array (numpy.ndarray or cupy.ndarray).",
                 "_grad": None,
                 "grad_fn": "The Function node that made this tensor, None for a leaf.",
                 "_requires_grad": None, "_index": None, "_hooks": None, "__weakref__": None}
    __array_ufunc__ = None      # ndarray (op) Tensor defers to Tensor's reflected operator
    __hash__ = object.__hash__  # __eq__ is elementwise; hash by identity as PyTorch does

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        device = backend.check_device(device) if device is not None else (
            "cpu" if not _is_array(data) else backend.device_of(data))
        from_python = not _is_array(data)
        if from_python:
            data = _python_array(data, dtype)
            if data.dtype.kind not in "biuf":
                raise TypeError(f"tensor: data must be real numbers, nested sequences of them or an array; "
                                f"got values of dtype {data.dtype}")
        dt = backend.check_dtype(dtype) if dtype is not None else backend.infer_dtype(data, from_python)
        if data.dtype.kind == "u" and dt.kind == "i" and data.size and data.max() > _INT64.max:
            raise ValueError(f"tensor: value {data.max()} of a {data.dtype} array is out of range for int64 "
                             f"(at most 2**63 - 1); pass dtype=tg.float64 for a float tensor")
        data = backend.to_device(data, device)
        self.data = data.astype(dt, copy=False) if data.dtype != dt else data
        self._grad = None
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
        t._grad = None
        t._requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._index = index
        t._hooks = None
        return t

    # ----- properties -----
    @property
    def grad(self):
        """The gradient (a Tensor) that backward accumulated into this leaf, or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        """Set by backward; by hand only to None or a Tensor of this tensor's shape, dtype and
        device (as PyTorch checks): an optimizer must never see a gradient that would reshape or
        retype its parameter."""
        if value is not None:
            if not isinstance(value, Tensor):
                raise not_a_tensor("grad", "the value assigned", value, f"None or a Tensor of shape {self.shape}")
            if value.shape != self.shape or value.dtype != self.dtype or value.device != self.device:
                raise ValueError(f"grad: assigned a gradient of shape {value.shape}, dtype {value.dtype.name} on "
                                 f"{value.device} to a tensor of shape {self.shape}, dtype {self.dtype.name} on "
                                 f"{self.device}; they must match")
        self._grad = value

    @property
    def requires_grad(self):
        """Whether gradients flow to this tensor (only float tensors can require grad)."""
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
        """Set ``requires_grad`` in place (on a leaf) and return self, as PyTorch's ``requires_grad_``."""
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        """True for a tensor no recorded op made (``grad_fn`` is None): backward fills its ``.grad``."""
        return self.grad_fn is None

    @property
    def shape(self):
        """The size of each dim, a tuple of ints (PyTorch's ``x.shape`` / ``x.size()``)."""
        return self.data.shape

    @property
    def dtype(self):
        """The NumPy dtype of the elements: float32, float64, int64 or bool."""
        return self.data.dtype

    @property
    def device(self):
        """``'cpu'`` for a NumPy array, ``'cuda'`` for a CuPy one."""
        return backend.device_of(self.data)

    @property
    def ndim(self):
        """The number of dims (PyTorch's ``dim()``)."""
        return self.data.ndim

    @property
    def size(self):
        """The number of elements, as NumPy's ``size`` (PyTorch's ``numel()``; its ``size()`` is ``shape``)."""
        return self.data.size

    def numel(self):
        """The number of elements, as PyTorch's ``numel()``."""
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
        """The values as (nested) Python lists of numbers, as ``numpy().tolist()``."""
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
        """A copy on the cpu (self if already there); differentiable."""
        return self.to("cpu")

    def cuda(self):
        """A copy on the GPU (self if already there; needs CuPy); differentiable."""
        return self.to("cuda")

    def astype(self, dtype):
        """The values cast to ``dtype`` (self if it already has it), as NumPy's ``astype`` and PyTorch's
        ``to(dtype)``. Differentiable to a float dtype; a cast to int or bool is a constant."""
        dt = backend.check_dtype(dtype)
        if dt == self.dtype:
            return self
        if dt.kind != "f":
            return _ops.Discrete.apply(self, name="astype", dtype=dt)
        return _ops.Cast.apply(self, dt)

    def float(self):
        """Cast to float32, as PyTorch's ``float()``."""
        return self.astype(backend.float32)

    def double(self):
        """Cast to float64, as PyTorch's ``double()``."""
        return self.astype(backend.float64)

    def long(self):
        """Cast to int64 (a constant, no gradient), as PyTorch's ``long()``."""
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
        """e ** x elementwise."""
        return _ops.Exp.apply(self)

    def log(self):
        """The natural log elementwise (-inf at 0, NaN below)."""
        return _ops.Log.apply(self)

    def sqrt(self):
        """The square root elementwise."""
        return _ops.Sqrt.apply(self)

    def abs(self):
        """|x| elementwise; its gradient at 0 is 0, as in PyTorch."""
        return _ops.Abs.apply(self)

    def tanh(self):
        """The hyperbolic tangent elementwise."""
        return _ops.Tanh.apply(self)

    def sigmoid(self):
        """1 / (1 + e ** -x) elementwise, computed without overflow."""
        return _ops.Sigmoid.apply(self)

    def relu(self):
        """max(x, 0) elementwise; its gradient at 0 is 0, as in PyTorch."""
        return _ops.Relu.apply(self)

    def clip(self, min=None, max=None):
        """Clamp to [min, max] (either may be None); the gradient passes where
        min <= x <= max. ``clamp`` is the same, as in PyTorch."""
        return _xp.clip(self, min, max)

    clamp = clip

    def sum(self, axis=None, keepdims=False, dim=None):
        """Sum over ``axis`` (None: all; an int or a tuple; ``dim`` is PyTorch's name
        for it), keeping the reduced dims as size 1 with ``keepdims`` (PyTorch's ``keepdim``)."""
        return _xp.sum(self, axis, keepdims, dim=dim)

    def mean(self, axis=None, keepdims=False, dim=None):
        """Mean over ``axis`` (``dim``), as ``sum``."""
        return _xp.mean(self, axis, keepdims, dim=dim)

    def max(self, axis=None, keepdims=False, dim=None):
        """Largest value over ``axis`` (``dim``): the values only, as PyTorch's ``amax``. Tied maxima
        share the gradient equally; a NaN is the maximum and takes the gradient, as in PyTorch's ``max()``."""
        return _xp.max(self, axis, keepdims, dim=dim)

    def min(self, axis=None, keepdims=False, dim=None):
        """Smallest value over ``axis`` (``dim``): the values only, as PyTorch's ``amin``. Tied minima
        share the gradient equally; a NaN is the minimum and takes the gradient, as in PyTorch's ``min()``."""
        return _xp.min(self, axis, keepdims, dim=dim)

    def var(self, axis=None, keepdims=False, correction=1, dim=None):
        """Variance over ``axis`` (``dim``), dividing by n - ``correction``: 1 (unbiased)
        as PyTorch's default, 0 for NumPy's population variance."""
        return _xp.var(self, axis, keepdims, correction, dim=dim)

    def softmax(self, axis=-1, dim=None):
        """exp(x) / sum(exp(x)) over ``axis`` (PyTorch's ``dim``; default the last), computed
        without overflow: ``x.softmax(dim=1)`` is ``F.softmax(x, dim=1)``."""
        return _functional.softmax(self, axis, dim)

    def log_softmax(self, axis=-1, dim=None):
        """log(softmax(x)) over ``axis`` (PyTorch's ``dim``; default the last), computed stably
        as x - logsumexp(x): ``x.log_softmax(dim=1)`` is ``F.log_softmax(x, dim=1)``."""
        return _functional.log_softmax(self, axis, dim)

    # ----- shape -----
    def reshape(self, *shape):
        """The same elements in a new shape, given as ints or one tuple; one dim may be -1
        (inferred). ``view`` is the same (it may copy, unlike PyTorch's)."""
        return _xp.reshape(self, *shape)

    view = reshape

    def flatten(self):
        """The elements as one dim, in row-major order."""
        return _xp.reshape(self, -1)

    def transpose(self, *axes):
        """Permute the dims as ``numpy.transpose``: reversed when no axes are given.
        PyTorch's ``transpose(d0, d1)`` swaps two dims: that is ``swapaxes`` here."""
        return _xp.transpose(self, *axes)

    def permute(self, *axes):
        """Reorder the dims: dim i of the result is dim ``axes[i]`` of self, as PyTorch's ``permute``."""
        return _xp.transpose(self, *axes)

    def swapaxes(self, axis1, axis2):
        """Exchange two dims (PyTorch's ``transpose(dim0, dim1)``)."""
        return _xp.swapaxes(self, axis1, axis2)

    @property
    def T(self):
        """The dims reversed (the transpose of a matrix)."""
        return _xp.transpose(self)

    def broadcast_to(self, shape):
        """A view of ``shape`` under NumPy broadcasting (PyTorch's ``expand``); its gradient is summed back."""
        return _xp.broadcast_to(self, shape)

    def squeeze(self, axis=None, dim=None):
        """Drop size-1 dims: all of them, or only ``axis`` (``dim``), which must have size 1."""
        return _xp.squeeze(self, axis, dim)

    def unsqueeze(self, axis=None, dim=None):
        """Insert a size-1 dim at ``axis`` (``dim``; negative counts from the end), as PyTorch's ``unsqueeze``."""
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


_INT64 = np.iinfo(np.int64)


def _python_array(data, dtype):
    """Python data (numbers, nested sequences of them) as a NumPy array. An int beyond int64
    raises where the tensor would be int64 (all-int data, or an int dtype), as in PyTorch:
    NumPy would make it uint64, which wraps to a negative int64, or float64, or an object."""
    array = np.asarray(data)
    kind = array.dtype.kind
    if kind in "uO" or (kind == "f" and array.size and np.abs(array).max() >= 2.0 ** 63):
        leaves = _leaves(data)
        huge = [x for x in leaves if isinstance(x, (int, np.integer)) and not _INT64.min <= x <= _INT64.max]
        if huge:
            as_int = (all(isinstance(x, (int, np.integer)) for x in leaves) if dtype is None
                      else backend.check_dtype(dtype).kind != "f")
            if as_int:
                raise ValueError(f"tensor: {huge[0]} is out of range for int64 (integers must lie in "
                                 "[-2**63, 2**63 - 1]); pass dtype=tg.float64 for a float tensor")
            if kind == "O" and all(isinstance(x, numbers.Real) for x in leaves):
                array = np.array(data, dtype=np.float64)
    if (array.dtype.kind == "f" and dtype is not None and backend.check_dtype(dtype).kind in "iu" and array.size
            and not (np.isfinite(array).all() and np.abs(array).max() < 2.0 ** 63)):
        bad = array[~np.isfinite(array) | (np.abs(array) >= 2.0 ** 63)].flat[0]
        raise ValueError(f"tensor: {bad} cannot be an int64 (integers must be finite and lie in "
                         "[-2**63, 2**63 - 1]); pass a float dtype")
    return array


def _leaves(data):
    """The numbers in ``data``, a number or nested lists and tuples of them, flattened."""
    if isinstance(data, (list, tuple)):
        return [x for item in data for x in _leaves(item)]
    return [data]


def not_a_tensor(owner, what, value, expected="a tinygrad_rnn Tensor"):
    """The TypeError for ``value`` given where a Tensor was expected. It names the type in
    full (a torch.Tensor is not "a Tensor") and says how to convert it."""
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.partition('.')[0]}.{kind.__name__}"
    if is_torch(value):
        how = ("; convert it with tg.tensor(t.detach().cpu().numpy()), or a torch module's weights "
               "with tg.nn.utils.from_torch_state_dict")
    elif isinstance(value, (list, tuple, np.ndarray)):
        how = "; convert it with tg.tensor(...)"
    else:
        how = ""
    article = "an" if name[0] in "aeiou" else "a"
    return TypeError(f"{owner}: {what} must be {expected}, got {article} {name}{how}")


def is_torch(value):
    """True for an object of PyTorch's (a torch.Tensor, a torch.nn.Parameter...)."""
    return type(value).__module__.partition(".")[0] == "torch"


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
    raise not_a_tensor(op_name, "each operand", x, "a tinygrad_rnn Tensor, a number or an array")


def _binary(fn, tensor, other, reflected=False, scalars=True):
    name = fn.__name__.lower()
    try:
        other = as_operand(other, tensor, name)
    except TypeError:
        if is_torch(other):
            raise               # torch would not take our Tensor either: say what was expected
        return NotImplemented   # another type may know how to combine with a Tensor
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
from . import functional as _functional  # noqa: E402
