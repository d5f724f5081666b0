"""tg.save / tg.load: structures of dicts, lists, tuples, numbers, strings, None,
arrays and Tensors in one .npz file without pickle.

Round trips must be exact in value, type and dtype; a damaged checkpoint loads
identically or raises a ValueError naming the file, and so does any foreign file;
errors in opening the file come as they are; a failed write must leave the old file
and the directory as they were; objects that cannot be stored are refused with
a TypeError that says where they are. (Modes and temporaries: test_files.py.)
"""
import errno
import functools
import io
import math
import os
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

DAMAGED = "damaged or was not written by tg.save"


def assert_same(a, b, where="obj"):
    """Equal in structure, Python type, dtype and bits."""
    if isinstance(a, tg.Tensor):
        assert isinstance(b, tg.Tensor), where
        assert b.dtype == a.dtype and b.shape == a.shape, where
        assert a.numpy().tobytes() == b.numpy().tobytes(), where
        return
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, float):
        assert math.copysign(1.0, a) == math.copysign(1.0, b) and a == b, where
    else:
        assert a == b, where


DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64, np.complex64, np.complex128]


def sample_arrays():
    rng = np.random.default_rng(0)
    out = {}
    for dt in DTYPES:
        raw = rng.standard_normal((2, 3)) * 50
        out[np.dtype(dt).name] = (raw > 0 if dt is np.bool_ else raw.astype(dt))
    floats = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, np.finfo(np.float64).max])
    out["special"] = floats
    out["zero_d"] = np.array(3.5)
    out["empty"] = np.zeros((0, 4), np.float32)
    out["strided"] = np.arange(20.0).reshape(4, 5)[::2, 1::2]
    out["fortran"] = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    return out


# ----------------------------------------------------------------- round trips
def test_nested_structure_round_trips(device, tmp_path):
    obj = {
        "model": {"layer.weight": tg.tensor(np.arange(6.0).reshape(2, 3), dtype=tg.float32, device=device),
                  "layer.bias": tg.tensor([0.5, -0.5], dtype=tg.float64, device=device)},
        "ids": tg.tensor([[1, 2], [3, 4]], device=device),
        "mask": tg.tensor([True, False], device=device),
        3: [1, 2.5, "three", None, True, False],
        "3": ("a string key that looks like an int",),
        -7: {0: {1: [(), [], {}]}},
        "tuple": (1, (2, 3), [4, (5,)]),
        "numbers": [0, -1, 2 ** 62, 2 ** 70, 1e-300, -0.0, float("inf"), float("-inf"), float("nan")],
        "text": ["", "ünïcödé ✓", 'quotes " and \\ backslashes', "\n"],
        "arrays": sample_arrays(),
        "none": None,
    }
    path = tmp_path / "ckpt.npz"
    tg.save(obj, path)
    back = tg.load(path)
    assert_same(obj, back)
    assert 3 in back and "3" in back and back[3] != back["3"]
    assert all(not t.requires_grad and t.device == "cpu" for t in back["model"].values())


@pytest.mark.parametrize("obj", [
    tg.tensor([1.0, 2.0]), np.arange(4), 3, 2.5, "text", None, True, [], (), {}, [[[]]],
], ids=repr)
def test_top_level_objects_round_trip(obj, tmp_path):
    tg.save(obj, tmp_path / "x.npz")
    assert_same(obj, tg.load(tmp_path / "x.npz"))


def test_numpy_scalars_come_back_as_python_numbers(tmp_path):
    tg.save({"a": np.float32(1.5), "b": np.int64(7), "c": np.bool_(True)}, tmp_path / "x.npz")
    back = tg.load(tmp_path / "x.npz")
    assert back == {"a": 1.5, "b": 7, "c": True}
    assert type(back["a"]) is float and type(back["b"]) is int and type(back["c"]) is bool


def test_loaded_arrays_are_independent(tmp_path):
    a = np.arange(5.0)
    tg.save({"a": a, "b": [a]}, tmp_path / "x.npz")
    back = tg.load(tmp_path / "x.npz")
    back["a"][0] = 100
    assert a[0] == 0
    back2 = tg.load(tmp_path / "x.npz")
    assert back2["a"][0] == 0 and back2["b"][0][0] == 0


keys = st.one_of(st.integers(-10 ** 6, 10 ** 6), st.text(max_size=6))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63), st.floats(allow_nan=False),
                   st.text(max_size=8),
                   st.lists(st.floats(width=32, allow_nan=False), max_size=5).map(lambda v: np.array(v, np.float32)))
trees = st.recursive(leaves, lambda kids: st.one_of(st.lists(kids, max_size=3), st.tuples(kids, kids),
                                                    st.dictionaries(keys, kids, max_size=3)), max_leaves=12)


@hyp(20)
@given(obj=trees)
def test_arbitrary_trees_round_trip(obj, tmp_path):
    path = tmp_path / "tree.npz"
    tg.save(obj, path)
    assert_same(obj, tg.load(path))


def test_paths_and_overwriting(tmp_path):
    for path in (tmp_path / "as_path.npz", str(tmp_path / "as_str.npz"), tmp_path / "no_suffix"):
        tg.save({"x": 1}, path)
        assert os.path.exists(path)
        assert tg.load(path) == {"x": 1}
    tg.save({"x": 2}, tmp_path / "no_suffix")
    assert tg.load(tmp_path / "no_suffix") == {"x": 2}
    assert sorted(os.listdir(tmp_path)) == ["as_path.npz", "as_str.npz", "no_suffix"]


def test_optimizer_and_model_state_in_one_file(device, tmp_path):
    tg.manual_seed(0)
    model = tg.nn.Linear(3, 2, device=device)
    opt = tg.optim.Adam(model.parameters(), lr=0.01)
    model(tg.randn(4, 3, device=device)).sum().backward()
    opt.step()
    tg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "ckpt.npz")
    back = tg.load(tmp_path / "ckpt.npz")
    assert back["epoch"] == 3
    assert_same(model.state_dict(), back["model"])
    state = opt.state_dict()
    assert list(back["optimizer"]["state"]) == [0, 1]           # int keys stay ints
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert_same(state, back["optimizer"])


# ----------------------------------------------------------------- damaged and foreign files
@pytest.mark.parametrize("keep", [0, 1, 22, 0.5, -1])
def test_truncated_file_raises_value_error(keep, tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.arange(1000.0), "b": [1, 2]}, path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match=DAMAGED) as info:
        tg.load(path)
    assert str(path) in str(info.value)


def test_corrupted_bytes_raise_value_error(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    data[:4] = b"XXXX"            # no zip signature any more
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)


def test_foreign_npz_raises_value_error(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weight=np.ones(3))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)
    np.savez_compressed(path, weight=np.ones(3))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)


def test_bad_header_raises_value_error(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, __tinygrad_rnn__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)
    np.savez(path, __tinygrad_rnn__=np.frombuffer(b'{"format": 99, "tree": {"value": 1}}', dtype=np.uint8))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)
    np.savez(path, __tinygrad_rnn__=np.frombuffer(b'{"format": 1, "tree": {"array": "a0", "tensor": false}}',
                                                   dtype=np.uint8))
    with pytest.raises(ValueError, match=DAMAGED):       # refers to an array that is not there
        tg.load(path)


@pytest.mark.parametrize("content", ["npy", "text", "pickle"])
def test_other_files_raise_value_error(content, tmp_path):
    path = tmp_path / "other.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(3))         # a plain .npy array under an .npz name
    elif content == "text":
        path.write_text("hello world\n")
    else:
        import pickle
        path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(ValueError, match=DAMAGED):
        tg.load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "nope.npz")


def test_errors_in_opening_come_as_they_are(tmp_path, monkeypatch):
    """No permission is not damage: another user must not be told the file is damaged."""
    with pytest.raises(IsADirectoryError):
        tg.load(tmp_path)
    tg.save({"x": 1}, tmp_path / "ckpt.npz")

    def no_permission(path, mode="r"):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(tg.serialization, "open", no_permission, raising=False)
    with pytest.raises(PermissionError):
        tg.load(tmp_path / "ckpt.npz")


# ----------------------------------------------------------------- damage anywhere in a checkpoint
SMALL = {"w": tg.tensor(np.arange(6.0).reshape(2, 3)), "ids": np.array([1, 2, 3]), "mask": np.array([True, False]),
         "rest": [1, "two", (3.5, None)], -1: {}}


@functools.lru_cache(maxsize=None)
def small_checkpoint():
    """The bytes tg.save writes for SMALL (about 1.3 kB), and where its zip index starts."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "small.npz")
        tg.save(SMALL, path)
        with open(path, "rb") as f:
            data = f.read()
    return data, data.index(b"PK\x01\x02")       # the first central directory entry


def damage(data, damages):
    """``data`` with each ``(kind, position, what)`` applied in turn: flip (xor ``what``), truncate or insert."""
    data = bytearray(data)
    for kind, at, what in damages:
        at = min(at, len(data))
        if kind == "flip" and at < len(data):
            data[at] ^= what
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = what
    return bytes(data)


def assert_loads_identically_or_raises(path, data):
    path.write_bytes(data)
    try:
        back = tg.load(path)
    except ValueError as exc:
        assert DAMAGED in str(exc) and str(path) in str(exc)
    else:
        assert_same(SMALL, back)


def _damages():
    data, index = small_checkpoint()
    positions = st.one_of(st.integers(0, len(data) - 1), st.integers(index, len(data) - 1))   # or in the zip index
    one = st.one_of(st.tuples(st.just("flip"), positions, st.integers(1, 255)),
                    st.tuples(st.just("truncate"), positions, st.none()),
                    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=16)))
    return st.lists(one, min_size=1, max_size=3)


@hyp(200)
@given(damages=st.deferred(_damages))
def test_a_damaged_checkpoint_loads_identically_or_raises_value_error(damages, tmp_path):
    note(f"damages: {damages}")
    assert_loads_identically_or_raises(tmp_path / "damaged.npz", damage(small_checkpoint()[0], damages))


@pytest.mark.parametrize("kind, what", [("flip", 0xFF), ("flip", 0x01), ("truncate", None), ("insert", b"\0")],
                         ids=["xor ff", "xor 01", "truncate", "insert"])
def test_every_single_damage_loads_identically_or_raises_value_error(kind, what, tmp_path):
    """Each position of the file in turn: the zip index, the npy headers, the data, the JSON header."""
    data, _ = small_checkpoint()
    for at in range(len(data) + (kind == "insert")):
        assert_loads_identically_or_raises(tmp_path / "damaged.npz", damage(data, [(kind, at, what)]))


def test_a_damaged_size_never_makes_load_allocate_what_the_file_cannot_hold(tmp_path):
    path = tmp_path / "ckpt.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__tinygrad_rnn__.npy", npy((len(GOOD_HEADER),), "|u1", GOOD_HEADER))
        archive.writestr("a0.npy", npy((3,), "<f8", bytes(24)))
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")                     # a0.npy's central directory entry
    data[entry + 20:entry + 28] = (2 ** 31).to_bytes(4, "little") * 2     # its stored and unpacked sizes: 2 GB
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="claims 2147483648 bytes"):
            tg.load(path)
        assert tracemalloc.get_traced_memory()[1] < 2 ** 24
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------- hand-made files
DEEP = b'{"list": [' * 100_000 + b'{"value": 1}' + b']}' * 100_000
HAND_MADE_TREES = {
    "header not an object": b'[1, 2]',
    "no tree": b'{"format": 1}',
    "tree a number": b'{"format": 1, "tree": 5}',
    "empty node": b'{"format": 1, "tree": {}}',
    "unknown node": b'{"format": 1, "tree": {"set": [1]}}',
    "two kinds in a node": b'{"format": 1, "tree": {"list": [], "value": 1}}',
    "dict of a number": b'{"format": 1, "tree": {"dict": 3}}',
    "dict item not a pair": b'{"format": 1, "tree": {"dict": [[1]]}}',
    "dict key a list": b'{"format": 1, "tree": {"dict": [[[1], {"value": 2}]]}}',
    "dict key a bool": b'{"format": 1, "tree": {"dict": [[true, {"value": 2}]]}}',
    "list of a number": b'{"format": 1, "tree": {"list": 5}}',
    "list of a string": b'{"format": 1, "tree": {"list": "abc"}}',
    "value a list": b'{"format": 1, "tree": {"value": [1, 2]}}',
    "value an object": b'{"format": 1, "tree": {"value": {"a": 1}}}',
    "array name a number": b'{"format": 1, "tree": {"array": 0, "tensor": false}}',
    "array without tensor flag": b'{"format": 1, "tree": {"array": "a0"}}',
    "tensor flag a string": b'{"format": 1, "tree": {"array": "a0", "tensor": "yes"}}',
    "array not there": b'{"format": 1, "tree": {"array": "a9", "tensor": false}}',
    "nested too deeply": b'{"format": 1, "tree": ' + DEEP + b'}',
    "header not utf-8": b'{"format": 1, "tree": {"value": "\xff"}}',
}


@pytest.mark.parametrize("header", HAND_MADE_TREES.values(), ids=HAND_MADE_TREES)
def test_a_hand_made_header_raises_value_error(header, tmp_path):
    path = tmp_path / "hand_made.npz"
    np.savez(path, __tinygrad_rnn__=np.frombuffer(header, dtype=np.uint8), a0=np.arange(3.0))
    with pytest.raises(ValueError, match=DAMAGED) as info:
        tg.load(path)
    assert str(path) in str(info.value)


def npy(shape, dtype, data):
    """The bytes of an npy file whose header announces ``shape`` and ``dtype`` and whose data is ``data``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"shape": shape, "fortran_order": False,
                                              "descr": np.lib.format.dtype_to_descr(np.dtype(dtype))})
    return f.getvalue() + data


GOOD_HEADER = b'{"format": 1, "tree": {"array": "a0", "tensor": false}}'
TENSOR_HEADER = b'{"format": 1, "tree": {"array": "a0", "tensor": true}}'
HAND_MADE_MEMBERS = {
    "header not npy": {"__tinygrad_rnn__.npy": GOOD_HEADER, "a0.npy": npy((3,), "<f8", bytes(24))},
    "header not bytes": {"__tinygrad_rnn__.npy": npy((2,), "<f8", bytes(16))},
    "array not npy": {"a0.npy": b"just bytes"},
    "array announces less": {"a0.npy": npy((2,), "<f8", bytes(24))},
    "array announces more": {"a0.npy": npy((4,), "<f8", bytes(24))},
    "array announces a petabyte": {"a0.npy": npy((2 ** 47,), "<f8", bytes(24))},
    "array of negative shape": {"a0.npy": npy((-1, -1), "<f8", bytes(8))},
    "array of objects": {"a0.npy": npy((1,), "|O", bytes(8))},
    "array npy version 3": {"a0.npy": b"\x93NUMPY\x03\x00" + npy((3,), "<f8", bytes(24))[8:]},
    "tensor of strings": {"__tinygrad_rnn__.npy": npy((len(TENSOR_HEADER),), "|u1", TENSOR_HEADER),
                          "a0.npy": npy((2,), "<U1", "ab".encode("utf-32-le"))},
}


@pytest.mark.parametrize("members", HAND_MADE_MEMBERS.values(), ids=HAND_MADE_MEMBERS)
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_a_hand_made_member_raises_value_error(members, compression, tmp_path):
    members = {"__tinygrad_rnn__.npy": npy((len(GOOD_HEADER),), "|u1", GOOD_HEADER), **members}
    path = tmp_path / "hand_made.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=DAMAGED) as info:
        tg.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_a_member_labelled_compressed_raises_value_error(method, tmp_path):
    """A compression method in the zip index that tg.save never writes: decompressing would fail in its own way."""
    path = tmp_path / "relabelled.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__tinygrad_rnn__.npy", npy((len(GOOD_HEADER),), "|u1", GOOD_HEADER))
        archive.writestr("a0.npy", b"\x07" * 24)           # not a valid stream for any of them
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")
    data[entry + 10:entry + 12] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=DAMAGED) as info:
        tg.load(path)
    assert str(path) in str(info.value)


def test_members_written_by_hand_as_tg_save_writes_them_load(tmp_path):
    """The hand-made members above fail for what they hold, not for how they were written."""
    path = tmp_path / "hand_made.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__tinygrad_rnn__.npy", npy((len(GOOD_HEADER),), "|u1", GOOD_HEADER))
        archive.writestr("a0.npy", npy((3,), "<f8", np.arange(3.0).tobytes()))
    assert_same(tg.load(path), np.arange(3.0))


# ----------------------------------------------------------------- atomic writes
def test_save_leaves_no_temporary_files(tmp_path):
    for i in range(3):
        tg.save({"i": i, "w": np.ones(100)}, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
def test_failed_write_leaves_the_old_file_untouched(error, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"version": 1, "w": np.arange(10.0)}, path)
    original = path.read_bytes()
    real_savez = np.savez

    def broken_savez(file, *args, **arrays):
        real_savez(file, *args, **arrays)     # writes a whole archive to the temporary file...
        file.write(b"garbage")
        raise error                          # ...then fails before it can be renamed

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(type(error)):
        tg.save({"version": 2, "w": np.zeros(10)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert tg.load(path)["version"] == 1
    # a failed first save leaves nothing behind
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(type(error)):
        tg.save({"w": np.ones(2)}, tmp_path / "new.npz")
    assert os.listdir(tmp_path) == ["ckpt.npz"]


# ----------------------------------------------------------------- unsupported objects
class Thing:
    pass


@pytest.mark.parametrize("obj, where, what", [
    ({"a": [1, Thing()]}, "obj['a'][1]", "Thing"),
    ({"a": {"b": {1, 2}}}, "obj['a']['b']", "set"),
    ([0, (1, b"bytes")], "obj[1][1]", "bytes"),
    ({"f": len}, "obj['f']", "builtin_function_or_method"),
    ({3: {"x": 1j}}, "obj[3]['x']", "complex"),
    (Thing(), "obj", "Thing"),
])
def test_unsupported_objects_raise_type_error_naming_where(obj, where, what, tmp_path):
    with pytest.raises(TypeError) as info:
        tg.save(obj, tmp_path / "x.npz")
    assert where in str(info.value) and what in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("key", [(1, 2), 1.5, True, None])
def test_unsupported_dict_keys_raise_type_error(key, tmp_path):
    with pytest.raises(TypeError, match="keys must be str or int") as info:
        tg.save({"outer": {key: 1}}, tmp_path / "x.npz")
    assert "obj['outer']" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_object_arrays_are_refused_when_saving(tmp_path):
    """An object array would need pickle to load: refuse it at save time, not at load time."""
    with pytest.raises(TypeError, match=r"obj\['x'\]"):
        tg.save({"x": np.array([{"a": 1}, None], dtype=object)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []
