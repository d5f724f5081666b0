"""tg.save / tg.load: nested dicts, lists and arrays in one ``.npz`` file, no pickle.

The arrays go in as ``a0, a1, ...``; a JSON header (``__tinygrad_rnn__``) records the
structure around them: dicts (str or int keys), lists, tuples, numbers, strings,
None, and arrays or Tensors. The file is written to a temporary name and renamed,
so a crash never leaves half a file under the real name.
"""
import json
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
    write_atomically(path, lambda f: np.savez(f, **arrays), suffix=".npz")


def load(path):
    """Read what :func:`save` wrote; a ValueError names a damaged or foreign file."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("it holds a single array, not an archive")
        with archive:
            if _HEADER not in archive.files:
                raise ValueError("it has no tinygrad_rnn header")
            header = json.loads(archive[_HEADER].tobytes().decode())
            if header.get("format") != _FORMAT:
                raise ValueError(f"format {header.get('format')!r} is not {_FORMAT}")
            return _decode(header["tree"], archive)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"tg.load: {path} is damaged or was not written by tg.save ({exc})") from None


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


def _decode(node, archive):
    if "array" in node:
        array = archive[node["array"]]
        return Tensor(array) if node["tensor"] else array
    if "dict" in node:
        return {k: _decode(v, archive) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, archive) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, archive) for v in node["tuple"])
    return node["value"]
