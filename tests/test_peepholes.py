"""PeepholeLSTMCell with peepholes on any subset of its gates, held to the docstring
equations written out in NumPy, to LSTMCell when it has none, and to finite differences."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from helpers import hyp

F64 = tg.float64
SUBSETS = [s for k in range(4) for s in itertools.combinations(("i", "f", "o"), k)]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def peephole_reference(params, peepholes, x, h, c):
    """The docstring equations; a gate without a peephole has no w_c term."""
    rows = dict(zip(peepholes, params["weight_ch"])) if peepholes else {}
    z = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"] + h @ params["weight_hh"].T
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    i = sigmoid(z_i + rows.get("i", 0) * c)
    f = sigmoid(z_f + rows.get("f", 0) * c)
    c_new = f * c + i * np.tanh(z_g)
    o = sigmoid(z_o + rows.get("o", 0) * c_new)
    return o * np.tanh(c_new), c_new


def load_random(module, rng, scale=0.8):
    state = {name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()}
    module.load_state_dict(state)
    return state


@hyp(20)
@given(subset=st.sampled_from(SUBSETS), order=st.randoms(use_true_random=False), steps=st.integers(1, 5),
       batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_peepholes_on_some_gates_equal_their_equations(device, subset, order, steps, batch, input_size, hidden_size,
                                                       seed):
    rng = np.random.default_rng(seed)
    given_order = list(subset)
    order.shuffle(given_order)                   # any order names the same gates; rows stay i, f, o
    cell = nn.PeepholeLSTMCell(input_size, hidden_size, peepholes=tuple(given_order), device=device, dtype=F64)
    assert cell.peepholes == subset
    params = load_random(cell, rng)
    assert ("weight_ch" in params) == bool(subset)
    if subset:
        assert params["weight_ch"].shape == (len(subset), hidden_size)
    x = rng.standard_normal((steps, batch, input_size))
    h, c = rng.standard_normal((batch, hidden_size)), rng.standard_normal((batch, hidden_size))
    out, (h_n, c_n) = nn.unroll(cell, tg.tensor(x, dtype=F64, device=device),
                                (tg.tensor(h, dtype=F64, device=device), tg.tensor(c, dtype=F64, device=device)))
    expected = []
    for t in range(steps):
        h, c = peephole_reference(params, subset, x[t], h, c)
        expected.append(h)
    np.testing.assert_allclose(out.numpy(), np.stack(expected), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c_n.numpy(), c, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_no_peepholes_is_the_lstm(fused):
    rng = np.random.default_rng(1)
    cell = nn.PeepholeLSTMCell(3, 4, peepholes=(), dtype=F64)
    state = load_random(cell, rng)
    lstm = nn.LSTMCell(3, 4, fused=fused, dtype=F64)
    lstm.load_state_dict(state)
    x = tg.tensor(rng.standard_normal((6, 2, 3)), dtype=F64)
    np.testing.assert_allclose(nn.unroll(cell, x)[0].numpy(), nn.unroll(lstm, x)[0].numpy(), rtol=1e-12, atol=1e-14)


def test_default_is_all_three_peepholes():
    cell = nn.PeepholeLSTMCell(2, 5)
    assert cell.peepholes == ("i", "f", "o") and cell.weight_ch.shape == (3, 5)
    assert "peepholes" not in repr(cell)
    assert "peepholes=('i', 'o')" in repr(nn.PeepholeLSTMCell(2, 5, peepholes=["o", "i"]))


@pytest.mark.parametrize("subset", [("f",), ("i", "o")])
def test_peephole_subset_gradcheck_through_recurrent(device, subset):
    rng = np.random.default_rng(2)
    model = nn.Recurrent(lambda i, h: nn.PeepholeLSTMCell(i, h, peepholes=subset, device=device, dtype=F64), 2, 3)
    load_random(model, rng)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=F64, device=device, requires_grad=True)

    def fn(x, *params):
        out, (h_n, c_n) = model(x, lengths=[4, 2])
        return out, c_n

    assert tg.gradcheck(fn, (x, *model.parameters()))


def test_peephole_bad_subsets():
    with pytest.raises(ValueError, match="distinct gate names"):
        nn.PeepholeLSTMCell(2, 3, peepholes=("i", "g"))
    with pytest.raises(ValueError, match="distinct gate names"):
        nn.PeepholeLSTMCell(2, 3, peepholes=("o", "o"))
    with pytest.raises(TypeError, match="tuple of gate names"):
        nn.PeepholeLSTMCell(2, 3, peepholes="io")
    with pytest.raises(TypeError, match="tuple of gate names"):
        nn.PeepholeLSTMCell(2, 3, peepholes=None)
