"""tinygrad_rnn's RNN, LSTM and GRU layers against the hand-written NumPy step of
benchmarks/numpy_rnn.py: a second, independent implementation of PyTorch's equations
(forward and backpropagation through time written out by hand, no graph).

For loss = sum(h_T * v) both must give the same loss and the same gradients of the
input and of every parameter, in float64, to 1e-8 relative."""
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from numpy_rnn import train_step  # noqa: E402

CASES = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
LAYERS = {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU, "rnn": tg.nn.RNN}


def tinygrad_step(layer, x, v):
    """loss = sum(h_T * v) through tinygrad_rnn, and the gradients by name (x as "x")."""
    xt = tg.tensor(x, requires_grad=True)
    _, state = layer(xt)
    h_n = state[0] if isinstance(state, tuple) else state
    loss = (h_n[0] * tg.tensor(v)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    return loss.item(), {"x": xt.grad.numpy(), **grads}


@pytest.mark.parametrize("kind,nonlinearity", CASES)
@given(steps=st.integers(1, 6), batch=st.integers(1, 3), inputs=st.integers(1, 5), hidden=st.integers(1, 5),
       weight_scale=st.sampled_from([1.0, 4.0]), seed=st.integers(0, 2**16))
def test_numpy_reference_matches_tinygrad(kind, nonlinearity, steps, batch, inputs, hidden, weight_scale, seed):
    tg.manual_seed(seed)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    layer = LAYERS[kind](inputs, hidden, dtype="float64", **extra)
    # larger weights drive the gates into saturation, where sloppy derivatives would show
    layer.load_state_dict({name: a * weight_scale for name, a in layer.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, inputs))
    v = rng.standard_normal((batch, hidden))

    loss, grads = tinygrad_step(layer, x, v)
    ref_loss, ref_grads = train_step(kind, x, layer.state_dict(), v, nonlinearity)

    np.testing.assert_allclose(ref_loss, loss, rtol=1e-8, atol=1e-12)
    assert set(ref_grads) == set(grads)
    for name, grad in grads.items():
        assert ref_grads[name].shape == grad.shape, name
        assert ref_grads[name].dtype == np.float64, name
        np.testing.assert_allclose(ref_grads[name], grad, rtol=1e-8, atol=1e-12, err_msg=name)


def test_reference_rejects_unknown_kind_and_bad_shapes():
    with pytest.raises(ValueError, match="kind"):
        train_step("lstmx", np.zeros((2, 1, 3)), {}, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="3 \\(seq, batch, feature\\)"):
        train_step("gru", np.zeros((2, 3)), {}, np.zeros((1, 4)))
