"""Whole-sequence fused ops (nn.scan): one node for all T steps of an RNN, LSTM or GRU.

They must equal the per-step fused nodes they stand in for, in value and in every
gradient, with and without variable lengths; match finite differences in float64;
give exact second derivatives (their create_graph backward recomputes per step);
and survive a second backward under retain_graph.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.nn import scan as scan_ops
from helpers import hyp

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def make_cell(kind, input_size, hidden_size, device, seed, bias=True):
    kw = dict(bias=bias, device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        cell = tg.nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    else:
        cell = {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](input_size, hidden_size, **kw)
    rng = np.random.default_rng(seed)
    cell.load_state_dict({name: 0.8 * rng.standard_normal(p.shape) for name, p in cell.named_parameters()})
    return cell


def per_step(cell):
    """The same cell with its whole-sequence op switched off: the unroller then calls step per step."""
    cell.scan = lambda x, state, valid: None
    return cell


def initial_state(kind, batch, hidden, rng, device):
    parts = [tg.tensor(rng.standard_normal((batch, hidden)), dtype=tg.float64, device=device, requires_grad=True)
             for _ in range(2 if kind == "lstm" else 1)]
    return tuple(parts) if kind == "lstm" else parts[0]


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@st.composite
def problems(draw):
    steps, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    return dict(steps=steps, batch=batch, input_size=draw(st.integers(1, 3)), hidden=draw(st.integers(1, 4)),
                lengths=lengths, reverse=draw(st.booleans()), bias=draw(st.booleans()),
                read_outputs=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


def run(cell, kind, prob, device):
    """Outputs, final state and the gradients of a random projection of both, for x, h0 and every parameter."""
    rng = np.random.default_rng(prob["seed"])
    x = tg.tensor(rng.standard_normal((prob["steps"], prob["batch"], prob["input_size"])), dtype=tg.float64,
                  device=device, requires_grad=True)
    h0 = initial_state(kind, prob["batch"], prob["hidden"], rng, device)
    out, final = tg.nn.unroll(cell, x, h0, prob["lengths"], reverse=prob["reverse"])
    weights = tg.tensor(rng.standard_normal(out.shape), dtype=tg.float64, device=device)
    loss = (out * weights).sum() if prob["read_outputs"] else 0.0     # without: the outputs get zero gradient
    for part in flat(final):
        loss = loss + (part * tg.tensor(rng.standard_normal(part.shape), dtype=tg.float64, device=device)).sum()
    leaves = [x] + flat(h0) + [p for _, p in cell.named_parameters()]
    grads = tg.grad(loss, leaves)
    return [out.numpy()] + [s.numpy() for s in flat(final)], [g.numpy() for g in grads]


@pytest.mark.parametrize("kind", KINDS)
@hyp(10)
@given(prob=problems())
def test_scan_equals_per_step_nodes(device, kind, prob):
    sizes = prob["input_size"], prob["hidden"], device, prob["seed"], prob["bias"]
    values, grads = run(make_cell(kind, *sizes), kind, prob, device)
    ref_values, ref_grads = run(per_step(make_cell(kind, *sizes)), kind, prob, device)
    for got, expected in zip(values + grads, ref_values + ref_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12)
    if prob["lengths"] is not None:                      # past each row's length the output is exactly zero
        out = values[0]
        for b, n in enumerate(prob["lengths"]):
            assert np.all(out[n:, b] == 0)


def scan_fn(kind, cell, valid):
    """The scan op as a function of (x, W_ih, bias, state parts..., W_hh[, b_hh]) for gradcheck."""
    if kind == "lstm":
        return lambda x, w_ih, b, h, c, w: scan_ops.LSTMScan.apply(x, w_ih, b, h, c, w, valid)
    if kind == "gru":
        return lambda x, w_ih, b_ih, h, w, b: scan_ops.GRUScan.apply(x, w_ih, b_ih, h, w, b, valid)
    return lambda x, w_ih, b, h, w: scan_ops.RNNScan.apply(x, w_ih, b, h, w, cell.nonlinearity, valid)


def scan_inputs(kind, cell, steps, batch, rng, device):
    x = tg.tensor(rng.standard_normal((steps, batch, cell.input_size)), dtype=tg.float64, device=device,
                  requires_grad=True)
    state = flat(initial_state(kind, batch, cell.hidden_size, rng, device))
    recurrent = [cell.weight_hh] + ([cell.bias_hh] if kind == "gru" else [])
    return [x, cell.weight_ih, cell.bias_ih] + state + recurrent


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lengths", [None, [3, 1, 0]])
def test_scan_gradcheck_and_gradgradcheck(device, kind, lengths):
    rng = np.random.default_rng(3)
    cell = make_cell(kind, 2, 3, device, 5)
    if kind == "rnn_relu":      # keep pre-activations away from the kink, where differences are not derivatives
        cell.weight_hh.data[...] *= 0.3
    valid = None if lengths is None else tg.backend.to_device(np.arange(3)[:, None] < np.array(lengths)[None, :],
                                                              device)
    fn = scan_fn(kind, cell, valid)
    inputs = scan_inputs(kind, cell, 3, 3, rng, device)
    assert tg.gradcheck(fn, inputs)
    assert tg.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("kind", KINDS)
def test_second_backward_with_retain_graph_gives_the_same_gradients(device, kind):
    rng = np.random.default_rng(1)
    cell = make_cell(kind, 2, 3, device, 2)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=tg.float64, device=device)
    out, _ = tg.nn.unroll(cell, x, lengths=[4, 2])
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    first = cell.weight_hh.grad.numpy().copy()
    cell.zero_grad()
    loss.backward()
    np.testing.assert_array_equal(cell.weight_hh.grad.numpy(), first)


def test_a_subclass_with_its_own_step_is_run_step_by_step(device):
    """The whole-sequence op stands in for step only where step is the built-in one."""
    class ScaledLSTM(tg.nn.LSTMCell):
        def step(self, p, state):
            h, c = super().step(p, state)
            return 0.5 * h, c

    rng = np.random.default_rng(0)
    cell = ScaledLSTM(2, 3, device=device, dtype=tg.float64)
    x = tg.tensor(rng.standard_normal((3, 2, 2)), dtype=tg.float64, device=device)
    out, (h, c) = tg.nn.unroll(cell, x)
    state = cell.initial_state(2, x)
    for t in range(3):
        state = cell.step(cell.project(x[t]), state)
        np.testing.assert_allclose(out.numpy()[t], state[0].numpy(), rtol=1e-12)
    assert cell.scan(x, state, None) is None
