"""Tensor creation, dtypes, devices, operators with scalars and arrays, conversions."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg


# ----- dtype inference follows PyTorch -----
@pytest.mark.parametrize("data, dtype", [
    (1.5, tg.float32), ([1.0, 2.0], tg.float32), (3, tg.int64), ([[1, 2]], tg.int64),
    (True, tg.bool_), ([True, False], tg.bool_),
    (np.zeros(2, np.float64), tg.float64), (np.zeros(2, np.float32), tg.float32),
    (np.zeros(2, np.int32), tg.int64), (np.zeros(2, np.float16), tg.float32), (np.zeros(2, np.uint8), tg.int64),
])
def test_tensor_infers_dtype_like_pytorch(data, dtype, device):
    assert tg.tensor(data, device=device).dtype == dtype


def test_explicit_dtype_and_names(device):
    for name in ("float32", "float64", "int64", "bool"):
        assert tg.tensor([1, 0], dtype=name, device=device).dtype == np.dtype(name)
    assert tg.zeros(2, 3, dtype=tg.float64, device=device).dtype == tg.float64


def test_unsupported_dtypes_are_refused():
    with pytest.raises(TypeError, match="complex64 is not supported"):
        tg.tensor([1.0], dtype=np.complex64)
    with pytest.raises(TypeError, match="cannot make a tensor from an array of dtype complex128"):
        tg.tensor(np.zeros(2, np.complex128))
    with pytest.raises(TypeError, match="numbers"):
        tg.tensor(["a", "b"])


@pytest.mark.parametrize("data", [2**63, [1, 2**63], [-1, 2**63], -2**63 - 1, 2**64, [[True, 2**63]]])
def test_ints_beyond_int64_raise_instead_of_wrapping(data):
    """As torch.tensor: integer data that int64 cannot hold raises (NumPy would make it uint64,
    which wraps to a negative number, or float64, or an object)."""
    with pytest.raises(ValueError, match=r"out of range for int64 .*; pass dtype=tg.float64 for a float tensor"):
        tg.tensor(data)
    with pytest.raises(ValueError, match="out of range for int64"):
        tg.tensor(data, dtype=tg.int64)


@pytest.mark.parametrize("data, dtype, expected, expected_dtype", [
    (2**63 - 1, None, 2**63 - 1, tg.int64), (-2**63, None, -2**63, tg.int64),
    ([1.5, 2**63], None, [1.5, 2.0**63], tg.float32), (2**63, tg.float32, 2.0**63, tg.float32),
    (2**64, tg.float64, 2.0**64, tg.float64), ([1, 2**64], tg.float64, [1.0, 2.0**64], tg.float64),
    (np.array([2**63 - 1], np.uint64), None, [2**63 - 1], tg.int64),
    (np.array([2**63], np.uint64), tg.float64, [2.0**63], tg.float64),
])
def test_large_numbers_that_fit_are_kept(data, dtype, expected, expected_dtype):
    """Those that int64 holds, and float tensors, asked for or inferred from a float among the data."""
    t = tg.tensor(data, dtype=dtype)
    assert t.tolist() == expected and t.dtype == expected_dtype


def test_a_uint64_array_beyond_int64_raises():
    big = np.array([1, 2**63], np.uint64)
    for dtype in (None, tg.int64):
        with pytest.raises(ValueError, match=r"value 9223372036854775808 of a uint64 array is out of range for "
                                             r"int64 \(at most 2\*\*63 - 1\)"):
            tg.tensor(big, dtype=dtype)


def test_tensor_copies_its_data():
    a = np.ones(3, np.float32)
    t = tg.tensor(a)
    a[0] = 5
    assert t.numpy()[0] == 1


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be one of"):
        tg.zeros(2, device="tpu")


@pytest.mark.skipif(tg.cuda_available(), reason="checks the error raised without CUDA")
def test_cuda_without_gpu_says_why():
    with pytest.raises(RuntimeError, match="CUDA is unavailable"):
        tg.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is unavailable"):
        tg.zeros(2).to("cuda")


# ----- creation functions -----
def test_creation_functions(device):
    assert tg.zeros(2, 3, device=device).numpy().tolist() == [[0, 0, 0]] * 2
    assert tg.ones((2,), device=device).numpy().tolist() == [1, 1]
    assert tg.full((2, 2), 7, device=device).dtype == tg.int64
    assert tg.full((2,), 0.5, device=device).numpy().tolist() == [0.5, 0.5]
    assert tg.arange(5, device=device).numpy().tolist() == [0, 1, 2, 3, 4]
    assert tg.arange(1, 2, 0.25, device=device).dtype == tg.float32
    assert tg.eye(3, device=device).numpy().trace() == 3
    x = tg.randn(4, 5, device=device)
    assert tg.zeros_like(x).shape == (4, 5) and tg.ones_like(x).numpy().sum() == 20
    assert x.device == device


def test_creation_errors():
    with pytest.raises(ValueError, match="non-negative"):
        tg.zeros(-1, 2)
    with pytest.raises(ValueError, match="step must not be zero"):
        tg.arange(0, 3, 0)
    with pytest.raises(TypeError, match="float dtype"):
        tg.randn(2, dtype=tg.int64)


def test_manual_seed_makes_draws_repeatable():
    tg.manual_seed(3)
    a = tg.randn(5).numpy().copy()
    b = tg.rand(5).numpy().copy()
    tg.manual_seed(3)
    assert np.array_equal(a, tg.randn(5).numpy()) and np.array_equal(b, tg.rand(5).numpy())
    r = tg.rand(1000).numpy()
    assert r.min() >= 0 and r.max() < 1


# ----- requires_grad -----
def test_only_float_leaves_require_grad(device):
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        tg.tensor([1, 2], device=device, requires_grad=True)
    y = tg.ones(2, requires_grad=True, device=device) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    assert not y.is_leaf and y.detach().is_leaf and not y.detach().requires_grad


# ----- operators with scalars and arrays on either side -----
finite = st.floats(-3, 3, allow_nan=False, width=32)


@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=3), elements=finite),
       st.floats(0.5, 2.0, width=32))
def test_operators_match_numpy_and_keep_float32(a, s):
    t = tg.tensor(a)
    cases = [(t + s, a + s), (s + t, s + a), (t - s, a - s), (s - t, s - a), (t * s, a * s), (s * t, s * a),
             (t / s, a / s), (s / (t * t + 1), s / (a * a + 1)), (-t, -a), (abs(t) ** s, np.abs(a) ** s),
             (s ** t, s ** a), (t + a, a + a), (a + t, a + a), (a * t, a * a), (a - t, a - a)]
    for got, want in cases:
        assert isinstance(got, tg.Tensor) and got.dtype == tg.float32
        np.testing.assert_allclose(got.numpy(), want.astype(np.float32), rtol=1e-5, atol=1e-6)


def test_matmul_with_numpy_operand():
    a = np.arange(6.0).reshape(2, 3)
    t = tg.tensor(a.T, dtype=tg.float64)
    np.testing.assert_array_equal((a @ t).numpy(), a @ a.T)
    np.testing.assert_array_equal((t @ a).numpy(), a.T @ a)
    with pytest.raises(TypeError, match="matmul"):
        t @ 2.0


def test_int_tensor_times_float_is_float32_like_pytorch():
    assert (tg.tensor([1, 2]) * 0.5).dtype == tg.float32
    assert (tg.tensor([1, 2]) * 2).dtype == tg.int64


def test_unsupported_operand_raises_typeerror():
    with pytest.raises(TypeError):
        tg.ones(2) + "a"
    with pytest.raises(TypeError):
        tg.ones(2) * [1, 2]


def test_comparisons_give_bool_tensors_outside_the_graph(device):
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    for got, want in [(x < 2, [1, 0, 0]), (x <= 2, [1, 1, 0]), (x > 2, [0, 0, 1]), (x >= 2, [0, 1, 1]),
                      (x == 2, [0, 1, 0]), (x != 2, [1, 0, 1]), ((x > 1) & (x < 3), [0, 1, 0]),
                      ((x < 2) | (x > 2), [1, 0, 1]), (~(x > 1), [1, 0, 0])]:
        assert got.dtype == tg.bool_ and not got.requires_grad and got.grad_fn is None
        assert got.numpy().tolist() == [bool(v) for v in want]
    assert bool((x > 0).all()) and not bool((x > 2).all()) and bool((x > 2).any())


def test_tensors_hash_by_identity():
    a, b = tg.ones(2), tg.ones(2)
    assert len({a, b}) == 2 and a in {a}


# ----- conversions -----
def test_item_numpy_tolist_and_python_numbers(device):
    x = tg.tensor([[2.5]], device=device)
    assert x.item() == 2.5 and float(x) == 2.5 and int(x) == 2 and bool(x)
    assert isinstance(x.numpy(), np.ndarray) and x.tolist() == [[2.5]]
    with pytest.raises(ValueError, match="only one-element tensors"):
        tg.ones(2, device=device).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(tg.ones(2, device=device))


def test_len_iter_repr():
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert len(x) == 2 and [r.tolist() for r in x] == [[1, 2], [3, 4]]
    assert "requires_grad=True" in repr(x) and "grad_fn=<Mul>" in repr(x * 2)
    assert "dtype=float64" in repr(tg.zeros(1, dtype=tg.float64))
    with pytest.raises(TypeError, match="0-d"):
        len(tg.tensor(1.0))


def test_to_casts_differentiably(device):
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True, device=device)
    y = x.to(dtype=tg.float32)
    assert y.dtype == tg.float32 and y.grad_fn is not None
    (y * y).sum().backward()
    assert x.grad.dtype == tg.float64 and x.grad.numpy().tolist() == [2.0, 4.0]
    assert x.long().dtype == tg.int64 and not x.long().requires_grad
    assert x.to(device) is x


def test_device_property_and_numpy_on_each_device(device):
    x = tg.ones(3, device=device)
    assert x.device == device and x.to("cpu").device == "cpu" and isinstance(x.numpy(), np.ndarray)


# ----- what a PyTorch user types -----
@pytest.mark.parametrize("method", ["softmax", "log_softmax"])
def test_softmax_methods_match_functional_and_torch(device, method):
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).normal(size=(2, 3, 4))
    x = tg.tensor(a, dtype=tg.float64, device=device, requires_grad=True)
    ref = getattr(torch.tensor(a), method)
    fn = getattr(tg.functional, method)
    for got, want, same in ((getattr(x, method)(dim=1), ref(dim=1), fn(x, dim=1)),
                            (getattr(x, method)(0), ref(0), fn(x, axis=0)),
                            (getattr(x, method)(), ref(-1), fn(x))):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(got.numpy(), same.numpy())
    assert tg.gradcheck(lambda t: getattr(t, method)(dim=1), [x])


def _public(namespace):
    return {name: value for name, value in vars(namespace).items() if not name.startswith("_")}


def test_every_public_tensor_method_and_property_has_a_docstring():
    import inspect
    missing = [name for name, value in _public(tg.Tensor).items()
               if not inspect.getdoc(getattr(tg.Tensor, name) if not isinstance(value, property) else value)]
    assert missing == []


def test_every_public_function_of_xp_and_creation_has_a_docstring():
    from tinygrad_rnn import creation, xp
    missing = [f"{module.__name__}.{name}" for module in (xp, creation) for name, value in _public(module).items()
               if callable(value) and getattr(value, "__module__", None) == module.__name__ and not value.__doc__]
    assert missing == []
