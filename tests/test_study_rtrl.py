"""RTRL (tinygrad_rnn.study.rtrl) against backpropagation through time.

The gradient that real-time recurrent learning carries forward must EQUAL the one
that ``loss.backward()`` finds through the unrolled graph (written out here with
the cell called step by step), to 1e-10 relative in float64, for every built-in
cell in both forms and for the variants; hypothesis draws T, B, I, H, the bias
and which losses there are.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.nn import variants
from tinygrad_rnn.study.rtrl import bptt_gradients, parameter_tangents, rtrl_gradients
from helpers import Cube, hyp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def make_cell(kind, input_size, hidden_size, fused, bias, device, rng):
    kw = dict(bias=bias, fused=fused, device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        cell = tg.nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    else:
        cell = {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](input_size, hidden_size, **kw)
    return randomize(cell, rng)


def randomize(cell, rng, scale=0.8):
    """Random normal parameters, larger than the default init, so the dynamics are far from linear."""
    cell.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in cell.named_parameters()})
    return cell


def losses(rng, steps, batch, size, device, which):
    """A nonlinear loss per step and one on the last state (all its parts), as ``which`` asks."""
    y = tg.tensor(rng.standard_normal((steps, batch, size)), dtype=tg.float64, device=device)

    def step_loss(t, h):
        return ((h - y[t]) ** 2).sum() * (0.5 + t)

    def final_loss(state):
        parts = state if isinstance(state, tuple) else (state,)
        return sum((s.tanh() * s).sum() for s in parts)

    return (step_loss if which in ("step", "both") else None), (final_loss if which in ("final", "both") else None)


def backward_reference(cell, x, step_loss, final_loss, state=None):
    """The gradients by loss.backward() through the cell called one step at a time."""
    cell.zero_grad()
    total = None
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        if step_loss is not None:
            term = step_loss(t, cell.output(state))
            total = term if total is None else total + term
    if final_loss is not None:
        total = final_loss(state) if total is None else total + final_loss(state)
    total.backward()
    grads = {name: np.zeros(p.shape) if p.grad is None else p.grad.numpy() for name, p in cell.named_parameters()}
    cell.zero_grad()
    return total.item(), grads


def assert_equal_gradients(got, expected, rtol=1e-10):
    assert set(got) == set(expected)
    scale = max(float(np.max(np.abs(g))) for g in expected.values())
    for name, e in expected.items():
        g = got[name].numpy() if isinstance(got[name], tg.Tensor) else got[name]
        assert g.shape == e.shape, name
        denominator = float(np.max(np.abs(e))) or scale or 1.0
        assert float(np.max(np.abs(g - e))) <= rtol * denominator, (name, float(np.max(np.abs(g - e))), denominator)


# ----------------------------------------------------------------- RTRL == BPTT
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
@pytest.mark.parametrize("kind", KINDS)
@hyp(8)
@given(steps=st.integers(1, 8), batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden=st.integers(1, 4),
       bias=st.booleans(), which=st.sampled_from(["step", "final", "both"]), given_state=st.booleans(),
       seed=st.integers(0, 2**16))
def test_rtrl_equals_bptt(device, kind, fused, steps, batch, input_size, hidden, bias, which, given_state, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, input_size, hidden, fused, bias, device, rng)
    x = tg.tensor(rng.standard_normal((steps, batch, input_size)), dtype=tg.float64, device=device)
    step_loss, final_loss = losses(rng, steps, batch, hidden, device, which)
    state = None
    if given_state:
        parts = [tg.tensor(rng.standard_normal((batch, hidden)), dtype=tg.float64, device=device)
                 for _ in range(2 if kind == "lstm" else 1)]
        state = tuple(parts) if kind == "lstm" else parts[0]
    loss_ref, grads_ref = backward_reference(cell, x, step_loss, final_loss, state)
    loss, grads = rtrl_gradients(cell, x, step_loss, final_loss, state)
    assert abs(loss - loss_ref) <= 1e-12 * max(abs(loss_ref), 1.0)
    assert_equal_gradients(grads, grads_ref)
    assert all(p.grad is None for p in cell.parameters())
    _, grads_bptt = bptt_gradients(cell, x, step_loss, final_loss, state)
    assert_equal_gradients(grads_bptt, grads_ref)


VARIANTS = {
    "peephole": lambda: variants.PeepholeLSTMCell(3, 4, dtype=tg.float64),
    "coupled": lambda: variants.CoupledLSTMCell(3, 4, dtype=tg.float64),
    "jordan": lambda: variants.JordanCell(3, 4, output_size=2, dtype=tg.float64),
    "clockwork": lambda: variants.ClockworkRNNCell(3, 4, periods=(1, 2), dtype=tg.float64),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rtrl_equals_bptt_for_the_variants(device, name):
    rng = np.random.default_rng(3)
    cell = randomize(VARIANTS[name]().to(device), rng)
    x = tg.tensor(rng.standard_normal((5, 2, 3)), dtype=tg.float64, device=device)
    size = cell.output(cell.initial_state(2, x)).shape[-1]
    step_loss, final_loss = losses(rng, 5, 2, size, device, "both")
    _, grads_ref = backward_reference(cell, x, step_loss, final_loss)
    _, grads = rtrl_gradients(cell, x, step_loss, final_loss)
    assert_equal_gradients(grads, grads_ref)


@hyp(10)
@given(kind=st.sampled_from(["rnn_tanh", "lstm", "gru", "peephole", "jordan"]), fused=st.booleans(),
       num_layers=st.integers(1, 2),
       bidirectional=st.booleans(), batch_first=st.booleans(), steps=st.integers(1, 4), batch=st.integers(1, 3),
       which=st.sampled_from(["step", "final", "both"]), data=st.data(), seed=st.integers(0, 2**16))
def test_rtrl_equals_bptt_for_layers(device, kind, fused, num_layers, bidirectional, batch_first, steps, batch,
                                     which, data, seed):
    """Layers of any depth, both directions, batch_first and variable lengths: RTRL's gradient is the
    layer's own backward (run through the layer's public forward). The Jordan cell's output (2
    features) is narrower than its state (3)."""
    rng = np.random.default_rng(seed)
    lengths = data.draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch), label="lengths")
    options = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    out_width = 2 if kind == "jordan" else 3
    if kind == "peephole":
        layer = tg.nn.Recurrent(lambda i, h: variants.PeepholeLSTMCell(i, h, device=device, dtype=tg.float64),
                                2, 3, **options)
    elif kind == "jordan":
        layer = tg.nn.Recurrent(lambda i, h: variants.JordanCell(i, h, output_size=2, device=device,
                                                                 dtype=tg.float64), 2, 3, **options)
    elif kind == "rnn_tanh":
        layer = tg.nn.RNN(2, 3, fused=fused, device=device, dtype=tg.float64, **options)
    else:
        layer = {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU}[kind](2, 3, fused=fused, device=device, dtype=tg.float64,
                                                              **options)
    randomize(layer, rng, scale=0.6)
    x = tg.tensor(rng.standard_normal((batch, steps, 2) if batch_first else (steps, batch, 2)), dtype=tg.float64,
                  device=device)
    width = out_width * (2 if bidirectional else 1)
    step_loss, final_loss = losses(rng, steps, batch, width, device, which)
    layer.zero_grad()
    out, final = layer(x, lengths=lengths)
    out = out.swapaxes(0, 1) if batch_first else out
    total = sum(step_loss(t, out[t]) for t in range(steps)) if step_loss is not None else 0.0
    total = total + final_loss(final) if final_loss is not None else total
    total.backward()
    expected = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    layer.zero_grad()
    loss, grads = rtrl_gradients(layer, x, step_loss, final_loss, lengths=lengths)
    assert abs(loss - total.item()) <= 1e-12 * max(abs(total.item()), 1.0)
    assert_equal_gradients(grads, expected)
    _, grads_bptt = bptt_gradients(layer, x, step_loss, final_loss, lengths=lengths)
    assert_equal_gradients(grads_bptt, expected)


def test_frozen_parameters_are_left_out(device):
    rng = np.random.default_rng(4)
    cell = make_cell("gru", 2, 3, True, True, device, rng)
    cell.weight_ih.requires_grad = False
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=tg.float64, device=device)
    step_loss, _ = losses(rng, 4, 2, 3, device, "step")
    _, grads_ref = backward_reference(cell, x, step_loss, None)
    _, grads = rtrl_gradients(cell, x, step_loss)
    assert set(grads) == {"weight_hh", "bias_ih", "bias_hh"}
    assert_equal_gradients(grads, {k: v for k, v in grads_ref.items() if k != "weight_ih"})


def test_parameter_tangents_are_the_identity(device):
    """Stacked and flattened, the seeds are the P x P identity in the order of the parameters."""
    a = tg.randn(2, 3, dtype=tg.float64, device=device)
    b = tg.randn(4, dtype=tg.float64, device=device)
    seeds = parameter_tangents([a, b])
    assert [s.shape for s in seeds] == [(10, 2, 3), (10, 4)]
    flat = np.concatenate([tg.tensor(s).numpy().reshape(10, -1) for s in seeds], axis=1)
    np.testing.assert_array_equal(flat, np.eye(10))


# ----------------------------------------------------------------- errors
class CubeCell(tg.nn.RNNCell):
    def step(self, p, h):
        return Cube.apply(p + h @ self.weight_hh.T)


def test_a_cell_with_an_op_without_a_rule_raises_naming_it(device):
    cell = CubeCell(2, 3, device=device, dtype=tg.float64)
    x = tg.randn(3, 1, 2, dtype=tg.float64, device=device)
    with pytest.raises(NotImplementedError, match="Cube has no forward-mode rule"):
        rtrl_gradients(cell, x, final_loss=lambda h: h.sum())


def test_bad_arguments_raise(device):
    cell = tg.nn.LSTMCell(2, 3, device=device, dtype=tg.float64)
    x = tg.randn(3, 1, 2, dtype=tg.float64, device=device)
    with pytest.raises(ValueError, match=r"x must be a Tensor \(T, B, input_size=2\), got shape \(3, 2\)"):
        rtrl_gradients(cell, x[:, 0], final_loss=lambda s: s[0].sum())
    with pytest.raises(ValueError, match="input_size=2"):
        rtrl_gradients(cell, tg.randn(3, 1, 5, dtype=tg.float64, device=device), final_loss=lambda s: s[0].sum())
    with pytest.raises(ValueError, match="no time steps"):
        rtrl_gradients(cell, x[:0], final_loss=lambda s: s[0].sum())
    with pytest.raises(ValueError, match="give step_loss"):
        rtrl_gradients(cell, x)
    with pytest.raises(ValueError, match=r"step_loss at t=0 must return a one-element Tensor, got shape \(1, 3\)"):
        rtrl_gradients(cell, x, step_loss=lambda t, h: h)
    with pytest.raises(TypeError, match="model must be a RecurrentCell or an nn.Recurrent layer"):
        rtrl_gradients(tg.nn.Linear(2, 3), x, final_loss=lambda s: s.sum())


# ----------------------------------------------------------------- the benchmark
def test_benchmark_quick_run_agrees_and_writes_json(tmp_path):
    out = tmp_path / "rtrl.json"
    proc = subprocess.run([sys.executable, "benchmarks/rtrl_vs_bptt.py", "--quick", "--kinds", "rnn,gru",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["check"]["passed"] and max(data["check"]["max_rel_diff"].values()) <= 1e-10
    assert len(data["check"]["max_rel_diff"]) == 6          # rnn tanh/relu and gru, each fused and composed
    rows = data["results"]
    assert {(r["kind"], r["H"], r["T"]) for r in rows} == {(k, h, t) for k in ("rnn", "gru") for h in (4, 8)
                                                           for t in (10, 30)}
    for r in rows:
        assert r["bptt_ms"] > 0 and r["rtrl_ms"] > 0 and r["bptt_peak_bytes"] > 0 and r["rtrl_peak_bytes"] > 0
        assert r["rtrl_over_bptt_time"] == pytest.approx(r["rtrl_ms"] / r["bptt_ms"])
        assert r["max_rel_diff"] <= data["agree_rtol"]
        gates = 1 if r["kind"] == "rnn" else 3
        assert r["P"] == gates * r["H"] * (r["I"] + r["H"] + 2)
    assert "BPTT ms" in proc.stdout and "RTRL MiB" in proc.stdout


@pytest.mark.parametrize("num_layers", [1, 2])
def test_rtrl_splits_a_bidirectional_layer_by_its_output_width(device, num_layers):
    """A bidirectional layer of output-fed cells whose output (2 features) is narrower than the
    state (3): each direction's loss gradient is its own 2 columns of the layer's output."""
    rng = np.random.default_rng(9)
    layer = tg.nn.Recurrent(lambda i, h: variants.JordanCell(i, h, output_size=2, device=device, dtype=tg.float64),
                            2, 3, num_layers=num_layers, bidirectional=True)
    randomize(layer, rng, scale=0.6)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=tg.float64, device=device)
    step_loss, final_loss = losses(rng, 4, 2, 4, device, "both")
    out, final = layer(x)
    total = sum(step_loss(t, out[t]) for t in range(4)) + final_loss(final)
    expected = dict(zip([name for name, _ in layer.named_parameters()],
                        [g.numpy() for g in tg.grad(total, layer.parameters())]))
    loss, grads = rtrl_gradients(layer, x, step_loss, final_loss)
    assert abs(loss - total.item()) <= 1e-12 * max(abs(total.item()), 1.0)
    assert_equal_gradients(grads, expected)
