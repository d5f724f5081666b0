"""A strict CPU stand-in for CuPy, for the test suite only.

The package reaches CuPy only through ``tinygrad_rnn.backend`` (``backend.cupy()``,
``backend.get_array_module``). When ``TINYGRAD_RNN_TEST_CUPY=strict`` is set,
``tests/conftest.py`` installs this module as backend's cached cupy module for the
session, so every test on the ``cuda`` device runs here, on NumPy, under CuPy's
rules for what crosses between host and device:

* ``ndarray.__array__`` raises TypeError, as CuPy's does, so ``numpy.asarray(a)``,
  ``numpy.array2string(a)`` and any other implicit conversion fail; ``a.get()`` and
  ``asnumpy(a)`` are the explicit way to the host, ``asarray(host)`` the way back.
* An operation that mixes a device array with a ``numpy.ndarray`` raises TypeError
  (``Unsupported type <class 'numpy.ndarray'>``), as CuPy's kernels do. Python and
  NumPy scalars are fine; a 0-d NumPy array is not, except in a comparison operator,
  where CuPy takes its ``.item()``. Host arrays used as indices, and host values stored
  through integer-array or mask indices, are copied to the device, as in CuPy.
* NumPy functions and ufuncs called on device arrays dispatch here through
  ``__array_function__`` / ``__array_ufunc__`` (CuPy implements both), and their results
  stay on the device.
* Reductions and integer indexing give 0-d device arrays, never host scalars, as in CuPy.
* Device-to-host transfers are counted in :data:`transfers`: ``get()``, ``asnumpy``,
  ``item()``, ``tolist()``, ``bool()``/``int()``/``float()`` of an array, its repr, and
  the synchronisations CuPy makes to size a result (boolean-mask indexing, ``nonzero``).

It is never CUDA: a run with it checks the device discipline of the code, not that the
code runs on a GPU. It is never used outside the tests.
"""
import builtins
import collections
import contextlib
import os
import sys

import numpy as _np

STAND_IN = True     # how a test tells this module from the real cupy

_THIS_FILE = os.path.normcase(os.path.abspath(__file__))
_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


# ----- the transfer counter -----
class TransferCounter:
    """Copies between host and device since the last :meth:`reset`.

    ``to_host`` counts device-to-host transfers (each a synchronisation on a GPU),
    ``to_device`` host-to-device ones; ``sites`` counts the device-to-host ones by the
    ``file:line`` outside this module that made them."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.to_host = 0
        self.to_device = 0
        self.sites = collections.Counter()

    def __repr__(self):
        return f"TransferCounter(to_host={self.to_host}, to_device={self.to_device})"


transfers = TransferCounter()


@contextlib.contextmanager
def counting():
    """``with counting() as c:`` resets :data:`transfers` and yields it."""
    transfers.reset()
    yield transfers


def _caller():
    frame = sys._getframe(2)
    while frame is not None and os.path.normcase(os.path.abspath(frame.f_code.co_filename)) == _THIS_FILE:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.relpath(frame.f_code.co_filename)}:{frame.f_lineno}"


def _to_host():
    transfers.to_host += 1
    transfers.sites[_caller()] += 1


def _to_device():
    transfers.to_device += 1


# ----- operands -----
_SCALAR_TYPES = frozenset({int, float, bool, complex}
                          | {_np.dtype(c).type for c in "?bhilqBHILQefdFD"})
_HANDLED_TYPES = None   # (ndarray, numpy.ndarray), set below


def _unsupported(x):
    hint = (" (a NumPy array beside a device array: move it with cupy.asarray first)"
            if isinstance(x, _np.ndarray) else "")
    return TypeError(f"Unsupported type {type(x)}{hint}")


def _operand(x):
    """A kernel operand: a device array or a Python/NumPy scalar, as CuPy's _preprocess_args."""
    if type(x) is ndarray:
        return x._a
    if type(x) in _SCALAR_TYPES:
        return x
    raise _unsupported(x)


def _unwrap(x):
    """Arguments of a function: device arrays unwrapped (also inside lists and tuples);
    a NumPy array anywhere is refused."""
    if type(x) is ndarray:
        return x._a
    if isinstance(x, _np.ndarray):
        raise _unsupported(x)
    if type(x) in (list, tuple):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(a):
    out = ndarray.__new__(ndarray)
    out._a = a
    return out


def _result(r):
    """Any array or scalar result as a device array (CuPy never returns host scalars)."""
    if isinstance(r, _np.ndarray):
        return _wrap(r)
    if isinstance(r, (_np.generic, bool, int, float, complex)):
        return _wrap(_np.asarray(r))
    if isinstance(r, (tuple, list)):
        items = [_wrap(v) if isinstance(v, _np.ndarray)
                 else _wrap(_np.asarray(v)) if isinstance(v, _np.generic) else v for v in r]
        return type(r)(*items) if hasattr(r, "_fields") else type(r)(items)
    return r


def _outs(out):
    """(what NumPy gets as ``out``, the device arrays to hand back)."""
    if out is None:
        return None, None
    if isinstance(out, tuple):
        if builtins.any(type(o) is not ndarray for o in out):
            raise TypeError("Output arguments must be cupy.ndarray")
        return tuple(o._a for o in out), out
    if type(out) is not ndarray:
        raise TypeError("Output arguments must be cupy.ndarray")
    return out._a, out


def _hand_back(res, out_objs):
    if out_objs is None:
        return _result(res)
    return out_objs


# ----- ufuncs -----
class ufunc:
    """A NumPy ufunc on device arrays: inputs are device arrays or scalars, ``out`` a device array."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.__doc__ = np_ufunc.__doc__

    def __repr__(self):
        return f"<ufunc '{self.__name__}' (strict stand-in)>"

    def __call__(self, *args, out=None, **kwargs):
        ins, extra = args[:self.nin], args[self.nin:]
        if extra:
            if out is not None:
                raise TypeError("cannot specify 'out' as both a positional and keyword argument")
            out = extra if len(extra) > 1 else extra[0]
        xs = [_operand(x) for x in ins]
        np_out, out_objs = _outs(out)
        if "where" in kwargs:
            kwargs["where"] = _operand(kwargs["where"])
        res = self._u(*xs, out=np_out, **kwargs) if np_out is not None else self._u(*xs, **kwargs)
        return _hand_back(res, out_objs)

    def at(self, a, indices, b=None):
        if type(a) is not ndarray:
            raise TypeError(f"{self.__name__}.at: the operand must be a cupy.ndarray, got {type(a)}")
        index, advanced, mask = _index(indices)
        if mask:
            _to_host()
        if advanced and self._u is _np.add and a.dtype.type not in _ATOMIC_ADD:
            raise TypeError("scatter_add only supports int32, float16, float32, float64, uint32, uint64, "
                            f"as data type (got {a.dtype})")
        args = () if b is None else (_stored_value(b, advanced or mask),)
        self._u.at(a._a, index, *args)

    def _method(name):
        def method(self, array, *args, out=None, **kwargs):
            np_out, out_objs = _outs(out)
            kw = dict(kwargs, out=np_out) if np_out is not None else kwargs
            res = getattr(self._u, name)(_operand(array), *_unwrap(args), **kw)
            return _hand_back(res, out_objs)
        method.__name__ = name
        return method

    reduce = _method("reduce")
    accumulate = _method("accumulate")
    reduceat = _method("reduceat")
    del _method

    def outer(self, a, b, **kwargs):
        return _result(self._u.outer(_operand(a), _operand(b), **kwargs))


_ATOMIC_ADD = frozenset({_np.int32, _np.float16, _np.float32, _np.float64, _np.uint32, _np.uint64})

_UFUNC_NAMES = sorted({getattr(_np, n).__name__ for n in dir(_np) if isinstance(getattr(_np, n), _np.ufunc)}
                      | {n for n in dir(_np) if isinstance(getattr(_np, n), _np.ufunc)})
for _name in _UFUNC_NAMES:
    globals()[_name] = ufunc(getattr(_np, _name))
del _name


# ----- indexing -----
def _index(idx):
    """(NumPy index, has an integer array, has a boolean mask). Host index arrays and lists
    are copied to the device, as CuPy's _prepare_slice_list does."""
    items = idx if isinstance(idx, tuple) else (idx,)
    out, advanced, mask = [], False, False
    for s in items:
        if type(s) is ndarray:
            a = s._a
        elif isinstance(s, _np.ndarray):
            a = s
        elif isinstance(s, list):
            a = _np.asarray(s)
            if a.size == 0:
                a = a.astype(_np.intp)
        elif isinstance(s, (bool, _np.bool_)):
            a = _np.asarray(s)
        else:
            out.append(s)
            continue
        kind = a.dtype.kind
        if kind in "iu":
            advanced = True
        elif kind == "b":
            mask = True
        else:
            raise IndexError(f"arrays used as indices must be of integer or boolean type. (actual: {a.dtype.type})")
        out.append(a)
    return (tuple(out) if isinstance(idx, tuple) else out[0]), advanced, mask


def _stored_value(value, advanced):
    """A value stored through an index: CuPy copies a host array only through an integer-array
    or mask index; with basic indexing it fills, which takes scalars (and 0-d arrays) only."""
    if type(value) is ndarray:
        return value._a
    if type(value) in _SCALAR_TYPES:
        return value
    if isinstance(value, _np.ndarray):
        if value.ndim == 0:
            return value
        if advanced:
            _to_device()
            return value
        raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
    if advanced and isinstance(value, (list, tuple)):
        _to_device()
        return _np.asarray(value)
    raise _unsupported(value)


# ----- the array -----
def _should_use_rop(x, y):
    """CuPy's rule for deferring a binary operator to the other operand (NEP 13)."""
    try:
        y_ufunc = y.__array_ufunc__
    except AttributeError:
        return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)
    return y_ufunc is None


def _binop(name, reflected=False):
    uf = globals()[name]

    def op(self, other):
        if type(other) is not ndarray and _should_use_rop(self, other):
            return NotImplemented
        return uf(other, self) if reflected else uf(self, other)
    return op


def _inplace(name):
    uf = globals()[name]

    def op(self, other):
        return uf(self, other, out=self)
    return op


def _compare(name):
    uf = globals()[name]

    def op(self, other):
        if type(other) is ndarray:
            return uf(self, other)
        if _should_use_rop(self, other):
            return NotImplemented
        if isinstance(other, _np.ndarray) and other.ndim == 0:
            other = other.item()        # as CuPy's __richcmp__ does
        if type(other) not in _SCALAR_TYPES and not isinstance(other, _np.ndarray):
            raise TypeError(f"operand type(s) all returned NotImplemented from __array_ufunc__"
                            f"(<ufunc '{name}'>, '__call__', cupy.ndarray, {type(other).__name__})")
        return uf(self, other)
    return op


class _MemoryPointer:
    """What CuPy's ``ndarray.data`` is: a pointer to device memory, not an array."""

    def __init__(self, array):
        self.ptr = array.__array_interface__["data"][0]
        self.device_id = 0

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} (strict stand-in)>"


class _Device:
    id = 0

    def __init__(self, device=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    def __repr__(self):
        return "<CUDA Device 0 (strict stand-in)>"


class ndarray:
    """A device array of the stand-in: a NumPy array that only the stand-in's functions
    touch, and that refuses to become or meet a host (NumPy) array implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise TypeError("strict stand-in: ndarray(memptr=..., strides=...) is not supported")
        self._a = _np.empty(shape, dtype, order=order)

    # ----- attributes -----
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _MemoryPointer(self._a))
    device = property(lambda self: _Device())
    base = property(lambda self: _wrap(self._a.base) if isinstance(self._a.base, _np.ndarray) else None)
    T = property(lambda self: self if self._a.ndim < 2 else _wrap(self._a.T))
    mT = property(lambda self: _wrap(self._a.mT))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    @property
    def __cuda_array_interface__(self):
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "descr": a.dtype.descr, "version": 3,
                "strides": None if a.flags.c_contiguous else a.strides, "stream": 1,
                "data": (a.__array_interface__["data"][0] if a.size else 0, False)}

    # ----- NumPy interop, as CuPy's -----
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inputs_out = inputs + out
            kwargs["out"] = out[0]
        else:
            inputs_out = inputs
        mine = globals().get(uf.__name__)
        if not isinstance(mine, ufunc):
            return NotImplemented
        if method == "__call__":
            for x in inputs_out:
                if (not hasattr(x, "__cuda_array_interface__") and type(x) not in _SCALAR_TYPES
                        and not isinstance(x, _np.ndarray)):
                    return NotImplemented
            if uf.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
                inputs = tuple(x.item() if isinstance(x, _np.ndarray) and x.ndim == 0 else x for x in inputs)
            return mine(*inputs, **kwargs)
        if method in ("at", "reduce", "accumulate", "reduceat", "outer"):
            return getattr(mine, method)(*inputs, **kwargs)
        return NotImplemented

    def __array_function__(self, func, types, args, kwargs):
        target = sys.modules[__name__]
        for part in func.__module__.split(".")[1:]:
            target = getattr(target, part, None)
            if target is None:
                return NotImplemented
        mine = getattr(target, func.__name__, None)
        if mine is None or mine is func:
            return NotImplemented
        if builtins.any(t not in _HANDLED_TYPES for t in types):
            return NotImplemented
        return mine(*args, **kwargs)

    # ----- leaving the device: each one a counted transfer -----
    def get(self, stream=None, order="C", out=None, blocking=True):
        _to_host()
        if out is not None:
            if not isinstance(out, _np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if out.dtype != self.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if out.shape != self.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
            _np.copyto(out, self._a)
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        _to_device()
        _np.copyto(self._a, arr)

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        _to_host()
        return self._a.item()

    def tolist(self):
        _to_host()
        return self._a.tolist()

    def tobytes(self, order="C"):
        _to_host()
        return self._a.tobytes(order)

    def __bool__(self):
        if self._a.size == 0:
            raise ValueError("The truth value of an empty array is ambiguous. Use `array.size > 0` "
                             "to check that an array is not empty.")
        if self._a.size > 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous. "
                             "Use a.any() or a.all()")
        _to_host()
        return bool(self._a)

    def __int__(self):
        _to_host()
        return int(self._a)

    def __float__(self):
        _to_host()
        return float(self._a)

    def __complex__(self):
        _to_host()
        return complex(self._a)

    def __repr__(self):
        _to_host()
        return repr(self._a)

    def __str__(self):
        _to_host()
        return str(self._a)

    def __format__(self, spec):
        _to_host()
        return format(self._a, spec)

    def __reduce__(self):
        return array, (self.get(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ----- containers -----
    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, idx):
        index, advanced, mask = _index(idx)
        if mask:
            _to_host()          # CuPy synchronises to learn the result's size
        r = self._a[index]
        if not isinstance(r, _np.ndarray):       # a full integer index: a 0-d view, as in CuPy
            if advanced or mask:
                r = _np.asarray(r)
            else:
                r = self._a[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]
        return _wrap(r)

    def __setitem__(self, idx, value):
        index, advanced, mask = _index(idx)
        if mask:
            _to_host()
        self._a[index] = _stored_value(value, advanced or mask)

    def scatter_add(self, slices, value):
        add.at(self, slices, value)  # noqa: F821 (defined with the ufuncs)

    # ----- operators -----
    __add__, __radd__, __iadd__ = _binop("add"), _binop("add", True), _inplace("add")
    __sub__, __rsub__, __isub__ = _binop("subtract"), _binop("subtract", True), _inplace("subtract")
    __mul__, __rmul__, __imul__ = _binop("multiply"), _binop("multiply", True), _inplace("multiply")
    __truediv__, __rtruediv__, __itruediv__ = (_binop("true_divide"), _binop("true_divide", True),
                                               _inplace("true_divide"))
    __floordiv__, __rfloordiv__, __ifloordiv__ = (_binop("floor_divide"), _binop("floor_divide", True),
                                                  _inplace("floor_divide"))
    __mod__, __rmod__, __imod__ = _binop("remainder"), _binop("remainder", True), _inplace("remainder")
    __pow__, __rpow__, __ipow__ = _binop("power"), _binop("power", True), _inplace("power")
    __and__, __rand__, __iand__ = _binop("bitwise_and"), _binop("bitwise_and", True), _inplace("bitwise_and")
    __or__, __ror__, __ior__ = _binop("bitwise_or"), _binop("bitwise_or", True), _inplace("bitwise_or")
    __xor__, __rxor__, __ixor__ = _binop("bitwise_xor"), _binop("bitwise_xor", True), _inplace("bitwise_xor")
    __lshift__, __rlshift__, __ilshift__ = _binop("left_shift"), _binop("left_shift", True), _inplace("left_shift")
    __rshift__, __rrshift__, __irshift__ = (_binop("right_shift"), _binop("right_shift", True),
                                            _inplace("right_shift"))
    __matmul__, __rmatmul__ = _binop("matmul"), _binop("matmul", True)
    __divmod__, __rdivmod__ = _binop("divmod"), _binop("divmod", True)
    __lt__, __le__, __gt__, __ge__ = _compare("less"), _compare("less_equal"), _compare("greater"), \
        _compare("greater_equal")
    __eq__, __ne__ = _compare("equal"), _compare("not_equal")

    def __neg__(self):
        return negative(self)  # noqa: F821

    def __pos__(self):
        return self

    def __abs__(self):
        return absolute(self)  # noqa: F821

    def __invert__(self):
        return invert(self)  # noqa: F821


def _forward(name, syncs=False):
    """The NumPy method ``name`` on the device array; results stay on the device."""
    def method(self, *args, **kwargs):
        if syncs:
            _to_host()
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _outs(out)[0]
        res = getattr(self._a, name)(*_unwrap(args), **{k: (v if k == "out" else _unwrap(v))
                                                         for k, v in kwargs.items()})
        if res is self._a:
            return self
        if out is not None and res is kwargs["out"]:
            return out
        return _result(res)
    method.__name__ = method.__qualname__ = name
    return method


for _name in ("reshape", "transpose", "swapaxes", "astype", "copy", "view", "ravel", "flatten", "squeeze",
              "sum", "prod", "mean", "var", "std", "max", "min", "argmax", "argmin", "any", "all",
              "cumsum", "cumprod", "clip", "round", "repeat", "diagonal", "trace", "dot", "conj",
              "conjugate", "sort", "argsort", "put", "ptp", "choose", "compress", "partition",
              "argpartition"):
    setattr(ndarray, _name, _forward(_name))
ndarray.nonzero = _forward("nonzero", syncs=True)
ndarray.take = lambda self, indices, axis=None, out=None: take(self, indices, axis, out)  # noqa: F821
del _name

_HANDLED_TYPES = (ndarray, _np.ndarray)


# ----- functions -----
def _function(np_fn, name, syncs=False):
    def fn(*args, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _outs(out)[0]
        args = _unwrap(args)
        kwargs = {k: (v if k == "out" else _unwrap(v)) for k, v in kwargs.items()}
        if syncs:
            _to_host()
        res = np_fn(*args, **kwargs)
        if out is not None and res is kwargs["out"]:
            return out
        return _result(res)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``numpy.{name}`` on device arrays (strict stand-in)."
    return fn


_FUNCTIONS = """
empty zeros ones arange linspace logspace eye identity
diag diagflat tri tril triu meshgrid indices
reshape ravel transpose moveaxis swapaxes rollaxis expand_dims squeeze broadcast_to broadcast_arrays
concatenate stack vstack hstack dstack column_stack split array_split flip fliplr flipud roll rot90 tile
repeat pad take_along_axis put_along_axis choose compress diagonal atleast_1d atleast_2d atleast_3d
cumsum cumprod diff sort argsort partition argpartition argmax argmin sum prod mean var std max min amax amin
nanmax nanmin nansum nanmean ptp any all count_nonzero array_equal array_equiv allclose isclose
dot vdot inner outer tensordot einsum kron trace cross clip round around searchsorted median average
cov corrcoef bincount histogram convolve interp real imag nan_to_num isreal iscomplex
""".split()
for _name in _FUNCTIONS:
    globals()[_name] = _function(getattr(_np, _name), _name)
for _name in ("nonzero", "argwhere", "flatnonzero", "unique"):
    globals()[_name] = _function(getattr(_np, _name), _name, syncs=True)
del _name

# Dtypes, constants, and functions of dtypes and shapes.
from numpy import (dtype, finfo, iinfo, can_cast, promote_types, min_scalar_type,  # noqa: E402,F401
                   issubdtype, isscalar, broadcast_shapes, newaxis, inf, nan, pi, e,
                   bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16, float32, float64,
                   complex64, complex128, intp, uintp, integer, floating, number, generic)
float_, int_, complex_ = float64, int64, complex128


def _meta(a):
    return _np.empty(0, a.dtype) if type(a) is ndarray else _unwrap(a)


def result_type(*arrays_and_dtypes):
    return _np.result_type(*(_meta(a) for a in arrays_and_dtypes))


def shape(a):
    return a.shape if type(a) is ndarray else _np.shape(_unwrap(a))


def ndim(a):
    return a.ndim if type(a) is ndarray else _np.ndim(_unwrap(a))


def size(a, axis=None):
    if type(a) is ndarray:
        return a.size if axis is None else a.shape[axis]
    return _np.size(_unwrap(a), axis)


def _fill_value(value):
    """What CuPy's ``fill`` takes: a scalar, or a 0-d array (device or host)."""
    if type(value) is ndarray or isinstance(value, _np.ndarray):
        if value.shape != ():
            raise ValueError(f"non-scalar {'cupy' if type(value) is ndarray else 'numpy'}.ndarray "
                             "cannot be used for fill")
        return value._a if type(value) is ndarray else value
    return _operand(value)


def _fill(self, value):
    self._a.fill(_fill_value(value))


ndarray.fill = _fill


def full(shape, fill_value, dtype=None, order="C"):
    value = _fill_value(fill_value)
    return _wrap(_np.full(shape, value, dtype=_np.asarray(value).dtype if dtype is None else dtype, order=order))


def _like(a):
    """The array a ``*_like`` function copies the shape, dtype and layout of: CuPy reads only those,
    so a host array is fine there."""
    return a._a if type(a) is ndarray else a if isinstance(a, _np.ndarray) else _unwrap(a)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    return _wrap(_np.full_like(_like(a), _fill_value(fill_value), dtype=dtype, order=order, shape=shape))


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return _wrap(_np.empty_like(_like(a), dtype=dtype, order=order, shape=shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return _wrap(_np.zeros_like(_like(a), dtype=dtype, order=order, shape=shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return _wrap(_np.ones_like(_like(a), dtype=dtype, order=order, shape=shape))


def take(a, indices, axis=None, out=None):
    """Host indices are copied to the device, as CuPy's take does."""
    if type(a) is not ndarray:
        raise _unsupported(a)
    if isinstance(indices, _np.ndarray):
        _to_device()
    index = indices._a if type(indices) is ndarray else indices
    np_out, out_objs = _outs(out)
    return _hand_back(_np.take(a._a, index, axis=axis, out=np_out), out_objs)


def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)  # noqa: F821
    return _result(_np.where(_operand(condition), _operand(x), _operand(y)))


def copyto(dst, src, casting="same_kind", where=True):
    if type(dst) is not ndarray:
        raise TypeError(f"copyto: dst must be a cupy.ndarray, got {type(dst)}")
    if isinstance(src, _np.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.item()
    _np.copyto(dst._a, _operand(src), casting=casting, where=True if where is True else _operand(where))


def asarray(a, dtype=None, order=None, *, blocking=False):
    """A device array: ``a`` itself when it is one (of this dtype), else a copy of host data."""
    if type(a) is ndarray:
        return a if dtype is None or _np.dtype(dtype) == a.dtype else _wrap(a._a.astype(dtype))
    _to_device()
    return _wrap(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if type(obj) is ndarray:
        a = _np.array(obj._a, dtype=dtype, copy=copy or None, order=order, ndmin=ndmin)
        return obj if a is obj._a else _wrap(a)
    _to_device()
    return _wrap(_np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


asanyarray = asarray


def ascontiguousarray(a, dtype=None):
    if type(a) is not ndarray:
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got {type(a).__name__})")
    r = _np.ascontiguousarray(a._a, dtype=dtype)
    return a if r is a._a else _wrap(r)


def copy(a, order="K"):
    if type(a) is not ndarray:
        raise _unsupported(a)
    return _wrap(a._a.copy(order=order))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """The explicit way to the host: a NumPy copy of a device array (counted); host data as is."""
    if type(a) is ndarray:
        return a.get(stream=stream, order=order, out=out)
    if out is not None:
        out[...] = a
        return out
    return _np.asarray(a, order=order)


def get_array_module(*args):
    for a in args:
        if type(a) is ndarray:
            return sys.modules[__name__]
    return _np


def is_available():
    return True


class _Linalg:
    """``cupy.linalg``: what CuPy implements of ``numpy.linalg`` (no general ``eig``)."""


linalg = _Linalg()
for _name in ("norm", "svd", "qr", "eigh", "eigvalsh", "inv", "pinv", "solve", "det", "slogdet", "cholesky",
              "lstsq", "matrix_power", "matrix_rank", "tensorsolve", "tensorinv"):
    setattr(linalg, _name, _function(getattr(_np.linalg, _name), _name))
del _name


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class _Stream:
    def synchronize(self):
        pass


class _Cuda:
    """``cupy.cuda``: one device, nothing to synchronise."""

    runtime = _Runtime()
    Device = _Device

    class Stream(_Stream):
        null = _Stream()

    @staticmethod
    def is_available():
        return True

    @staticmethod
    def get_device_id():
        return 0


cuda = _Cuda()


# ----- installing it where the package looks for cupy -----
def install(backend):
    """Make ``backend.cupy()`` return this module; returns a function that undoes it."""
    saved = backend._cupy, backend._cupy_error
    backend._cupy, backend._cupy_error = sys.modules[__name__], None

    def restore():
        backend._cupy, backend._cupy_error = saved
    return restore


def is_stand_in(module):
    return getattr(module, "STAND_IN", False) is True


