"""tg.save / tg.load: nested dicts, lists and arrays in one ``.npz`` file, no pickle.

The arrays go in as ``a0, a1, ...``; a JSON header (``__tinygrad_rnn__``) records the
structure around them: dicts (str or int keys), lists, tuples, numbers, strings,
None, and arrays or Tensors. The file is written to a temporary name and renamed,
so a crash never leaves half a file under the real name (see ``files.py``). Loading
never unpickles, and a damaged or foreign file raises a ValueError, never a wrong result.
"""
import io
import json
import math
import os
import struct
import zipfile

import numpy as np

from . import backend
from .files import write_atomically
from .tensor import Tensor

_HEADER = "__tinygrad_rnn__"
_FORMAT = 1


def save(obj, path):
    """Write ``obj`` (e.g. a state_dict, or {"model": ..., "optimizer": ...}) to ``path``."""
    arrays = {}
    tree = _encode(obj, arrays, "obj")
    header = json.dumps({"format": _FORMAT, "tree": tree}).encode()
    arrays[_HEADER] = np.frombuffer(header, dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def load(path):
    """Read what :func:`save` wrote.

    Errors in opening the file (missing, no permission) come as they are; a damaged
    or foreign file raises a ValueError naming it. Every member is read whole, so
    zipfile checks it against its CRC-32, and its npy header must announce exactly
    the bytes it holds: damage raises instead of loading different values."""
    with open(path, "rb") as f:
        try:
            with zipfile.ZipFile(f) as archive:
                size = os.fstat(f.fileno()).st_size
                header = _read_array(archive, _HEADER, size)
                if header.dtype != np.uint8 or header.ndim != 1:
                    raise ValueError(f"its header is a {header.dtype} array of shape {header.shape}, "
                                     "expected uint8 bytes")
                header = json.loads(header.tobytes().decode())
                if not isinstance(header, dict) or header.get("format") != _FORMAT or "tree" not in header:
                    raise ValueError(f"its header {header!r:.80} is not {{'format': {_FORMAT}, 'tree': ...}}")
                return _decode(header["tree"], lambda name: _read_array(archive, name, size))
        except RecursionError:
            raise ValueError(f"tg.load: {path} is damaged or was not written by tg.save (its header is nested "
                             "too deeply)") from None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, struct.error,
                OverflowError) as exc:
            raise ValueError(f"tg.load: {path} is damaged or was not written by tg.save ({exc})") from None


def _read_array(archive, name, size):
    """The array ``name`` of the archive, from a member stored as tg.save stores it."""
    filename = f"{name}.npy"
    try:
        info = archive.getinfo(filename)
    except KeyError:
        raise ValueError(f"it has no member {filename}") from None
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise ValueError(f"its member {filename} is compressed or encrypted; tg.save stores members as they are")
    if not info.file_size == info.compress_size <= size:
        raise ValueError(f"its member {filename} claims {info.file_size} bytes ({info.compress_size} stored) "
                         f"in a file of {size} bytes")
    data = archive.read(info)                         # read whole: zipfile checks the CRC-32
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"its member {filename} is npy version {version}, expected (1, 0) or (2, 0)")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    count, offset = math.prod(shape), stream.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ValueError(f"its member {filename} announces shape {shape} of {dtype} "
                         f"but holds {len(data) - offset} bytes of data")
    array = np.frombuffer(data, dtype, count, offset)      # refuses Python objects: no pickle
    return array.reshape(shape, order="F" if fortran else "C").copy(order="K")


def _encode(obj, arrays, where):
    if isinstance(obj, Tensor) or isinstance(obj, np.ndarray) or hasattr(obj, "__cuda_array_interface__"):
        array = backend.to_device(obj.data if isinstance(obj, Tensor) else obj, "cpu")
        if array.dtype.hasobject:
            raise TypeError(f"tg.save: the array at {where} holds Python objects; only numeric and bool "
                            "arrays are stored (no pickle)")
        key = f"a{len(arrays)}"
        arrays[key] = array
        return {"array": key, "tensor": isinstance(obj, Tensor)}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"tg.save: dict keys must be str or int, got {k!r} at {where}")
        return {"dict": [[k, _encode(v, arrays, f"{where}[{k!r}]")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"tg.save: cannot store a {type(obj).__name__} at {where}; expected dicts, lists, tuples, "
                    "numbers, strings, None, arrays or Tensors")


def _decode(node, read_array):
    """What ``node`` of the header describes; ``read_array(name)`` gives the archive's arrays."""
    if isinstance(node, dict) and node.keys() == {"array", "tensor"} and isinstance(node["array"], str) \
            and isinstance(node["tensor"], bool):
        array = read_array(node["array"])
        if not node["tensor"]:
            return array
        try:
            return Tensor(array)
        except TypeError as exc:                      # a dtype no Tensor has
            raise ValueError(f"its array {node['array']} cannot be a Tensor ({exc})") from None
    if isinstance(node, dict) and len(node) == 1:
        (kind, value), = node.items()
        if kind == "dict" and isinstance(value, list) and all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                and not isinstance(item[0], bool) for item in value):
            return {k: _decode(v, read_array) for k, v in value}
        if kind in ("list", "tuple") and isinstance(value, list):
            items = [_decode(v, read_array) for v in value]
            return items if kind == "list" else tuple(items)
        if kind == "value" and (value is None or isinstance(value, (bool, int, float, str))):
            return value
    raise ValueError(f"its header holds {node!r:.80}, expected a node such as {{'list': [...]}} or "
                     "{'value': 1}")
