"""nn.init: the initialisers fill a tensor in place with the right distribution.

Statistics are checked on large tensors drawn from a fixed generator (so the
tolerances are many standard errors wide and the tests are deterministic),
bounds against the fans, orthogonality exactly up to rounding, and the
argument checks by their messages.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

init = tg.nn.init


def gen(seed=0):
    return np.random.default_rng(seed)


def empty(*shape, device, dtype=tg.float64):
    return tg.nn.Parameter(tg.zeros(*shape, dtype=dtype, device=device))


def values(t):
    return t.numpy().astype(np.float64)


# ----------------------------------------------------------------- uniform_ / normal_
@pytest.mark.parametrize("a, b", [(0.0, 1.0), (-3.0, 0.5), (2.0, 2.5)])
def test_uniform_statistics(a, b, device):
    t = empty(300, 400, device=device)
    out = init.uniform_(t, a, b, generator=gen())
    assert out is t and t.shape == (300, 400) and t.dtype == tg.float64 and t.device == device
    v = values(t)
    assert v.min() >= a and v.max() < b
    width = b - a
    assert abs(v.mean() - (a + b) / 2) < 0.005 * width
    assert abs(v.std() - width / math.sqrt(12)) < 0.005 * width
    # every part of the interval is reached
    assert v.min() < a + 0.001 * width and v.max() > b - 0.001 * width


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (2.0, 0.1), (-1.0, 3.0)])
def test_normal_statistics(mean, std, device):
    t = empty(300, 400, device=device)
    assert init.normal_(t, mean, std, generator=gen(1)) is t
    v = values(t)
    assert abs(v.mean() - mean) < 0.01 * std
    assert abs(v.std() - std) < 0.01 * std
    # the tails of a normal: about 4.55% beyond 2 std
    assert abs(np.mean(np.abs(v - mean) > 2 * std) - 0.0455) < 0.003


def test_generator_argument_is_used_and_leaves_the_global_one_alone(device):
    tg.manual_seed(0)
    state = tg.default_generator().bit_generator.state
    a = init.normal_(empty(5, 6, device=device), generator=gen(7)).numpy()
    b = init.normal_(empty(5, 6, device=device), generator=gen(7)).numpy()
    c = init.normal_(empty(5, 6, device=device), generator=gen(8)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a, gen(7).normal(0.0, 1.0, (5, 6)))
    assert tg.default_generator().bit_generator.state == state


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_initialisers_keep_dtype_device_and_leaf(dtype, device):
    for fill in (lambda t: init.uniform_(t, -1, 1), lambda t: init.normal_(t), init.zeros_, init.ones_,
                 init.eye_, init.orthogonal_, init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
                 lambda t: init.constant_(t, 0.25)):
        t = empty(4, 3, device=device, dtype=dtype)
        out = fill(t)
        assert out is t
        assert t.dtype == dtype and t.device == device and t.shape == (4, 3)
        assert t.is_leaf and t.requires_grad and t.grad is None
    assert not np.any(init.zeros_(empty(2, 2, device=device)).numpy())
    assert np.all(init.ones_(empty(2, 2, device=device)).numpy() == 1)
    assert np.all(init.constant_(empty(3, device=device), -2.5).numpy() == -2.5)


def test_manual_seed_gives_the_same_weights(device):
    def draw():
        return [init.uniform_(empty(3, 4, device=device)).numpy(), init.normal_(empty(5, device=device)).numpy(),
                init.orthogonal_(empty(4, 4, device=device)).numpy(),
                init.xavier_uniform_(empty(2, 6, device=device)).numpy(),
                init.kaiming_uniform_(empty(3, 3, device=device)).numpy()]

    tg.manual_seed(123)
    first = draw()
    tg.manual_seed(123)
    second = draw()
    tg.manual_seed(124)
    third = draw()
    for a, b, c in zip(first, second, third):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


# ----------------------------------------------------------------- fans: xavier and kaiming
def test_fans_follow_pytorch(device):
    # (out, in, k1, k2): fan_in = in * k1 * k2, fan_out = out * k1 * k2
    t = empty(6, 4, 3, 2, device=device)
    bound = math.sqrt(6.0 / (4 * 6 + 6 * 6))
    v = values(init.xavier_uniform_(t, generator=gen()))
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.95 * bound


@hyp()
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), gain=st.sampled_from([0.5, 1.0, 5 / 3]))
def test_xavier_uniform_bound(shape, gain, device):
    receptive = int(np.prod(shape[2:]))
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    v = values(init.xavier_uniform_(empty(*shape, device=device), gain=gain, generator=gen()))
    assert np.all(np.abs(v) <= bound)


def test_xavier_statistics(device):
    fan_out, fan_in = 300, 500
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    v = values(init.xavier_uniform_(empty(fan_out, fan_in, device=device), generator=gen()))
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.999 * bound
    assert abs(v.std() - bound / math.sqrt(3)) < 0.01 * bound
    std = 2.0 * math.sqrt(2.0 / (fan_in + fan_out))
    v = values(init.xavier_normal_(empty(fan_out, fan_in, device=device), gain=2.0, generator=gen()))
    assert abs(v.mean()) < 0.01 * std and abs(v.std() - std) < 0.01 * std


@pytest.mark.parametrize("mode, nonlinearity, a, gain", [
    ("fan_in", "leaky_relu", 0.0, math.sqrt(2.0)),
    ("fan_in", "leaky_relu", math.sqrt(5), math.sqrt(2.0 / 6.0)),     # PyTorch's Linear default
    ("fan_out", "relu", 0.0, math.sqrt(2.0)),
    ("fan_in", "tanh", 0.0, 5.0 / 3.0),
    ("fan_out", "linear", 0.0, 1.0),
])
def test_kaiming_uniform_bound(mode, nonlinearity, a, gain, device):
    fan_out, fan_in = 200, 500
    fan = fan_in if mode == "fan_in" else fan_out
    bound = gain * math.sqrt(3.0 / fan)
    t = empty(fan_out, fan_in, device=device)
    v = values(init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity, generator=gen()))
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.999 * bound
    assert abs(v.std() - bound / math.sqrt(3)) < 0.01 * bound


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="unknown nonlinearity 'selu'"):
        init.calculate_gain("selu")


# ----------------------------------------------------------------- orthogonal_ and eye_
def _assert_orthonormal(w, gain=1.0, tol=1e-10):
    rows, cols = w.shape
    if rows <= cols:
        np.testing.assert_allclose(w @ w.T, gain ** 2 * np.eye(rows), atol=tol * max(1.0, gain ** 2))
    if rows >= cols:
        np.testing.assert_allclose(w.T @ w, gain ** 2 * np.eye(cols), atol=tol * max(1.0, gain ** 2))


@hyp()
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), gain=st.sampled_from([1.0, 0.5, 2.0]))
def test_orthogonal(rows, cols, gain, device):
    w = values(init.orthogonal_(empty(rows, cols, device=device), gain=gain, generator=gen()))
    _assert_orthonormal(w, gain)


def test_orthogonal_float32_and_more_dims(device):
    w = values(init.orthogonal_(empty(6, 6, device=device, dtype=tg.float32), generator=gen()))
    _assert_orthonormal(w, tol=1e-5)
    t = init.orthogonal_(empty(3, 2, 4, device=device), generator=gen())
    assert t.shape == (3, 2, 4)
    _assert_orthonormal(values(t).reshape(3, 8))


@hyp()
@given(hidden=st.integers(1, 6), cols_factor=st.sampled_from([None, 1, 2]), gain=st.sampled_from([1.0, 1.5]))
def test_orthogonal_blocks(hidden, cols_factor, gain, device):
    """A recurrent weight (4H, H): each gate's (H, H) block is orthogonal on its own."""
    cols = hidden if cols_factor is None else hidden * 4 * cols_factor
    w = values(init.orthogonal_(empty(4 * hidden, cols, device=device), gain=gain, blocks=4, generator=gen()))
    for k in range(4):
        _assert_orthonormal(w[k * hidden:(k + 1) * hidden], gain)
    if hidden > 1 and cols == hidden:
        # the whole (4H, H) matrix is not one orthogonal matrix: its columns have norm 2 gain
        np.testing.assert_allclose(np.linalg.norm(w, axis=0), 2 * gain, rtol=1e-10)


def test_orthogonal_is_not_always_the_same_matrix(device):
    a = values(init.orthogonal_(empty(5, 5, device=device), generator=gen(0)))
    b = values(init.orthogonal_(empty(5, 5, device=device), generator=gen(1)))
    assert not np.allclose(a, b)
    # and not the identity or a sign pattern: off-diagonal entries are non-zero
    assert np.count_nonzero(np.abs(a - np.diag(np.diag(a))) > 1e-3) > 10


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2)])
def test_eye(shape, device):
    t = init.eye_(empty(*shape, device=device))
    np.testing.assert_array_equal(t.numpy(), np.eye(*shape))


# ----------------------------------------------------------------- argument errors
def test_wrong_dims_and_arguments_raise(device):
    one_d, three_d = empty(4, device=device), empty(2, 2, 2, device=device)
    with pytest.raises(ValueError, match=r"eye_: needs a 2-D tensor, got shape \(4,\)"):
        init.eye_(one_d)
    with pytest.raises(ValueError, match=r"eye_.*\(2, 2, 2\)"):
        init.eye_(three_d)
    with pytest.raises(ValueError, match=r"orthogonal_.*\(4,\)"):
        init.orthogonal_(one_d)
    with pytest.raises(ValueError, match="6 rows do not split into 4"):
        init.orthogonal_(empty(6, 3, device=device), blocks=4)
    for fn in (init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_):
        with pytest.raises(ValueError, match=rf"{fn.__name__}.*\(4,\)"):
            fn(one_d)
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(empty(2, 2, device=device), mode="fan_avg")
    with pytest.raises(ValueError, match="must not exceed"):
        init.uniform_(empty(2, device=device), 1.0, 0.0)
    with pytest.raises(ValueError, match="std must be non-negative"):
        init.normal_(empty(2, device=device), 0.0, -1.0)
