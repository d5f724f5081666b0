"""Array modules, devices and dtypes.

This is the only module that imports CuPy, and it does so lazily: importing
tinygrad_rnn never probes for a GPU. Every other module asks here for the array
module (``numpy`` or ``cupy``) that holds a given array, so one code path
serves both devices (the ``get_array_module`` idiom of Chainer and DeZero).
"""
import numpy as np

DEVICES = ("cpu", "cuda")

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
SUPPORTED_DTYPES = (float32, float64, int64, bool_)
DEFAULT_FLOAT = float32

# Lossless widenings applied to arrays handed in by the user (PyTorch keeps
# these dtypes; we support fewer, so we widen instead of refusing).
_WIDEN = {"f": float32, "i": int64, "u": int64, "b": bool_}

_cupy = None
_cupy_error = None


def _load_cupy():
    """Import CuPy on first use; remember why it failed so errors can say."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception as exc:  # ImportError, or CUDA runtime errors
            _cupy_error = exc
    return _cupy


def cuda_available():
    """True when CuPy imports and sees at least one CUDA device."""
    return _load_cupy() is not None


def cupy():
    """The cupy module, or a RuntimeError saying why CUDA cannot be used."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(
            f"device 'cuda' requested but CUDA is unavailable ({_cupy_error!r}); "
            "install the extra tinygrad_rnn[cuda12] or [cuda13] on a machine with an NVIDIA GPU")
    return cp


def check_device(device):
    """Normalise a device name to 'cpu' or 'cuda'; ValueError for anything else.

    PyTorch's "cuda:N" names the GPU that CuPy uses (its current device, 0 unless the
    program chose another); tensors live on that one GPU, so any other N is refused with
    the way to choose it."""
    if device is None:
        return "cpu"
    if isinstance(device, str) and device in DEVICES:
        return device
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return _check_gpu_index(int(device[5:]))
    raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")


def _check_gpu_index(index):
    cp = cupy()
    count = cp.cuda.runtime.getDeviceCount()
    if index >= count:
        raise ValueError(f"device 'cuda:{index}' requested but CuPy sees {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    current = cp.cuda.Device().id
    if index != current:
        raise ValueError(f"device 'cuda:{index}': tensors live on CuPy's current GPU, cuda:{current}; "
                         f"choose GPU {index} with cupy.cuda.Device({index}).use() (or CUDA_VISIBLE_DEVICES) "
                         "and pass device='cuda'")
    return "cuda"


def device_of(array):
    """'cpu' for a NumPy array, 'cuda' for a CuPy array."""
    return "cpu" if isinstance(array, np.ndarray) else "cuda"


def array_module(device):
    """numpy for 'cpu', cupy for 'cuda'."""
    return np if device == "cpu" else cupy()


def get_array_module(*arrays):
    """The module (numpy or cupy) that owns the arrays; Python numbers among them don't count."""
    for a in arrays:
        if type(a) is np.ndarray:
            return np
        if hasattr(a, "__cuda_array_interface__"):
            return cupy()
    return np


def check_dtype(dtype):
    """Normalise a dtype-like (np.float32, 'float64', tg.int64, ...) to a supported np.dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype or its name, got {dtype!r}") from None
    if dt not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"dtype {dt.name} is not supported; expected one of {names}")
    return dt


def infer_dtype(array, from_python):
    """The dtype a new tensor gets when none is given, as in PyTorch.

    Python floats become float32; NumPy arrays keep float32/float64/int64/bool
    and are widened losslessly otherwise (float16 -> float32, int32 -> int64).
    """
    dt = array.dtype
    if from_python and dt.kind == "f":
        return DEFAULT_FLOAT
    if dt in SUPPORTED_DTYPES:
        return dt
    if dt.kind in _WIDEN and dt.itemsize <= _WIDEN[dt.kind].itemsize:
        return _WIDEN[dt.kind]
    raise TypeError(f"cannot make a tensor from an array of dtype {dt}; "
                    f"expected one of {', '.join(d.name for d in SUPPORTED_DTYPES)}")


def to_device(array, device):
    """Move an array to ``device`` (a no-op when it is already there)."""
    if device == "cpu":
        if isinstance(array, np.ndarray):
            return array
        return np.asarray(array) if isinstance(array, np.generic) else array.get()
    return cupy().asarray(array)


_CONSTANTS = {}


def constant(value, like):
    """``value`` as an operand beside the array ``like``: a cached 0-d NumPy array of its dtype
    for a NumPy array (NumPy 2 spends longer promoting a Python scalar than on a small array
    op), the Python number itself otherwise."""
    if type(like) is not np.ndarray:
        return value
    key = (value, like.dtype)
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = np.array(value, like.dtype)
    return c


def is_float(dtype):
    return dtype.kind == "f"


def index_add(out, index, values):
    """``out[index] += values`` in place, adding (not overwriting) at repeated indices."""
    get_array_module(out).add.at(out, index, values)
