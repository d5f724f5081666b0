"""study.trace (study/tracing.py) and study.telemetry: the step-by-step unroll and what its backward shows.

The trace must compute what ``nn.unroll`` (or the layer) computes; its per-step
parameter contributions must sum to the gradient of an ordinary unroll and
backward; its dL/dh_t must match a hand-derived backward recursion (tanh RNN) and
an unroll split at t with the state as a leaf (gated cells); the gate saturation
must match a NumPy transcription of each cell's equations. All in float64.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import telemetry
from tinygrad_rnn.study.tracing import swapped_parameters, trace
from helpers import hyp

CELL_KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "peephole", "coupled", "jordan", "clockwork", "minimal"]
FUSABLE = {"rnn_tanh", "rnn_relu", "lstm", "gru"}


class MinimalGatedCell(nn.RecurrentCell):
    """A user-defined cell whose parameters sit in sub-modules (dotted names):
    f = sigmoid(x W_f^T + h U^T + b),  h' = f * h + (1 - f) * tanh(x W_h^T)."""

    def __init__(self, input_size, hidden_size, device=None):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.inp = nn.Linear(input_size, 2 * hidden_size, device=device, dtype=tg.float64)
        self.rec = nn.Linear(hidden_size, hidden_size, device=device, dtype=tg.float64)

    def project(self, x):
        return self.inp(x)

    def step(self, p, h):
        p_f, p_h = tg.split(p, self.hidden_size, axis=1)
        f = (p_f + self.rec(h)).sigmoid()
        return f * h + (1 - f) * p_h.tanh()


def make_cell(kind, input_size, hidden_size, fused=True, device="cpu"):
    kw = dict(device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], fused=fused, **kw)
    if kind in ("lstm", "gru"):
        return {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](input_size, hidden_size, fused=fused, **kw)
    if kind == "clockwork":
        return nn.ClockworkRNNCell(input_size, 2 * hidden_size, periods=(1, 2), **kw)
    if kind == "minimal":
        return MinimalGatedCell(input_size, hidden_size, device=device)
    return {"peephole": nn.PeepholeLSTMCell, "coupled": nn.CoupledLSTMCell,
            "jordan": nn.JordanCell}[kind](input_size, hidden_size, **kw)


def randomize(module, rng, scale=0.7):
    module.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()})


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def f64(array, device, grad=False):
    return tg.tensor(array, dtype=tg.float64, device=device, requires_grad=grad)


def weighted_loss(outputs, final, weights):
    """sum_t <w_t, out_t> + sum over the final state's parts of <v, part>: touches every state part."""
    loss = (outputs * weights[0]).sum()
    for part, v in zip(parts(final), weights[1:]):
        loss = loss + (part * v).sum()
    return loss


def loss_weights(model_out, final, rng, device):
    return [f64(rng.standard_normal(model_out.shape), device)] + [
        f64(rng.standard_normal(p.shape), device) for p in parts(final)]


def reference_grads(model, x, weights, lengths=None):
    """(outputs, final state, {name: grad}) from an ordinary unroll (or layer call) and backward."""
    model.zero_grad()
    out, final = nn.unroll(model, x, lengths=lengths) if isinstance(model, nn.RecurrentCell) else \
        model(x, lengths=lengths)
    weighted_loss(out, final, weights).backward()
    grads = {name: np.zeros(p.shape) if p.grad is None else p.grad.numpy().copy()
             for name, p in model.named_parameters()}
    model.zero_grad()
    return out.numpy(), [p.numpy() for p in parts(final)], grads


def assert_rel(actual, expected, tol=1e-12):
    scale = max(np.abs(expected).max(), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


# ----------------------------------------------------------------- trace
@hyp(8)
@given(kind=st.sampled_from(CELL_KINDS), fused=st.booleans(), steps=st.integers(1, 5),
       batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_contributions_sum_to_unroll_gradient(device, kind, fused, steps, batch, input_size, hidden_size, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, input_size, hidden_size, fused and kind in FUSABLE, device)
    randomize(cell, rng)
    x = f64(rng.standard_normal((steps, batch, input_size)), device)
    tr = trace(cell, x)
    weights = loss_weights(tr.output, tr.final_state, rng, device)
    out_ref, final_ref, grads_ref = reference_grads(cell, x, weights)
    result = telemetry.record(tr, weighted_loss(tr.output, tr.final_state, weights))
    assert_rel(tr.output.numpy(), out_ref)
    for part, ref in zip(parts(tr.final_state), final_ref):
        assert_rel(part.numpy(), ref)
    assert set(result.contributions) == set(grads_ref)
    for name, contributions in result.contributions.items():
        assert contributions.shape == (steps,) + grads_ref[name].shape
        assert_rel(contributions.sum(axis=0), grads_ref[name])
        np.testing.assert_allclose(result.contribution_norms[name],
                                   np.sqrt((contributions.reshape(steps, -1) ** 2).sum(axis=1)), rtol=1e-14)
    for name, p in cell.named_parameters():       # the trace's own backward reached the parameters too
        assert isinstance(p, nn.Parameter)
        assert_rel(p.grad.numpy(), grads_ref[name])


@hyp(10)
@given(kind=st.sampled_from(["rnn", "lstm", "gru", "peephole"]), fused=st.booleans(), num_layers=st.integers(1, 3),
       bidirectional=st.booleans(), batch_first=st.booleans(), steps=st.integers(1, 4), batch=st.integers(1, 2),
       data=st.data(), seed=st.integers(0, 2**16))
def test_layer_trace_matches_layer(device, kind, fused, num_layers, bidirectional, batch_first, steps, batch, data,
                                   seed):
    """Any depth, both directions, batch_first, variable lengths: the trace computes what the layer does,
    and the steps' shares of every gradient add up to the layer's gradient."""
    rng = np.random.default_rng(seed)
    lengths = data.draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch), label="lengths")
    options = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, device=device,
                   dtype=tg.float64)
    if kind == "peephole":
        layer = nn.Recurrent(lambda i, h: nn.PeepholeLSTMCell(i, h, device=device, dtype=tg.float64), 2, 3,
                             num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    else:
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](2, 3, fused=fused, **options)
    randomize(layer, rng)
    x = f64(rng.standard_normal((batch, steps, 2) if batch_first else (steps, batch, 2)), device)
    tr = trace(layer, x, lengths=lengths)
    weights = loss_weights(tr.output, tr.final_state, rng, device)
    out_ref, final_ref, grads_ref = reference_grads(layer, x, weights, lengths)
    result = telemetry.record(tr, weighted_loss(tr.output, tr.final_state, weights))
    assert_rel(tr.output.numpy(), out_ref)
    directions = 2 if bidirectional else 1
    for part, ref in zip(parts(tr.final_state), final_ref):
        assert part.shape == ref.shape == (num_layers * directions, batch, 3)
        assert_rel(part.numpy(), ref)
    suffix = f"_l{num_layers - 1}" + ("_reverse" if bidirectional else "")
    assert tr.layer_params[-1] == [f"{n}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] + (
        [f"weight_ch{suffix}"] if kind == "peephole" else [])
    assert set(result.contributions) == set(grads_ref)
    for name, contributions in result.contributions.items():
        assert_rel(contributions.sum(axis=0), grads_ref[name])
    assert len(result.grad_norms) == num_layers * directions


def test_trace_with_initial_state_matches_unroll(device, rng):
    cell = make_cell("lstm", 2, 3, device=device)
    randomize(cell, rng)
    x = f64(rng.standard_normal((4, 2, 2)), device)
    h0, c0 = (f64(rng.standard_normal((2, 3)), device, grad=True) for _ in range(2))
    tr = trace(cell, x, (h0, c0))
    out, _ = nn.unroll(cell, x, (h0, c0))
    assert_rel(tr.output.numpy(), out.numpy())
    assert all(a is b for a, b in zip(tr.previous_state(0, 0), (h0, c0)))
    tr.output.sum().backward()
    g_h0, = tg.grad(nn.unroll(cell, x, (h0, c0))[0].sum(), h0)
    assert_rel(h0.grad.numpy(), g_h0.numpy())


# ----------------------------------------------------------------- dL/dh_t
@hyp(8)
@given(steps=st.integers(1, 6), batch=st.integers(1, 3), hidden_size=st.integers(1, 4),
       fused=st.booleans(), seed=st.integers(0, 2**16))
def test_tanh_rnn_state_grads_match_hand_recursion(device, steps, batch, hidden_size, fused, seed):
    """h_t = tanh(x_t W_ih^T + b + h_{t-1} W_hh^T), L = sum_t <w_t, h_t>:
    delta_t = dL/dh_t = (delta_{t+1} * (1 - h_{t+1}^2)) W_hh + w_t, and step t's
    share of dL/dW_hh is (delta_t * (1 - h_t^2))^T h_{t-1}."""
    rng = np.random.default_rng(seed)
    cell = make_cell("rnn_tanh", 2, hidden_size, fused, device)
    randomize(cell, rng)
    x = rng.standard_normal((steps, batch, 2))
    w = rng.standard_normal((steps, batch, hidden_size))
    tr = trace(cell, f64(x, device))
    result = telemetry.record(tr, (tr.output * f64(w, device)).sum())

    p = cell.state_dict()
    h = [np.zeros((batch, hidden_size))]
    for t in range(steps):
        h.append(np.tanh(x[t] @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"] + h[-1] @ p["weight_hh"].T))
    delta = [None] * steps
    delta[-1] = w[-1]
    for t in range(steps - 2, -1, -1):
        delta[t] = (delta[t + 1] * (1 - h[t + 2] ** 2)) @ p["weight_hh"] + w[t]
    delta = np.stack(delta)
    per_example = np.sqrt((delta ** 2).sum(axis=2))
    np.testing.assert_allclose(result.grad_norms_per_example[0]["h"], per_example, rtol=1e-12)
    np.testing.assert_allclose(result.grad_norms[0]["h"], np.sqrt((per_example ** 2).sum(axis=1)), rtol=1e-12)
    shares = np.stack([(delta[t] * (1 - h[t + 1] ** 2)).T @ h[t] for t in range(steps)])
    assert_rel(result.contributions["weight_hh"], shares)


@pytest.mark.parametrize("kind,fused", [("lstm", True), ("lstm", False), ("gru", True), ("peephole", False),
                                        ("coupled", False)])
def test_gated_state_grads_match_split_unroll(device, kind, fused):
    """dL/ds_t from an independent computation: unroll to step t, make s_t a leaf, unroll
    the rest from it and take tg.grad of the loss terms that depend on s_t."""
    rng = np.random.default_rng(3)
    steps = 4
    cell = make_cell(kind, 2, 3, fused, device)
    randomize(cell, rng)
    x = f64(rng.standard_normal((steps, 2, 2)), device)
    w = f64(rng.standard_normal((steps, 2, 3)), device)
    tr = trace(cell, x)
    (tr.output * w).sum().backward()
    for t in range(steps):
        with tg.no_grad():
            _, s_t = nn.unroll(cell, x[:t + 1])
        leaf = tuple(f64(s.numpy(), device, grad=True) for s in parts(s_t))
        leaf = leaf if isinstance(s_t, tuple) else leaf[0]
        loss = (cell.output(leaf) * w[t]).sum()
        if t + 1 < steps:
            rest, _ = nn.unroll(cell, x[t + 1:], leaf)
            loss = loss + (rest * w[t + 1:]).sum()
        expected = tg.grad(loss, parts(leaf), allow_unused=True)
        for part, g in zip(parts(tr.states[0][t]), expected):
            actual = np.zeros(part.shape) if part.grad is None else part.grad.numpy()
            assert_rel(actual, np.zeros(part.shape) if g is None else g.numpy())


# ----------------------------------------------------------------- saturation
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_gates(kind, p, x, h, c):
    """One step of each cell's docstring equations in NumPy: ({gate: values}, h', c')."""
    if kind == "rnn_tanh":
        h = np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"] + h @ p["weight_hh"].T)
        return {"h": h}, h, c
    if kind == "gru":
        gi = x @ p["weight_ih"].T + p["bias_ih"]
        gh = h @ p["weight_hh"].T + p["bias_hh"]
        ir, iz, in_ = np.split(gi, 3, axis=1)
        hr, hz, hn = np.split(gh, 3, axis=1)
        r, z = sigmoid(ir + hr), sigmoid(iz + hz)
        n = np.tanh(in_ + r * hn)
        return {"r": r, "z": z, "n": n}, (1 - z) * n + z * h, c
    a = x @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"] + h @ p["weight_hh"].T
    if kind == "coupled":
        f, g, o = sigmoid(a[:, :h.shape[1]]), np.tanh(a[:, h.shape[1]:2 * h.shape[1]]), sigmoid(a[:, 2 * h.shape[1]:])
        c = f * c + (1 - f) * g
        return {"f": f, "g": g, "o": o}, o * np.tanh(c), c
    zi, zf, zg, zo = np.split(a, 4, axis=1)
    peep = p.get("weight_ch", np.zeros((3, h.shape[1])))
    i, f, g = sigmoid(zi + peep[0] * c), sigmoid(zf + peep[1] * c), np.tanh(zg)
    c = f * c + i * g
    o = sigmoid(zo + peep[2] * c)
    return {"i": i, "f": f, "g": g, "o": o}, o * np.tanh(c), c


@pytest.mark.parametrize("kind,fused", [("rnn_tanh", True), ("lstm", True), ("lstm", False), ("gru", True),
                                        ("gru", False), ("peephole", False), ("coupled", False)])
def test_saturation_matches_numpy(device, kind, fused):
    rng = np.random.default_rng(7)
    steps, batch, hidden = 5, 3, 4
    cell = make_cell(kind, 3, hidden, fused, device)
    randomize(cell, rng, scale=1.5)
    x = rng.standard_normal((steps, batch, 3))
    tr = trace(cell, f64(x, device))
    result = telemetry.record(tr, tr.output.sum())
    p = cell.state_dict()
    h, c = np.zeros((batch, hidden)), np.zeros((batch, hidden))
    expected = {}
    for t in range(steps):
        gates, h, c = numpy_gates(kind, p, x[t], h, c)
        for name, v in gates.items():
            saturated = np.abs(v) > 0.9 if name in ("g", "n", "h") else (v < 0.1) | (v > 0.9)
            expected.setdefault(name, []).append(saturated.mean())
    assert set(result.saturation[0]) == set(expected)
    for name, fractions in expected.items():
        np.testing.assert_array_equal(result.saturation[0][name], fractions)
    everything = np.concatenate(list(expected.values()))
    assert 0 < everything.max() and everything.min() < 1      # the check saw both kinds of units


class HalvedLSTMCell(nn.LSTMCell):
    """An LSTM subclass with its own step, built on the built-in one: its gates keep their names."""

    def step(self, p, state):
        h, c = super().step(p, state)
        return h * 0.5, c


class UnnamedCell(nn.RecurrentCell):
    """A gated cell that names nothing: the study tools cannot know its gates."""

    def __init__(self, size, device):
        self.input_size = self.hidden_size = size
        self.weight = nn.Parameter(tg.ones(size, dtype=tg.float64, device=device))

    def step(self, p, h):
        return (p + h * self.weight).sigmoid() * h


class NamedCell(UnnamedCell):
    """The same cell, naming its gate "u"."""

    def step(self, p, h):
        return nn.named((p + h * self.weight).sigmoid(), "u") * h


@pytest.mark.parametrize("make, gates", [
    (lambda d: make_cell("rnn_relu", 2, 3, device=d), set()),          # relu: not a gate
    (lambda d: make_cell("jordan", 2, 3, device=d), {"h", "y"}),        # its tanh layer and tanh output
    (lambda d: HalvedLSTMCell(2, 3, device=d, dtype=tg.float64), {"i", "f", "g", "o"}),
    (lambda d: nn.ClockworkRNNCell(2, 4, periods=(1, 2), device=d, dtype=tg.float64), set()),   # "active": bool
    (lambda d: UnnamedCell(2, d), set()),
    (lambda d: NamedCell(2, d), {"u"})])
def test_saturation_reads_the_gates_the_step_names(device, make, gates):
    cell = make(device)
    tr = trace(cell, f64(np.ones((3, 2, 2)), device))
    saturation = telemetry.record(tr, tr.output.sum()).saturation[0]
    assert set(saturation) == gates
    for name in gates:
        assert saturation[name].shape == (3,)


def test_saturated_fraction_counts_the_ranges():
    values = np.array([0.05, 0.1, 0.5, 0.9, 0.95, 0.99])
    assert telemetry.saturated_fraction(values, "sigmoid") == 3 / 6
    assert telemetry.saturated_fraction(np.array([-0.95, -0.5, 0.9, 0.91]), "tanh") == 2 / 4
    with pytest.raises(ValueError, match="kind"):
        telemetry.saturated_fraction(values, "relu")


# ----------------------------------------------------------------- the swap
class BrokenCell(nn.RNNCell):
    def step(self, p, h):
        raise RuntimeError("broken step")


def test_parameters_restored_after_trace_and_after_error(device):
    cell = BrokenCell(2, 3, device=device, dtype=tg.float64)
    before = dict(vars(cell))
    with pytest.raises(RuntimeError, match="broken step"):
        trace(cell, f64(np.ones((2, 1, 2)), device))
    assert all(vars(cell)[k] is v for k, v in before.items())
    good = make_cell("minimal", 2, 3, device=device)
    names = [name for name, _ in good.named_parameters()]
    params = [p for _, p in good.named_parameters()]
    trace(good, f64(np.ones((2, 1, 2)), device))
    assert [n for n, _ in good.named_parameters()] == names == ["inp.weight", "inp.bias", "rec.weight", "rec.bias"]
    assert all(p is q for p, (_, q) in zip(params, good.named_parameters()))


def test_swapped_parameters_replaces_every_reference():
    lin = nn.Linear(2, 2)
    lin.tied = lin.weight
    stand_in = tg.zeros(2, 2)
    with swapped_parameters(lin, {id(lin.weight): stand_in}):
        assert lin.tied is stand_in and vars(lin)["weight"] is stand_in
    assert lin.tied is lin.weight and isinstance(lin.weight, nn.Parameter)


# ----------------------------------------------------------------- errors
def test_trace_rejects_bad_input(device):
    cell = make_cell("gru", 3, 2, device=device)
    with pytest.raises(ValueError, match="2 dims, expected 3"):
        trace(cell, f64(np.ones((2, 3)), device))
    with pytest.raises(ValueError, match="4 features, expected input_size=3"):
        trace(cell, f64(np.ones((2, 1, 4)), device))
    with pytest.raises(ValueError, match="no time steps"):
        trace(cell, f64(np.ones((0, 1, 3)), device))
    with pytest.raises(TypeError, match="Tensor"):
        trace(cell, np.ones((2, 1, 3)))
    with pytest.raises(TypeError, match="RecurrentCell"):
        trace(nn.Linear(3, 2), f64(np.ones((2, 1, 3)), device))
    with pytest.raises(ValueError, match="lengths has shape"):
        trace(nn.GRU(3, 2, bidirectional=True), f64(np.ones((2, 1, 3)), device), lengths=[2, 2])
    with pytest.raises(ValueError, match="no time steps"):
        trace(nn.GRU(3, 2, batch_first=True), f64(np.ones((2, 0, 3)), device))


def test_record_without_backward_raises(device):
    tr = trace(make_cell("lstm", 2, 2, device=device), f64(np.ones((2, 1, 2)), device))
    with pytest.raises(ValueError, match="no gradient"):
        telemetry.record(tr)


# ----------------------------------------------------------------- plot
def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    layer = nn.LSTM(2, 3, num_layers=2, dtype=tg.float64)
    tr = trace(layer, f64(np.random.default_rng(0).standard_normal((4, 2, 2)), "cpu"))
    path = telemetry.plot(telemetry.record(tr, tr.output.sum()), tmp_path / "telemetry.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
