"""study.truncation: the truncated-BPTT gradients and their distance to full BPTT.

Each variant is checked against an independent computation: k >= T against an
ordinary unroll and backward; k = 1 against the one-step gradient of a tanh RNN
written out in NumPy; the sliding variant against its definition run literally
(each loss term recomputed from the state detached k steps before it); the chunked
variant against ``nn.bptt.truncated_bptt`` with k1 = k2 = k. All in float64.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import truncation
from helpers import hyp


def f64(array, device, grad=False):
    return tg.tensor(array, dtype=tg.float64, device=device, requires_grad=grad)


def randomize(module, rng, scale=0.7):
    module.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()})


def make_model(kind, fused, device, input_size=2, hidden_size=3):
    kw = dict(device=device, dtype=tg.float64)
    if kind == "rnn":
        return nn.RNNCell(input_size, hidden_size, fused=fused, **kw)
    if kind == "lstm":
        return nn.LSTMCell(input_size, hidden_size, fused=fused, **kw)
    if kind == "gru_layers":
        return nn.GRU(input_size, hidden_size, num_layers=2, fused=fused, **kw)
    return nn.PeepholeLSTMCell(input_size, hidden_size, **kw)


def dot_loss(outputs, targets):
    """sum over t and batch of <out_t, y_t>: a sum over time steps."""
    return (outputs * targets).sum()


def run(model, x, state=None):
    return nn.unroll(model, x, state) if isinstance(model, nn.RecurrentCell) else model(x, state)


def full_bptt(model, x, targets, loss_fn=dot_loss):
    model.zero_grad()
    outputs, _ = run(model, x)
    loss_fn(outputs, targets).backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def flat(grads, names):
    return np.concatenate([grads[n].reshape(-1) for n in names])


def assert_rel(actual, expected, tol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * max(np.abs(expected).max(), 1e-300))


def sample(rng, steps, batch, hidden, device, input_size=2):
    x = f64(rng.standard_normal((steps, batch, input_size)), device)
    y = f64(rng.standard_normal((steps, batch, hidden)), device)
    return x, y


# ----------------------------------------------------------------- k >= T is full BPTT
@hyp(6)
@given(kind=st.sampled_from(["rnn", "lstm", "gru_layers", "peephole"]), fused=st.booleans(),
       variant=st.sampled_from(truncation.VARIANTS), steps=st.integers(1, 5), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_no_truncation_is_full_bptt(device, kind, fused, variant, steps, batch, seed):
    rng = np.random.default_rng(seed)
    model = make_model(kind, fused, device)
    randomize(model, rng)
    x, y = sample(rng, steps, batch, 3, device)
    expected = full_bptt(model, x, y)
    result = truncation.measure(model, x, dot_loss, targets=y, ks=[steps, steps + 3], variant=variant)
    assert result.names == list(expected)
    for grads in [result.full] + result.grads:
        for name in expected:
            assert_rel(grads[name], expected[name])
    np.testing.assert_allclose(result.cosine, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.relative_error, 0.0, rtol=0, atol=1e-12)


# ----------------------------------------------------------------- k = 1 by hand
@pytest.mark.parametrize("variant", truncation.VARIANTS)
def test_one_step_truncation_matches_hand_gradient(device, variant):
    """h_t = tanh(x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T), l_t = <y_t, h_t>, h_{t-1} held
    constant: with a_t = y_t * (1 - h_t^2), dW_hh = sum_t a_t^T h_{t-1}, dW_ih = sum_t a_t^T x_t,
    db_ih = db_hh = sum_t a_t."""
    rng = np.random.default_rng(11)
    steps, batch, hidden = 5, 2, 3
    cell = make_model("rnn", True, device)
    randomize(cell, rng)
    x, y = sample(rng, steps, batch, hidden, device)
    result = truncation.measure(cell, x, dot_loss, targets=y, ks=[1], variant=variant)
    p, xs, ys = cell.state_dict(), x.numpy(), y.numpy()
    h = [np.zeros((batch, hidden))]
    for t in range(steps):
        h.append(np.tanh(xs[t] @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"] + h[-1] @ p["weight_hh"].T))
    a = [ys[t] * (1 - h[t + 1] ** 2) for t in range(steps)]
    expected = {"weight_ih": sum(a[t].T @ xs[t] for t in range(steps)),
                "weight_hh": sum(a[t].T @ h[t] for t in range(steps)),
                "bias_ih": sum(a[t].sum(axis=0) for t in range(steps))}
    expected["bias_hh"] = expected["bias_ih"]
    for name, g in expected.items():
        assert_rel(result.grads[0][name], g)


# ----------------------------------------------------------------- the definitions run literally
def sliding_by_recompute(model, x, y, k):
    """g_k = sum_t d l_t / d theta with l_t computed by running steps t-k+1 .. t from the
    state after step t-k, detached (the initial state when t-k < 0)."""
    total = None
    for t in range(x.shape[0]):
        start = max(0, t - k + 1)
        with tg.no_grad():
            state = run(model, x[:start])[1] if start > 0 else None
        outputs, _ = run(model, x[start:t + 1], state)
        grads = tg.grad(dot_loss(outputs[-1:], y[t:t + 1]), model.parameters())
        total = [g.numpy() for g in grads] if total is None else [a + g.numpy() for a, g in zip(total, grads)]
    return dict(zip([n for n, _ in model.named_parameters()], total))


@pytest.mark.parametrize("kind,fused", [("lstm", False), ("gru_layers", True)])
def test_sliding_matches_its_definition(device, kind, fused):
    rng = np.random.default_rng(5)
    model = make_model(kind, fused, device)
    randomize(model, rng)
    x, y = sample(rng, 5, 2, 3, device)
    ks = [1, 2, 4]
    result = truncation.measure(model, x, dot_loss, targets=y, ks=ks)
    for k, grads in zip(ks, result.grads):
        expected = sliding_by_recompute(model, x, y, k)
        for name in expected:
            assert_rel(grads[name], expected[name])
    assert result.relative_error[0] > 1e-3        # truncation does change the gradient here


@pytest.mark.parametrize("kind", ["lstm", "gru_layers"])
def test_chunked_matches_truncated_bptt(device, kind):
    rng = np.random.default_rng(9)
    model = make_model(kind, True, device)
    randomize(model, rng)
    x, y = sample(rng, 7, 2, 3, device)
    ks = [1, 2, 3]
    result = truncation.measure(model, x, dot_loss, targets=y, ks=ks, variant="chunked")
    for k, grads in zip(ks, result.grads):
        model.zero_grad()
        nn.bptt.truncated_bptt(lambda inp, s: run(model, inp, s), x, y, dot_loss, k1=k)
        for name, p in model.named_parameters():
            assert_rel(grads[name], p.grad.numpy())
    model.zero_grad()


# ----------------------------------------------------------------- layouts, lengths, directions
@hyp(8)
@given(kind=st.sampled_from(["rnn", "lstm", "gru"]), fused=st.booleans(), num_layers=st.integers(1, 2),
       bidirectional=st.booleans(), batch_first=st.booleans(), variant=st.sampled_from(truncation.VARIANTS),
       steps=st.integers(1, 4), batch=st.integers(1, 3), data=st.data(), seed=st.integers(0, 2**16))
def test_no_truncation_is_full_bptt_for_any_layer(device, kind, fused, num_layers, bidirectional, batch_first,
                                                  variant, steps, batch, data, seed):
    """batch_first layers, variable lengths and (for the sliding variant) bidirectional layers: k >= T is
    the layer's own gradient."""
    if bidirectional:
        variant, lengths = "sliding", None
    else:
        lengths = data.draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    rng = np.random.default_rng(seed)
    model = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](
        2, 3, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, fused=fused,
        device=device, dtype=tg.float64)
    randomize(model, rng)
    x, y = sample(rng, steps, batch, 3 * (2 if bidirectional else 1), device)
    inputs = x.swapaxes(0, 1) if batch_first else x
    model.zero_grad()
    out, _ = model(inputs, lengths=lengths)
    dot_loss(out.swapaxes(0, 1) if batch_first else out, y).backward()
    expected = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    result = truncation.measure(model, inputs, dot_loss, targets=y, ks=[steps], variant=variant, lengths=lengths)
    for name in expected:
        assert_rel(result.grads[0][name], expected[name])
        assert_rel(result.full[name], expected[name])


def test_bidirectional_sliding_matches_its_definition(device):
    """Term t keeps what reaches the forward steps reading positions t-k+1 .. t and the reverse steps
    reading t .. t+k-1: each direction recomputed from its state detached k steps before t."""
    rng = np.random.default_rng(4)
    steps, k = 5, 2
    model = nn.GRU(2, 3, bidirectional=True, device=device, dtype=tg.float64)
    randomize(model, rng)
    forward, backward = model.cells()
    x, y = sample(rng, steps, 2, 6, device)
    result = truncation.measure(model, x, dot_loss, targets=y, ks=[k])
    expected = None
    for t in range(steps):
        start, stop = max(0, t - k + 1), min(steps, t + k)
        with tg.no_grad():
            h_f = nn.unroll(forward, x[:start])[1] if start > 0 else None
            h_r = nn.unroll(backward, x[stop:], reverse=True)[1] if stop < steps else None
        out_f, _ = nn.unroll(forward, x[start:t + 1], h_f)
        out_r, _ = nn.unroll(backward, x[t:stop], h_r, reverse=True)
        term = dot_loss(tg.cat([out_f[-1:], out_r[:1]], axis=2), y[t:t + 1])
        grads = [g.numpy() for g in tg.grad(term, model.parameters())]
        expected = grads if expected is None else [a + g for a, g in zip(expected, grads)]
    for (name, _), g in zip(model.named_parameters(), expected):
        assert_rel(result.grads[0][name], g)
    assert result.relative_error[0] > 1e-3


def test_truncation_refuses_what_it_cannot_define(device):
    model = nn.GRU(2, 3, bidirectional=True, device=device, dtype=tg.float64)
    x, y = sample(np.random.default_rng(0), 3, 2, 6, device)
    with pytest.raises(ValueError, match="streams the sequence forward"):
        truncation.measure(model, x, dot_loss, targets=y, variant="chunked")
    with pytest.raises(ValueError, match="different lengths"):
        truncation.measure(model, x, dot_loss, targets=y, lengths=[3, 2])


# ----------------------------------------------------------------- the report
def test_report_is_consistent(device):
    rng = np.random.default_rng(2)
    cell = make_model("lstm", True, device)
    randomize(cell, rng, scale=1.2)
    x, y = sample(rng, 6, 3, 3, device)
    result = truncation.measure(cell, x, dot_loss, targets=y)
    assert result.ks == tuple(range(1, 7))
    full = flat(result.full, result.names)
    for grads, cos, err in zip(result.grads, result.cosine, result.relative_error):
        g = flat(grads, result.names)
        assert -1.0 <= cos <= 1.0
        np.testing.assert_allclose(cos, g @ full / (np.linalg.norm(g) * np.linalg.norm(full)), rtol=1e-12)
        np.testing.assert_allclose(err, np.linalg.norm(g - full) / np.linalg.norm(full), rtol=1e-12)
    # g_1 is D_0, and g_k - g_{k-1} is D_{k-1}: what travels exactly k-1 steps back
    steps = [flat(g, result.names) for g in result.grads]
    np.testing.assert_allclose(result.lag_norms[0], np.linalg.norm(steps[0]), rtol=1e-12)
    for k in range(1, 6):
        np.testing.assert_allclose(result.lag_norms[k], np.linalg.norm(steps[k] - steps[k - 1]), rtol=1e-9)


def test_leaves_gradients_alone_and_ignores_readout(device):
    rng = np.random.default_rng(4)
    cell = make_model("rnn", False, device)
    readout = nn.Linear(3, 1, device=device, dtype=tg.float64)
    x = f64(rng.standard_normal((4, 2, 2)), device)
    y = f64(rng.standard_normal((4, 2, 1)), device)
    result = truncation.measure(cell, x, lambda out, tgt: ((readout(out) - tgt) ** 2).sum(), targets=y, ks=[2])
    assert result.names == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert all(p.grad is None for p in cell.parameters() + readout.parameters())


def test_frozen_parameters_are_not_reported(device):
    rng = np.random.default_rng(6)
    cell = make_model("rnn", True, device)
    cell.weight_ih.requires_grad = False
    x, y = sample(rng, 3, 1, 3, device)
    result = truncation.measure(cell, x, dot_loss, targets=y, ks=[1, 3])
    assert result.names == ["weight_hh", "bias_ih", "bias_hh"]
    assert_rel(result.grads[1]["weight_hh"], full_bptt(cell, x, y)["weight_hh"])


# ----------------------------------------------------------------- errors
def test_rejects_bad_arguments(device):
    cell = make_model("gru_layers", True, device)
    x, y = sample(np.random.default_rng(0), 4, 2, 3, device)
    with pytest.raises(ValueError, match="k=0"):
        truncation.measure(cell, x, dot_loss, targets=y, ks=[2, 0])
    with pytest.raises(TypeError, match="ints"):
        truncation.measure(cell, x, dot_loss, targets=y, ks=[1.5])
    with pytest.raises(ValueError, match="empty"):
        truncation.measure(cell, x, dot_loss, targets=y, ks=[])
    with pytest.raises(ValueError, match="variant"):
        truncation.measure(cell, x, dot_loss, targets=y, variant="windowed")
    with pytest.raises(ValueError, match="2 dims, expected 3"):
        truncation.measure(cell, x[0], dot_loss, targets=y)
    with pytest.raises(ValueError, match="5 features, expected input_size=2"):
        truncation.measure(cell, f64(np.ones((4, 2, 5)), device), dot_loss, targets=y)
    with pytest.raises(ValueError, match="targets has shape"):
        truncation.measure(cell, x, dot_loss, targets=y[:3])
    with pytest.raises(ValueError, match="sum over time steps"):
        truncation.measure(cell, x, lambda out, tgt: (out * tgt).sum() / out.shape[0], targets=y, ks=[2])
    with pytest.raises(ValueError, match="sum over time steps"):
        truncation.measure(cell, x, lambda out, tgt: (out * tgt).sum() / out.shape[0], targets=y, ks=[2],
                           variant="chunked")
    with pytest.raises(ValueError, match="eval"):
        truncation.measure(nn.GRU(2, 3, num_layers=2, dropout=0.5, dtype=tg.float64), x, dot_loss, targets=y)


# ----------------------------------------------------------------- plot
@pytest.mark.parametrize("variant", truncation.VARIANTS)
def test_plot_writes_png(tmp_path, variant):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    cell = make_model("lstm", True, "cpu")
    x, y = sample(rng, 4, 2, 3, "cpu")
    result = truncation.measure(cell, x, dot_loss, targets=y, ks=[3, 1, 2], variant=variant)
    path = truncation.plot(result, tmp_path / "truncation.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
