"""Recurrent cells: RNNCell, LSTMCell, GRUCell and the variants.

Every built-in cell has a composed form (graph ops) and a fused one (one Function
per step): the two must agree in value and in every gradient. Both are checked
against finite differences in float64, against PyTorch's equations written out
in NumPy here and, where PyTorch is installed, against ``torch.nn`` itself. The
variants are checked against NumPy transcriptions of their docstring equations
and gradchecked through ``tg.nn.Recurrent``.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------- helpers
def make_cell(kind, input_size, hidden_size, fused=True, bias=True, device="cpu"):
    kw = dict(bias=bias, fused=fused, device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return tg.nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    return {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](input_size, hidden_size, **kw)


def random_params(module, rng, scale=0.7):
    """Random normal values for every parameter (larger than the default init), loaded in place."""
    state = {name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()}
    module.load_state_dict(state)
    return state


def random_state(kind, batch, hidden_size, rng):
    shape = (batch, hidden_size) if batch else (hidden_size,)
    if kind == "lstm":
        return rng.standard_normal(shape), rng.standard_normal(shape)
    return rng.standard_normal(shape)


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def as_tensors(state, device, grad=True):
    ts = [tg.tensor(s, dtype=tg.float64, device=device, requires_grad=grad) for s in parts(state)]
    return tuple(ts) if isinstance(state, tuple) else ts[0]


def run_cell(cell, x, state, rng_seed, device):
    """Forward and backward of ``sum_k (out_k * w_k)`` with fixed random weights w_k.
    Returns the output arrays and {name: gradient array} for x, the state parts and every parameter."""
    cell.zero_grad()
    xt = tg.tensor(x, dtype=tg.float64, device=device, requires_grad=True)
    st_ = None if state is None else as_tensors(state, device)
    new = parts(cell(xt, st_))
    weights = np.random.default_rng(rng_seed)
    loss = None
    for out in new:
        w = tg.tensor(weights.standard_normal(out.shape), dtype=tg.float64, device=device)
        term = (out * w).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    grads = {"x": xt.grad.numpy()}
    if st_ is not None:
        for i, s in enumerate(parts(st_)):
            grads[f"state{i}"] = np.zeros(s.shape) if s.grad is None else s.grad.numpy()
    for name, p in cell.named_parameters():
        grads[name] = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
    return [o.numpy() for o in new], grads


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_step(kind, params, x, state):
    """PyTorch's equations, gate order i|f|g|o (LSTM) and r|z|n (GRU), in NumPy."""
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih = params.get("bias_ih", np.zeros(w_ih.shape[0]))
    b_hh = params.get("bias_hh", np.zeros(w_hh.shape[0]))
    h = state[0] if kind == "lstm" else state
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    if kind == "rnn_tanh":
        return np.tanh(gi + gh)
    if kind == "rnn_relu":
        return np.maximum(gi + gh, 0.0)
    if kind == "lstm":
        c = state[1]
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new
    i_r, i_z, i_n = np.split(gi, 3, axis=-1)
    h_r, h_z, h_n = np.split(gh, 3, axis=-1)
    r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


# ----------------------------------------------------------------- composed == fused
@hyp()
@given(kind=st.sampled_from(KINDS), batch=st.integers(1, 3), input_size=st.integers(1, 4),
       hidden_size=st.integers(1, 4), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_equals_composed_in_value_and_gradient(device, kind, batch, input_size, hidden_size, bias, seed):
    rng = np.random.default_rng(seed)
    fused = make_cell(kind, input_size, hidden_size, fused=True, bias=bias, device=device)
    composed = make_cell(kind, input_size, hidden_size, fused=False, bias=bias, device=device)
    composed.load_state_dict(random_params(fused, rng))
    x = rng.standard_normal((batch, input_size))
    state = random_state(kind, batch, hidden_size, rng)
    out_f, grads_f = run_cell(fused, x, state, seed, device)
    out_c, grads_c = run_cell(composed, x, state, seed, device)
    assert len(out_f) == len(out_c) == (2 if kind == "lstm" else 1)
    for a, b in zip(out_f, out_c):
        assert_close(a, b)
    assert grads_f.keys() == grads_c.keys()
    expected_keys = {"x", "state0", "weight_ih", "weight_hh"} | ({"state1"} if kind == "lstm" else set()) | (
        {"bias_ih", "bias_hh"} if bias else set())
    assert set(grads_f) == expected_keys
    for name in grads_f:
        assert_close(grads_f[name], grads_c[name], msg=name)


@hyp(10)
@given(kind=st.sampled_from(KINDS), batch=st.integers(1, 3), input_size=st.integers(1, 3),
       hidden_size=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fused_equals_composed_without_initial_state(device, kind, batch, input_size, hidden_size, seed):
    rng = np.random.default_rng(seed)
    fused = make_cell(kind, input_size, hidden_size, fused=True, device=device)
    composed = make_cell(kind, input_size, hidden_size, fused=False, device=device)
    composed.load_state_dict(random_params(fused, rng))
    x = rng.standard_normal((batch, input_size))
    out_f, grads_f = run_cell(fused, x, None, seed, device)
    out_c, grads_c = run_cell(composed, x, None, seed, device)
    zero = tuple(np.zeros((batch, hidden_size)) for _ in range(2)) if kind == "lstm" else np.zeros(
        (batch, hidden_size))
    out_z, _ = run_cell(fused, x, zero, seed, device)
    for a, b, c in zip(out_f, out_c, out_z):
        assert_close(a, b)
        assert_close(a, c)
    for name in grads_f:
        assert_close(grads_f[name], grads_c[name], msg=name)


# ----------------------------------------------------------------- finite differences
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradcheck_and_gradgradcheck(device, kind, fused):
    rng = np.random.default_rng(1)
    cell = make_cell(kind, 3, 2, fused=fused, device=device)
    random_params(cell, rng)
    x = tg.tensor(rng.standard_normal((2, 3)), dtype=tg.float64, device=device, requires_grad=True)
    state = as_tensors(random_state(kind, 2, 2, rng), device)
    inputs = (x, *parts(state), *cell.parameters())
    n_state = len(parts(state))

    def fn(x, *rest):
        s = tuple(rest[:n_state]) if n_state == 2 else rest[0]
        return cell(x, s)

    assert tg.gradcheck(fn, inputs)
    assert tg.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradcheck_without_bias_and_state(device, kind, fused):
    rng = np.random.default_rng(2)
    cell = make_cell(kind, 2, 3, fused=fused, bias=False, device=device)
    random_params(cell, rng)
    x = tg.tensor(rng.standard_normal((2, 2)), dtype=tg.float64, device=device, requires_grad=True)
    assert tg.gradcheck(lambda x, *ps: cell(x), (x, *cell.parameters()))


def test_fused_second_derivative_through_an_unroll(device):
    """Hessian-vector products through an unrolled fused LSTM equal the composed ones."""
    results = []
    for fused in (True, False):
        cell = make_cell("lstm", 2, 2, fused=fused, device=device)
        random_params(cell, np.random.default_rng(4))
        x = tg.tensor(np.random.default_rng(3).standard_normal((3, 1, 2)), dtype=tg.float64, device=device)
        state = None
        for t in range(3):
            state = cell(x[t], state)
        loss = (state[0] * state[0]).sum() + state[1].sum()
        params = cell.parameters()
        grads = tg.grad([loss], params, create_graph=True)
        v = [tg.tensor(np.random.default_rng(5 + i).standard_normal(p.shape), dtype=tg.float64, device=device)
             for i, p in enumerate(params)]
        gv = sum(((g * vi).sum() for g, vi in zip(grads, v)), tg.zeros((), dtype=tg.float64, device=device))
        hv = tg.grad([gv], params)
        results.append([h.numpy() for h in hv])
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------------- PyTorch's equations
@hyp()
@given(kind=st.sampled_from(KINDS), fused=st.booleans(), bias=st.booleans(), batch=st.integers(1, 3),
       input_size=st.integers(1, 4), hidden_size=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_cell_equals_its_equations_in_numpy(device, kind, fused, bias, batch, input_size, hidden_size, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, input_size, hidden_size, fused=fused, bias=bias, device=device)
    params = random_params(cell, rng, scale=1.0)
    assert params["weight_ih"].shape == (GATES[kind] * hidden_size, input_size)
    assert params["weight_hh"].shape == (GATES[kind] * hidden_size, hidden_size)
    if bias:
        assert params["bias_ih"].shape == params["bias_hh"].shape == (GATES[kind] * hidden_size,)
    x = rng.standard_normal((batch, input_size))
    state = random_state(kind, batch, hidden_size, rng)
    with tg.no_grad():
        got = parts(cell(tg.tensor(x, dtype=tg.float64, device=device), as_tensors(state, device, grad=False)))
    expected = parts(reference_step(kind, params, x, state))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == tg.float64
        assert_close(g.numpy(), e)


def test_lstm_gate_order_is_i_f_g_o(device):
    """Drive one gate block at a time to saturation: each must act as the gate PyTorch puts there."""
    H = 2
    cell = make_cell("lstm", 1, H, fused=True, bias=True, device=device)
    big = 50.0
    c0 = np.array([[0.5, -0.25]])
    h0 = np.zeros((1, H))

    def run(bias):
        cell.load_state_dict({"weight_ih": np.zeros((4 * H, 1)), "weight_hh": np.zeros((4 * H, H)),
                              "bias_ih": bias, "bias_hh": np.zeros(4 * H)})
        with tg.no_grad():
            h, c = cell(tg.zeros(1, 1, dtype=tg.float64, device=device),
                        (tg.tensor(h0, device=device), tg.tensor(c0, device=device)))
        return h.numpy(), c.numpy()

    g_val = 0.3
    # i open, f closed, g = atanh(0.3), o open: c' = g, h' = tanh(g)
    h, c = run(np.concatenate([np.full(H, big), np.full(H, -big), np.full(H, np.arctanh(g_val)), np.full(H, big)]))
    assert_close(c, np.full((1, H), g_val))
    assert_close(h, np.tanh(c))
    # i closed, f open, o closed: c' = c, h' = 0
    h, c = run(np.concatenate([np.full(H, -big), np.full(H, big), np.full(H, 0.9), np.full(H, -big)]))
    assert_close(c, c0)
    assert_close(h, np.zeros((1, H)), atol=1e-20)


def test_gru_gate_order_is_r_z_n(device):
    H = 2
    cell = make_cell("gru", 1, H, fused=True, bias=True, device=device)
    big = 50.0
    h0 = np.array([[0.5, -0.25]])

    def run(bias_ih, bias_hh):
        cell.load_state_dict({"weight_ih": np.zeros((3 * H, 1)), "weight_hh": np.zeros((3 * H, H)),
                              "bias_ih": bias_ih, "bias_hh": bias_hh})
        with tg.no_grad():
            return cell(tg.zeros(1, 1, dtype=tg.float64, device=device), tg.tensor(h0, device=device)).numpy()

    # z open (second block): h' = h whatever n is
    out = run(np.concatenate([np.zeros(H), np.full(H, big), np.full(H, 0.7)]), np.zeros(3 * H))
    assert_close(out, h0)
    # z closed, r closed (first block): n = tanh(b_in), b_hn ignored
    out = run(np.concatenate([np.full(H, -big), np.full(H, -big), np.full(H, 0.7)]),
              np.concatenate([np.zeros(2 * H), np.full(H, 3.0)]))
    assert_close(out, np.full((1, H), np.tanh(0.7)))
    # z closed, r open: n = tanh(b_in + b_hn)
    out = run(np.concatenate([np.full(H, big), np.full(H, -big), np.full(H, 0.7)]),
              np.concatenate([np.zeros(2 * H), np.full(H, -0.2)]))
    assert_close(out, np.full((1, H), np.tanh(0.5)))


# ----------------------------------------------------------------- shapes and errors
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(device, kind, fused):
    rng = np.random.default_rng(6)
    cell = make_cell(kind, 3, 4, fused=fused, device=device)
    random_params(cell, rng)
    x = rng.standard_normal(3)
    state = random_state(kind, 0, 4, rng)
    out = parts(cell(tg.tensor(x, dtype=tg.float64, device=device), as_tensors(state, device)))
    batched = parts(cell(tg.tensor(x[None], dtype=tg.float64, device=device),
                         as_tensors(tuple(s[None] for s in parts(state)) if kind == "lstm" else state[None], device)))
    for o, b in zip(out, batched):
        assert o.shape == (4,)
        assert_close(o.numpy(), b.numpy()[0])
    # no state: zeros
    out0 = parts(cell(tg.tensor(x, dtype=tg.float64, device=device)))
    assert all(o.shape == (4,) for o in out0)
    zero = (np.zeros((1, 4)), np.zeros((1, 4))) if kind == "lstm" else np.zeros((1, 4))
    for o, e in zip(out0, parts(reference_step(kind, cell.state_dict(), x[None], zero))):
        assert_close(o.numpy(), e[0])
    # gradients flow back to the unbatched input
    xt = tg.tensor(x, dtype=tg.float64, device=device, requires_grad=True)
    assert tg.gradcheck(lambda x: cell(x), (xt,))


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_input_size_names_expected_and_actual(device, kind):
    cell = make_cell(kind, 4, 3, device=device)
    with pytest.raises(ValueError, match=r"\(2, 5\).*expected.*\(batch, 4\)"):
        cell(tg.zeros(2, 5, dtype=tg.float64, device=device))
    with pytest.raises(ValueError, match=r"\(5,\).*expected.*\(4,\)"):
        cell(tg.zeros(5, dtype=tg.float64, device=device))
    with pytest.raises(ValueError, match=r"\(1, 2, 4\).*expected"):
        cell(tg.zeros(1, 2, 4, dtype=tg.float64, device=device))
    with pytest.raises(ValueError, match=r"5 features, expected 4"):
        cell.project(tg.zeros(3, 2, 5, dtype=tg.float64, device=device))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="nonlinearity.*'sigmoid'"):
        tg.nn.RNNCell(2, 3, nonlinearity="sigmoid")
    for cls in (tg.nn.RNNCell, tg.nn.LSTMCell, tg.nn.GRUCell):
        with pytest.raises(ValueError, match="hidden_size must be at least 1, got 0"):
            cls(2, 0)
        with pytest.raises(ValueError, match="input_size must be at least 1, got 0"):
            cls(0, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_shapes_and_default_init(kind):
    tg.manual_seed(0)
    H, I, G = 16, 5, GATES[kind]
    cell = make_cell(kind, I, H)
    shapes = {name: p.shape for name, p in cell.named_parameters()}
    assert list(shapes) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert shapes == {"weight_ih": (G * H, I), "weight_hh": (G * H, H), "bias_ih": (G * H,), "bias_hh": (G * H,)}
    bound = 1 / np.sqrt(H)
    for p in cell.parameters():
        a = p.numpy()
        assert np.all(np.abs(a) <= bound) and a.std() > bound / 4
    assert [n for n, _ in make_cell(kind, I, H, bias=False).named_parameters()] == ["weight_ih", "weight_hh"]


# ----------------------------------------------------------------- PyTorch as an oracle
def _torch_cell(torch, kind, input_size, hidden_size, bias):
    kw = dict(bias=bias, dtype=torch.float64)
    if kind.startswith("rnn"):
        return torch.nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    return {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](input_size, hidden_size, **kw)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
@pytest.mark.parametrize("kind", KINDS)
def test_cells_equal_torch(device, kind, fused, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    B, I, H = 3, 4, 5
    ref = _torch_cell(torch, kind, I, H, bias)
    cell = make_cell(kind, I, H, fused=fused, bias=bias, device=device)
    cell.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, I))
    state = random_state(kind, B, H, rng)
    out, grads = run_cell(cell, x, state, 11, device)

    xt = torch.tensor(x, requires_grad=True)
    st_ = [torch.tensor(s, requires_grad=True) for s in parts(state)]
    new = ref(xt, tuple(st_) if kind == "lstm" else st_[0])
    new = list(new) if isinstance(new, tuple) else [new]
    weights = np.random.default_rng(11)
    loss = sum((o * torch.tensor(weights.standard_normal(tuple(o.shape)))).sum() for o in new)
    loss.backward()
    for a, b in zip(out, new):
        assert_close(a, b.detach().numpy())
    assert_close(grads["x"], xt.grad.numpy())
    for i, s in enumerate(st_):
        assert_close(grads[f"state{i}"], s.grad.numpy())
    for name, p in ref.named_parameters():
        assert_close(grads[name], p.grad.numpy())


# ----------------------------------------------------------------- variants
def variant_params(cell, rng, scale=0.8):
    return random_params(cell, rng, scale)


def peephole_reference(params, x, state):
    h, c = state
    z = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"] + h @ params["weight_hh"].T
    z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
    w_ci, w_cf, w_co = params["weight_ch"]
    i = sigmoid(z_i + w_ci * c)
    f = sigmoid(z_f + w_cf * c)
    g = np.tanh(z_g)
    c_new = f * c + i * g
    o = sigmoid(z_o + w_co * c_new)
    return o * np.tanh(c_new), c_new


def coupled_reference(params, x, state):
    """f | g | o rows; the input gate is 1 - f."""
    h, c = state
    z = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"] + h @ params["weight_hh"].T
    z_f, z_g, z_o = np.split(z, 3, axis=-1)
    f, g, o = sigmoid(z_f), np.tanh(z_g), sigmoid(z_o)
    i = 1.0 - f
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def jordan_reference(params, x, y, output_nonlinearity="tanh"):
    h = np.tanh(x @ params["weight_ih"].T + params["bias_ih"] + y @ params["weight_yh"].T)
    out = h @ params["weight_hy"].T + params["bias_hy"]
    return np.tanh(out) if output_nonlinearity == "tanh" else out


@hyp(15)
@given(batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_peephole_lstm_equals_its_equations(device, batch, input_size, hidden_size, seed):
    rng = np.random.default_rng(seed)
    cell = tg.nn.PeepholeLSTMCell(input_size, hidden_size, device=device, dtype=tg.float64)
    params = variant_params(cell, rng)
    assert params["weight_ch"].shape == (3, hidden_size)
    assert params["weight_ih"].shape == (4 * hidden_size, input_size)
    x = rng.standard_normal((batch, input_size))
    state = random_state("lstm", batch, hidden_size, rng)
    h, c = cell(tg.tensor(x, device=device), as_tensors(state, device, grad=False))
    eh, ec = peephole_reference(params, x, state)
    assert_close(h.numpy(), eh)
    assert_close(c.numpy(), ec)


@hyp(15)
@given(batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_coupled_lstm_input_gate_is_one_minus_forget(device, batch, input_size, hidden_size, seed):
    rng = np.random.default_rng(seed)
    cell = tg.nn.CoupledLSTMCell(input_size, hidden_size, device=device, dtype=tg.float64)
    params = variant_params(cell, rng)
    assert params["weight_ih"].shape == (3 * hidden_size, input_size)
    assert params["weight_hh"].shape == (3 * hidden_size, hidden_size)
    x = rng.standard_normal((batch, input_size))
    state = random_state("lstm", batch, hidden_size, rng)
    h, c = cell(tg.tensor(x, device=device), as_tensors(state, device, grad=False))
    eh, ec = coupled_reference(params, x, state)
    assert_close(h.numpy(), eh)
    assert_close(c.numpy(), ec)
    # c' is a convex combination of c and g: with c = g the cell state keeps that value whatever f is
    z = x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"] + state[0] @ params["weight_hh"].T
    g = np.tanh(np.split(z, 3, axis=-1)[1])
    _, c2 = cell(tg.tensor(x, device=device), (tg.tensor(state[0], device=device), tg.tensor(g, device=device)))
    assert_close(c2.numpy(), g)


@hyp(15)
@given(batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 3),
       output_size=st.integers(1, 3), steps=st.integers(1, 5), nonlinearity=st.sampled_from(["tanh", "identity"]),
       seed=st.integers(0, 2**16))
def test_jordan_cell_feeds_back_its_previous_output(device, batch, input_size, hidden_size, output_size, steps,
                                                     nonlinearity, seed):
    rng = np.random.default_rng(seed)
    cell = tg.nn.JordanCell(input_size, hidden_size, output_size, output_nonlinearity=nonlinearity,
                            device=device, dtype=tg.float64)
    params = variant_params(cell, rng)
    assert params["weight_yh"].shape == (hidden_size, output_size)
    assert params["weight_hy"].shape == (output_size, hidden_size)
    x = rng.standard_normal((steps, batch, input_size))
    y0 = rng.standard_normal((batch, output_size))
    out, final = tg.nn.unroll(cell, tg.tensor(x, device=device), tg.tensor(y0, device=device))
    y, expected = y0, []
    for t in range(steps):
        y = jordan_reference(params, x[t], y, nonlinearity)
        expected.append(y)
    assert out.shape == (steps, batch, output_size)
    assert_close(out.numpy(), np.stack(expected))
    assert_close(final.numpy(), expected[-1])
    # the state carried is the output: step t+1 from output t gives output t+1
    if steps > 1:
        nxt = cell(tg.tensor(x[1], device=device), out[0])
        assert_close(nxt.numpy(), expected[1])
    # no initial state: zeros of the output size
    out0, _ = tg.nn.unroll(cell, tg.tensor(x, device=device))
    assert_close(out0.numpy()[0], jordan_reference(params, x[0], np.zeros((batch, output_size)), nonlinearity))


def clockwork_state(h, device):
    """A Clockwork state (h, t) at step t = 0."""
    return tg.tensor(h, device=device), tg.zeros(h.shape[0], 1, dtype=tg.float64, device=device)


def clockwork_reference(params, periods, x, h0):
    """The docstring's equations: module k updates when t mod T_k == 0 and reads modules j with T_j >= T_k."""
    H = params["weight_hh"].shape[0]
    size = H // len(periods)
    unit_period = np.repeat(np.asarray(periods), size)
    reads = unit_period[None, :] >= unit_period[:, None]        # row k reads column j
    h, outs = h0, []
    for t in range(x.shape[0]):
        cand = np.tanh(x[t] @ params["weight_ih"].T + params["bias_ih"] + h @ (params["weight_hh"] * reads).T)
        h = np.where((t % unit_period == 0)[None, :], cand, h)
        outs.append(h)
    return np.stack(outs)


@hyp(15)
@given(periods=st.sampled_from([(1,), (1, 2), (1, 3), (1, 2, 4), (2, 3), (1, 2, 4, 8)]), size=st.integers(1, 2),
       batch=st.integers(1, 2), steps=st.integers(1, 10), seed=st.integers(0, 2**16))
def test_clockwork_equals_its_equations(device, periods, size, batch, steps, seed):
    rng = np.random.default_rng(seed)
    H = size * len(periods)
    cell = tg.nn.ClockworkRNNCell(2, H, periods=periods, device=device, dtype=tg.float64)
    params = variant_params(cell, rng)
    x = rng.standard_normal((steps, batch, 2))
    h0 = rng.standard_normal((batch, H))
    out, (final, clock) = tg.nn.unroll(cell, tg.tensor(x, device=device), clockwork_state(h0, device))
    expected = clockwork_reference(params, periods, x, h0)
    assert_close(out.numpy(), expected)
    assert_close(final.numpy(), expected[-1])
    assert np.all(clock.numpy() == steps)       # the step counter travels with the state


def test_clockwork_slow_modules_hold_between_ticks(device):
    rng = np.random.default_rng(8)
    periods, size, steps = (1, 2, 4), 2, 12
    H = size * len(periods)
    cell = tg.nn.ClockworkRNNCell(3, H, periods=periods, device=device, dtype=tg.float64)
    variant_params(cell, rng)
    x = tg.tensor(rng.standard_normal((steps, 2, 3)), device=device)
    h0 = rng.standard_normal((2, H))
    out, _ = tg.nn.unroll(cell, x, clockwork_state(h0, device))
    h = np.concatenate([h0[None], out.numpy()])       # h[t + 1] is the state after step t
    for k, period in enumerate(periods):
        block = slice(k * size, (k + 1) * size)
        for t in range(steps):
            before, after = h[t][:, block], h[t + 1][:, block]
            if t % period:
                np.testing.assert_array_equal(after, before)    # exactly kept
            else:
                assert np.all(np.abs(after - before) > 1e-8), (k, t)


def test_clockwork_connectivity_is_block_upper_triangular(device):
    rng = np.random.default_rng(9)
    periods, size = (1, 2, 4), 2
    H = size * len(periods)
    cell = tg.nn.ClockworkRNNCell(3, H, periods=periods, device=device, dtype=tg.float64)
    variant_params(cell, rng)
    x = tg.tensor(rng.standard_normal((2, 3)), device=device)        # one step: t = 0, every module active
    h = rng.standard_normal((2, H))
    base = cell(x, clockwork_state(h, device))[0].numpy()
    for k in range(len(periods)):
        bumped = h.copy()
        bumped[:, k * size:(k + 1) * size] += 1.0
        new = cell(x, clockwork_state(bumped, device))[0].numpy()
        for j in range(len(periods)):
            block = slice(j * size, (j + 1) * size)
            if j > k:       # a slower module never reads a faster one
                np.testing.assert_array_equal(new[:, block], base[:, block])
            else:           # a module reads itself and every slower one
                assert np.all(np.abs(new[:, block] - base[:, block]) > 1e-8), (k, j)
    # the masked weights get exactly zero gradient
    cell.zero_grad()
    cell(x, clockwork_state(h, device))[0].sum().backward()
    g = cell.weight_hh.grad.numpy()
    module = np.repeat(np.arange(len(periods)), size)
    lower = module[None, :] < module[:, None]
    assert np.all(g[lower] == 0)
    assert np.all(g[~lower] != 0)


def test_clockwork_modules_with_equal_periods_read_each_other(device):
    """The docstring's sum runs over every module j with T_j >= T_k, equal periods included."""
    rng = np.random.default_rng(10)
    periods = (1, 2, 2)
    cell = tg.nn.ClockworkRNNCell(2, 3, periods=periods, device=device, dtype=tg.float64)
    params = variant_params(cell, rng)
    x = rng.standard_normal((4, 2, 2))
    h0 = rng.standard_normal((2, 3))
    out, _ = tg.nn.unroll(cell, tg.tensor(x, device=device), clockwork_state(h0, device))
    assert_close(out.numpy(), clockwork_reference(params, periods, x, h0))


def test_variant_constructor_errors():
    with pytest.raises(ValueError, match="equal"):
        tg.nn.ClockworkRNNCell(2, 5, periods=(1, 2))
    with pytest.raises(ValueError, match="positive"):
        tg.nn.ClockworkRNNCell(2, 4, periods=(0, 1))
    with pytest.raises(ValueError, match="output_nonlinearity"):
        tg.nn.JordanCell(2, 3, output_nonlinearity="relu")


VARIANTS = {
    "peephole": (lambda i, h: tg.nn.PeepholeLSTMCell(i, h, dtype=tg.float64), 2),
    "coupled": (lambda i, h: tg.nn.CoupledLSTMCell(i, h, dtype=tg.float64), 2),
    "jordan": (lambda i, h: tg.nn.JordanCell(i, h, output_size=2, dtype=tg.float64), 3),
    "clockwork": (lambda i, h: tg.nn.ClockworkRNNCell(i, h, periods=(1, 2), dtype=tg.float64), 2),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_gradcheck_through_recurrent(device, variant):
    make, hidden = VARIANTS[variant]
    rng = np.random.default_rng(12)
    model = tg.nn.Recurrent(make, 2, hidden, num_layers=1, bidirectional=True)
    model.to(device=device)
    variant_params(model, rng)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), device=device, requires_grad=True)
    lengths = [4, 3]

    def fn(x, *params):
        out, state = model(x, lengths=lengths)
        return (out, *parts(state))

    assert tg.gradcheck(fn, (x, *model.parameters()))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_two_layers_run_and_backprop(device, variant):
    make, hidden = VARIANTS[variant]
    rng = np.random.default_rng(13)
    model = tg.nn.Recurrent(make, 3, hidden, num_layers=2, bidirectional=True, batch_first=True)
    model.to(device=device)
    variant_params(model, rng)
    x = tg.tensor(rng.standard_normal((2, 5, 3)), device=device, requires_grad=True)
    out, state = model(x)
    width = model.cells()[0].output_size if variant == "jordan" else hidden
    assert out.shape == (2, 5, 2 * width)
    for s in parts(state):
        assert s.shape[:2] == (4, 2)
    loss = out.sum() + sum(s.sum() for s in parts(state))
    loss.backward()
    assert x.grad is not None and np.all(np.isfinite(x.grad.numpy()))
    for name, p in model.named_parameters():
        assert p.grad is not None, name
