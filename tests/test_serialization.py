"""tg.save / tg.load: structures of dicts, lists, tuples, numbers, strings, None,
arrays and Tensors in one .npz file without pickle.

Round trips must be exact in value, type and dtype; damaged or foreign files
must raise a ValueError that says so; a failed write must leave the old file
and the directory as they were; objects that cannot be stored are refused with
a TypeError that says where they are.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import given
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
