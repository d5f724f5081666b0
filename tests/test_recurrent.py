"""Recurrent layers: nn.RNN, nn.LSTM, nn.GRU and nn.Recurrent around any cell.

Shapes and parameter names follow PyTorch; a padded batch with ``lengths`` must
equal each sequence run alone (padded outputs exactly zero); gradients match
finite differences in float64; where PyTorch is installed the layers equal
``torch.nn`` with a copied state dict, packed variable-length batches included.
"""
import itertools
import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------- helpers
def make_layer(kind, input_size, hidden_size, num_layers=1, bidirectional=False, batch_first=False, bias=True,
               dropout=0.0, fused=True, device="cpu"):
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
              bidirectional=bidirectional, fused=fused, device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return tg.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    return {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU}[kind](input_size, hidden_size, **kw)


def random_params(module, rng, scale=0.6):
    state = {name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()}
    module.load_state_dict(state)
    return state


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def rebuild(like, items):
    return tuple(items) if isinstance(like, tuple) or len(items) > 1 else items[0]


def tensor(a, device, grad=False):
    return tg.tensor(np.asarray(a, dtype=np.float64), dtype=tg.float64, device=device, requires_grad=grad)


def assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


def n_state_parts(kind):
    return 2 if kind == "lstm" else 1


@st.composite
def configs(draw, max_steps=4, max_batch=3, max_size=3, need_lengths=False):
    """Everything but the kind: sizes, layers, directions, layout, initial state, lengths, a seed."""
    steps = draw(st.integers(1, max_steps))
    batch = draw(st.integers(1, max_batch))
    lengths = st.lists(st.integers(1, steps), min_size=batch, max_size=batch)
    return dict(steps=steps, batch=batch,
                input_size=draw(st.integers(1, max_size)), hidden_size=draw(st.integers(1, max_size)),
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), with_hx=draw(st.booleans()),
                lengths=draw(lengths if need_lengths else st.none() | lengths),
                seed=draw(st.integers(0, 2**16)))


# the richest configuration, always tried first
FULL = dict(steps=4, batch=3, input_size=2, hidden_size=2, num_layers=2, bidirectional=True, batch_first=True,
            with_hx=True, lengths=[4, 1, 3], seed=1)
FULL_SMALL = dict(FULL, steps=3, batch=2, lengths=[3, 1])


def build(cfg, device, fused=True):
    """The layer, its input (in its layout), the initial state (or None), with random values."""
    rng = np.random.default_rng(cfg["seed"] + KINDS.index(cfg["kind"]))
    model = make_layer(cfg["kind"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bidirectional"],
                       cfg["batch_first"], fused=fused, device=device)
    random_params(model, rng)
    T, B = cfg["steps"], cfg["batch"]
    x = rng.standard_normal((B, T, cfg["input_size"]) if cfg["batch_first"] else (T, B, cfg["input_size"]))
    hx = None
    if cfg["with_hx"]:
        D = 2 if cfg["bidirectional"] else 1
        hx = [rng.standard_normal((cfg["num_layers"] * D, B, cfg["hidden_size"]))
              for _ in range(n_state_parts(cfg["kind"]))]
    return model, x, hx


def hx_tensors(kind, hx, device, grad=False):
    if hx is None:
        return None
    ts = [tensor(h, device, grad) for h in hx]
    return tuple(ts) if kind == "lstm" else ts[0]


# ----------------------------------------------------------------- shapes and names
@pytest.mark.parametrize("kind", KINDS)
@hyp(15)
@given(cfg=configs(max_steps=5))
@example(cfg=FULL)
def test_output_and_state_shapes(device, kind, cfg):
    cfg = dict(cfg, kind=kind)
    model, x, hx = build(cfg, device)
    T, B, H = cfg["steps"], cfg["batch"], cfg["hidden_size"]
    D = 2 if cfg["bidirectional"] else 1
    out, h_n = model(tensor(x, device), hx_tensors(cfg["kind"], hx, device), lengths=cfg["lengths"])
    assert out.shape == ((B, T, D * H) if cfg["batch_first"] else (T, B, D * H))
    assert out.dtype == tg.float64
    states = parts(h_n)
    assert len(states) == n_state_parts(cfg["kind"])
    assert isinstance(h_n, tuple) == (cfg["kind"] == "lstm")
    for s in states:
        assert s.shape == (cfg["num_layers"] * D, B, H)
    # the last layer's output at the last valid step is h_n of that layer (forward direction)
    o = out.numpy().swapaxes(0, 1) if cfg["batch_first"] else out.numpy()
    last = np.asarray(cfg["lengths"] if cfg["lengths"] is not None else [T] * B) - 1
    h_last = states[0].numpy()[(cfg["num_layers"] - 1) * D]
    assert_close(o[last, np.arange(B), :H], h_last)
    if D == 2:      # the reverse direction ends at step 0
        assert_close(o[0, :, H:], states[0].numpy()[-1])


def expected_names(num_layers, bidirectional, bias):
    names = []
    for k in range(num_layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            names += [f"weight_ih_l{k}{suffix}", f"weight_hh_l{k}{suffix}"]
            if bias:
                names += [f"bias_ih_l{k}{suffix}", f"bias_hh_l{k}{suffix}"]
    return names


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_and_shapes_are_pytorchs(kind, num_layers, bidirectional, bias):
    I, H, G, D = 5, 4, GATES[kind], 2 if bidirectional else 1
    model = make_layer(kind, I, H, num_layers, bidirectional, bias=bias)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert list(shapes) == expected_names(num_layers, bidirectional, bias)
    assert list(model.state_dict()) == list(shapes)
    for name, shape in shapes.items():
        k = int(name.split("_l")[1][0])
        if name.startswith("weight_ih"):
            assert shape == (G * H, I if k == 0 else D * H), name
        elif name.startswith("weight_hh"):
            assert shape == (G * H, H), name
        else:
            assert shape == (G * H,), name
    # parameters are shared with the cells that use them, not copies
    assert {id(p) for p in model.parameters()} == {id(p) for c in model.cells() for p in c.parameters()}


def test_default_init_is_uniform_in_one_over_sqrt_hidden():
    tg.manual_seed(0)
    model = tg.nn.LSTM(3, 25, num_layers=2, bidirectional=True)
    bound = 1 / 5
    for name, p in model.named_parameters():
        a = p.numpy()
        assert a.dtype == np.float32
        assert np.all(np.abs(a) <= bound), name
        assert a.std() > bound / 4, name


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", KINDS)
@hyp(6)
@given(cfg=configs(max_steps=3, max_batch=2, max_size=2))
@example(cfg=FULL_SMALL)
def test_layer_gradcheck(device, kind, cfg):
    cfg = dict(cfg, kind=kind)
    model, x, hx = build(cfg, device)
    xt = tensor(x, device, grad=True)
    h0 = hx_tensors(cfg["kind"], hx, device, grad=True)
    k = len(parts(h0)) if h0 is not None else 0

    def fn(x, *rest):
        h = None if k == 0 else rebuild(h0, list(rest[:k]))
        out, h_n = model(x, h, lengths=cfg["lengths"])
        return (out, *parts(h_n))

    assert tg.gradcheck(fn, (xt, *(parts(h0) if h0 is not None else []), *model.parameters()))


@pytest.mark.parametrize("kind", KINDS)
def test_composed_layer_equals_fused_layer(device, kind):
    cfg = dict(kind=kind, steps=5, batch=3, input_size=2, hidden_size=3, num_layers=2, bidirectional=True,
               batch_first=False, with_hx=True, lengths=[5, 2, 4], seed=3)
    results = []
    for fused in (True, False):
        model, x, hx = build(cfg, device, fused=fused)
        xt = tensor(x, device, grad=True)
        h0 = hx_tensors(kind, hx, device, grad=True)
        out, h_n = model(xt, h0, lengths=cfg["lengths"])
        w = np.random.default_rng(9)
        loss = (out * tensor(w.standard_normal(out.shape), device)).sum()
        for s in parts(h_n):
            loss = loss + (s * tensor(w.standard_normal(s.shape), device)).sum()
        loss.backward()
        results.append([out.numpy(), *[s.numpy() for s in parts(h_n)], xt.grad.numpy(),
                        *[h.grad.numpy() for h in parts(h0)], *[p.grad.numpy() for p in model.parameters()]])
    for a, b in zip(*results):
        assert_close(a, b)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_hundred_step_unroll_backprops(device, kind):
    rng = np.random.default_rng(4)
    T, B, I, H = 100, 2, 3, 4
    grads = []
    for fused in (True, False):
        model = make_layer(kind, I, H, fused=fused, device=device)
        random_params(model, np.random.default_rng(5), scale=0.4)
        x_np = np.random.default_rng(6).standard_normal((T, B, I))
        x = tensor(x_np, device, grad=True)
        out, _ = model(x)
        loss = out[-1].sum() + out.sum() * 0.01
        loss.backward()
        grads.append((x.grad.numpy(), [p.grad.numpy() for p in model.parameters()]))
    (gx, gp), (gx_c, gp_c) = grads
    assert np.all(np.isfinite(gx)) and all(np.all(np.isfinite(g)) for g in gp)
    assert np.any(gx[0] != 0)                       # the gradient reaches the first step
    assert_close(gx, gx_c, rtol=1e-8, atol=1e-12)
    for a, b in zip(gp, gp_c):
        assert_close(a, b, rtol=1e-8, atol=1e-12)
    # a directional derivative of the loss with respect to the first input step
    v = rng.standard_normal((B, I))

    def loss_at(delta):
        xs = x_np.copy()
        xs[0] += delta * v
        with tg.no_grad():
            out, _ = model(tensor(xs, device))
        return out[-1].sum().item() + out.sum().item() * 0.01

    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert abs(numeric - float((gx[0] * v).sum())) <= 1e-6 + 1e-4 * abs(numeric)


# ----------------------------------------------------------------- variable lengths
def _run_and_loss(model, x, hx, lengths, weights, device):
    """Forward; loss = sum(out * W_out) + sum_k sum(state_k * W_k); backward. Returns arrays and grads."""
    model.zero_grad()
    xt = tensor(x, device, grad=True)
    out, h_n = model(xt, hx, lengths=lengths)
    loss = (out * tensor(weights[0], device)).sum()
    for s, w in zip(parts(h_n), weights[1:]):
        loss = loss + (s * tensor(w, device)).sum()
    loss.backward()
    return out.numpy(), [s.numpy() for s in parts(h_n)], xt.grad.numpy(), {
        n: p.grad.numpy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind", KINDS)
@hyp()
@given(cfg=configs(max_steps=5, max_batch=4, need_lengths=True))
@example(cfg=FULL)
@example(cfg=dict(FULL, batch_first=False, with_hx=False, lengths=[2, 2, 2]))
def test_padded_batch_equals_each_sequence_alone(device, kind, cfg):
    cfg = dict(cfg, kind=kind)
    T, B, H = cfg["steps"], cfg["batch"], cfg["hidden_size"]
    lengths = cfg["lengths"]
    model, x, hx = build(cfg, device)
    bf = cfg["batch_first"]
    # garbage in the padding: it must not leak anywhere
    tx = x.swapaxes(0, 1) if bf else x
    for b, n in enumerate(lengths):
        tx[n:, b] = 1e3
    x = tx.swapaxes(0, 1) if bf else tx
    D = 2 if cfg["bidirectional"] else 1
    rng = np.random.default_rng(cfg["seed"] + 1)
    out_w = rng.standard_normal((T, B, D * H))
    state_w = [rng.standard_normal((cfg["num_layers"] * D, B, H)) for _ in range(n_state_parts(cfg["kind"]))]
    weights = [out_w.swapaxes(0, 1) if bf else out_w] + state_w
    out, states, gx, gp = _run_and_loss(model, x, hx_tensors(cfg["kind"], hx, device), lengths, weights, device)
    out_t = out.swapaxes(0, 1) if bf else out
    gx_t = gx.swapaxes(0, 1) if bf else gx
    summed = {n: np.zeros_like(g) for n, g in gp.items()}
    for b, n in enumerate(lengths):
        xb = tx[:n, b:b + 1]
        hb = None if hx is None else hx_tensors(cfg["kind"], [h[:, b:b + 1] for h in hx], device)
        wb = [out_w[:n, b:b + 1]] + [w[:, b:b + 1] for w in state_w]
        if bf:
            xb, wb[0] = xb.swapaxes(0, 1), wb[0].swapaxes(0, 1)
        o, s, g, p = _run_and_loss(model, xb, hb, None, wb, device)
        o = o.swapaxes(0, 1) if bf else o
        g = g.swapaxes(0, 1) if bf else g
        assert_close(out_t[:n, b], o[:, 0], msg=f"output of row {b}")
        assert np.all(out_t[n:, b] == 0), "padded outputs must be exactly zero"
        for k, (a, e) in enumerate(zip(states, s)):
            assert_close(a[:, b], e[:, 0], msg=f"state part {k} of row {b}")
        assert_close(gx_t[:n, b], g[:, 0], msg=f"input gradient of row {b}")
        assert np.all(gx_t[n:, b] == 0), "padded inputs must get exactly zero gradient"
        for name in summed:
            summed[name] += p[name]
    for name in summed:
        assert_close(gp[name], summed[name], rtol=1e-9, atol=1e-11, msg=name)


def test_lengths_reverse_direction_starts_at_each_rows_last_step(device):
    """The reverse direction of a row of length n at step 0 equals a backward pass over x[:n] alone."""
    rng = np.random.default_rng(7)
    model = make_layer("gru", 2, 3, bidirectional=True, device=device)
    random_params(model, rng)
    x = rng.standard_normal((5, 2, 2))
    out, h_n = model(tensor(x, device), lengths=[2, 5])
    cell = model.cells()[1]
    h = None
    for t in (1, 0):
        h = cell(tensor(x[t, :1], device), h)
    assert_close(out.numpy()[0, 0, 3:], h.numpy()[0])
    assert_close(h_n.numpy()[1, 0], h.numpy()[0])


def test_lengths_as_tensor_and_equal_full_lengths(device):
    rng = np.random.default_rng(8)
    model = make_layer("lstm", 2, 3, num_layers=2, bidirectional=True, device=device)
    random_params(model, rng)
    x = tensor(rng.standard_normal((4, 3, 2)), device)
    out, (h, c) = model(x)
    for lengths in ([4, 4, 4], np.array([4, 4, 4], dtype=np.int32), tg.tensor([4, 4, 4])):
        out2, (h2, c2) = model(x, lengths=lengths)
        assert_close(out2.numpy(), out.numpy())
        assert_close(h2.numpy(), h.numpy())
        assert_close(c2.numpy(), c.numpy())


@pytest.mark.parametrize("lengths, match", [
    ([0, 2], r"lengths must be in \[1, 3\].*\[0, 2\]"),
    ([4, 2], r"lengths must be in \[1, 3\].*\[2, 4\]"),
    ([-1, 3], r"lengths must be in \[1, 3\]"),
    ([3, 2, 1], r"lengths has shape \(3,\), expected \(2,\)"),
    ([[3], [2]], r"lengths has shape \(2, 1\), expected \(2,\)"),
    ([3], r"lengths has shape \(1,\), expected \(2,\)"),
])
def test_bad_lengths_raise_value_error(device, lengths, match):
    model = make_layer("gru", 2, 3, device=device)
    with pytest.raises(ValueError, match=match):
        model(tensor(np.zeros((3, 2, 2)), device), lengths=lengths)


@pytest.mark.parametrize("lengths", [[1.5, 2.0], np.array([3.0, 2.0]), [True, False]])
def test_non_integer_lengths_raise_type_error(device, lengths):
    model = make_layer("lstm", 2, 3, device=device)
    with pytest.raises(TypeError, match="lengths must be integers"):
        model(tensor(np.zeros((3, 2, 2)), device), lengths=lengths)
    with pytest.raises(TypeError, match="lengths must be integers"):
        model(tensor(np.zeros((3, 2, 2)), device), lengths=tg.tensor(np.asarray(lengths, dtype=np.float64)))


# ----------------------------------------------------------------- input and state errors
@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_raises_with_expected_and_actual(device, kind):
    name = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    model = make_layer(kind, 3, 4, device=device)
    with pytest.raises(ValueError, match=rf"{name}: input has 4 dims, expected 3 \(seq, batch, feature\)"):
        model(tensor(np.zeros((2, 2, 2, 3)), device))
    with pytest.raises(ValueError, match=rf"{name}: input has 1 dims, expected 3"):
        model(tensor(np.zeros(3), device))
    with pytest.raises(ValueError, match=rf"{name}: input has 5 features, expected input_size=3"):
        model(tensor(np.zeros((2, 2, 5)), device))
    with pytest.raises(ValueError, match=r"input has 5 features, expected input_size=3"):
        model(tensor(np.zeros((2, 5)), device))
    with pytest.raises(TypeError, match="Tensor"):
        model(np.zeros((2, 2, 3)))
    bf = make_layer(kind, 3, 4, batch_first=True, device=device)
    with pytest.raises(ValueError, match=r"expected 3 \(batch, seq, feature\)"):
        bf(tensor(np.zeros((2, 2, 2, 3)), device))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_initial_state_raises(device, kind):
    model = make_layer(kind, 3, 4, num_layers=2, bidirectional=True, device=device)
    x = tensor(np.zeros((5, 2, 3)), device)
    good = (4, 2, 4)
    bad_shapes = [(2, 2, 4), (4, 3, 4), (4, 2, 5), (4, 2), (2, 4, 4)]
    for shape in bad_shapes:
        hx = [tensor(np.zeros(shape), device)] + [tensor(np.zeros(good), device)] * (n_state_parts(kind) - 1)
        with pytest.raises(ValueError, match=re.escape(f"has shape {shape}, expected {good}")):
            model(x, tuple(hx) if kind == "lstm" else hx[0])
        if kind == "lstm":     # the second part is checked as well
            with pytest.raises(ValueError, match=re.escape(f"part 1 has shape {shape}, expected {good}")):
                model(x, (hx[1], hx[0]))
    if kind == "lstm":
        with pytest.raises(ValueError, match="1 parts.*2"):
            model(x, tensor(np.zeros(good), device))
        with pytest.raises(ValueError, match="3 parts.*2"):
            model(x, tuple(tensor(np.zeros(good), device) for _ in range(3)))
    else:
        with pytest.raises(ValueError, match="2 parts.*1"):
            model(x, (tensor(np.zeros(good), device), tensor(np.zeros(good), device)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        tg.nn.LSTM(2, 3, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        tg.nn.GRU(2, 3, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="nonlinearity"):
        tg.nn.RNN(2, 3, nonlinearity="gelu")
    with pytest.raises(TypeError, match="RecurrentCell"):
        tg.nn.Recurrent(lambda i, h: tg.nn.Linear(i, h), 2, 3)
    with pytest.warns(UserWarning, match="dropout"):
        tg.nn.LSTM(2, 3, num_layers=1, dropout=0.3)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unbatched_input(device, kind, batch_first):
    """(T, I) input with (L*D, H) states gives (T, D*H) and (L*D, H): the batched result without its batch axis."""
    rng = np.random.default_rng(10)
    model = make_layer(kind, 3, 2, num_layers=2, bidirectional=True, batch_first=batch_first, device=device)
    random_params(model, rng)
    x = rng.standard_normal((5, 3))
    hx = [rng.standard_normal((4, 2)) for _ in range(n_state_parts(kind))]
    out, h_n = model(tensor(x, device), hx_tensors(kind, hx, device))
    xb = x[None] if batch_first else x[:, None]
    out_b, h_b = model(tensor(xb, device), hx_tensors(kind, [h[:, None] for h in hx], device))
    assert out.shape == (5, 4)
    assert_close(out.numpy(), out_b.numpy()[0] if batch_first else out_b.numpy()[:, 0])
    for s, sb in zip(parts(h_n), parts(h_b)):
        assert s.shape == (4, 2)
        assert_close(s.numpy(), sb.numpy()[:, 0])


# ----------------------------------------------------------------- dropout between layers
def test_dropout_between_layers(device):
    rng = np.random.default_rng(11)
    model = make_layer("lstm", 3, 4, num_layers=3, dropout=0.5, device=device)
    plain = make_layer("lstm", 3, 4, num_layers=3, dropout=0.0, device=device)
    plain.load_state_dict(random_params(model, rng))
    x = tensor(rng.standard_normal((6, 2, 3)), device)
    model.train()
    tg.manual_seed(0)
    a, (ha, _) = model(x)
    tg.manual_seed(1)
    b, _ = model(x)
    tg.manual_seed(0)
    a2, (ha2, _) = model(x)
    assert not np.allclose(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), a2.numpy())       # a seed replays the same masks
    np.testing.assert_array_equal(ha.numpy(), ha2.numpy())
    ref, (h_ref, c_ref) = plain(x)
    assert not np.allclose(a.numpy(), ref.numpy())
    # the first layer is not dropped: its final state is that of the plain model
    assert_close(ha.numpy()[0], h_ref.numpy()[0])
    model.eval()
    assert all(not c.training for c in model.cells())
    e, (he, ce) = model(x)
    assert_close(e.numpy(), ref.numpy())
    assert_close(he.numpy(), h_ref.numpy())
    assert_close(ce.numpy(), c_ref.numpy())
    model.train()
    assert all(c.training for c in model.cells())


def test_dropout_one_zeroes_the_next_layers_input_not_the_output(device):
    rng = np.random.default_rng(12)
    model = make_layer("gru", 3, 4, num_layers=2, dropout=1.0, device=device)
    params = random_params(model, rng)
    top = make_layer("gru", 4, 4, device=device)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in params.items() if k.endswith("_l1")})
    x = tensor(rng.standard_normal((5, 2, 3)), device)
    out, h_n = model.train()(x)
    expected, h_top = top(tensor(np.zeros((5, 2, 4)), device))
    assert_close(out.numpy(), expected.numpy())
    assert np.all(out.numpy() != 0)
    assert_close(h_n.numpy()[1], h_top.numpy()[0])


def test_dropout_gradients_use_the_forward_mask(device):
    rng = np.random.default_rng(13)
    model = make_layer("rnn_tanh", 2, 3, num_layers=2, dropout=0.4, device=device)
    random_params(model, rng)
    x = tensor(rng.standard_normal((3, 2, 2)), device, grad=True)

    def fn(x, *params):
        tg.manual_seed(5)           # the same mask at every evaluation
        return model(x)[0]

    assert tg.gradcheck(fn, (x, *model.parameters()))


# ----------------------------------------------------------------- a cell written by the user
class MinimalGatedCell(tg.nn.RecurrentCell):
    """Minimal gated unit (Zhou et al. 2016), written from graph ops:
    f = sigmoid(x W_f^T + h U_f^T + b_f),  h' = (1 - f) h + f tanh(x W_h^T + (f h) U_h^T + b_h)."""

    seeds = itertools.count()

    def __init__(self, input_size, hidden_size):
        rng = np.random.default_rng(next(self.seeds))
        self.input_size, self.hidden_size = input_size, hidden_size

        def param(*shape):
            return tg.nn.Parameter(tg.tensor(0.6 * rng.standard_normal(shape), dtype=tg.float64))

        self.weight_x = param(2 * hidden_size, input_size)
        self.weight_f = param(hidden_size, hidden_size)
        self.weight_h = param(hidden_size, hidden_size)
        self.bias = param(2 * hidden_size)

    def project(self, x):
        flat = x.reshape(-1, self.input_size) @ self.weight_x.T + self.bias
        return flat.reshape(x.shape[:-1] + (2 * self.hidden_size,))

    def step(self, p, h):
        p_f, p_h = tg.split(p, self.hidden_size, axis=1)
        f = (p_f + h @ self.weight_f.T).sigmoid()
        return (1 - f) * h + f * (p_h + (f * h) @ self.weight_h.T).tanh()


def mgu_reference(params, x, h):
    """x (T, B, I), h (B, H) -> outputs (T, B, H) in NumPy."""
    H = h.shape[-1]
    outs = []
    for t in range(x.shape[0]):
        p = x[t] @ params["weight_x"].T + params["bias"]
        f = 1 / (1 + np.exp(-(p[:, :H] + h @ params["weight_f"].T)))
        h = (1 - f) * h + f * np.tanh(p[:, H:] + (f * h) @ params["weight_h"].T)
        outs.append(h)
    return np.stack(outs)


def test_user_cell_equals_its_equations(device):
    rng = np.random.default_rng(14)
    cell = MinimalGatedCell(3, 2)
    cell.to(device=device)
    params = cell.state_dict()
    x, h = rng.standard_normal((4, 2, 3)), rng.standard_normal((2, 2))
    out, final = tg.nn.unroll(cell, tensor(x, device), tensor(h, device))
    assert_close(out.numpy(), mgu_reference(params, x, h))
    assert_close(final.numpy(), mgu_reference(params, x, h)[-1])
    # and through Recurrent, reversed: the reverse direction runs over the flipped sequence
    model = tg.nn.Recurrent(MinimalGatedCell, 3, 2, bidirectional=True)
    model.to(device=device)
    out, h_n = model(tensor(x, device))
    fwd = {k[:-3]: v for k, v in model.state_dict().items() if k.endswith("_l0")}
    rev = {k[:-11]: v for k, v in model.state_dict().items() if k.endswith("_l0_reverse")}
    zeros = np.zeros((2, 2))
    assert_close(out.numpy()[..., :2], mgu_reference(fwd, x, zeros))
    assert_close(out.numpy()[..., 2:], mgu_reference(rev, x[::-1], zeros)[::-1])
    assert_close(h_n.numpy()[1], mgu_reference(rev, x[::-1], zeros)[-1])


def test_user_cell_parameter_names():
    model = tg.nn.Recurrent(MinimalGatedCell, 3, 2, num_layers=2, bidirectional=True)
    names = [n for n, _ in model.named_parameters()]
    expected = [f"{p}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
                for p in ("weight_x", "weight_f", "weight_h", "bias")]
    assert names == expected
    assert model.state_dict()["weight_x_l1"].shape == (4, 4)


@hyp(8)
@given(cfg=configs(max_steps=3, max_batch=2, max_size=2))
@example(cfg=FULL_SMALL)
def test_user_cell_runs_every_option_and_gradchecks(device, cfg):
    rng = np.random.default_rng(cfg["seed"])
    T, B, I, H, L = cfg["steps"], cfg["batch"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"]
    bf, lengths = cfg["batch_first"], cfg["lengths"]
    model = tg.nn.Recurrent(MinimalGatedCell, I, H, num_layers=L, bidirectional=cfg["bidirectional"],
                            batch_first=bf)
    model.to(device=device)
    D = 2 if cfg["bidirectional"] else 1
    x = tensor(rng.standard_normal((B, T, I) if bf else (T, B, I)), device, grad=True)
    h0 = tensor(rng.standard_normal((L * D, B, H)), device, grad=True) if cfg["with_hx"] else None
    out, h_n = model(x, h0, lengths=lengths)
    assert out.shape == ((B, T, D * H) if bf else (T, B, D * H))
    assert h_n.shape == (L * D, B, H)
    o = out.numpy().swapaxes(0, 1) if bf else out.numpy()
    last = np.asarray(lengths if lengths is not None else [T] * B) - 1
    assert_close(o[last, np.arange(B), :H], h_n.numpy()[(L - 1) * D])
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert np.all(o[n:, b] == 0)
    inputs = (x,) + ((h0,) if h0 is not None else ()) + tuple(model.parameters())
    assert tg.gradcheck(lambda x, *rest: model(x, rest[0] if h0 is not None else None, lengths=lengths), inputs)


def test_user_cell_padded_batch_equals_each_sequence_alone(device):
    rng = np.random.default_rng(15)
    model = tg.nn.Recurrent(MinimalGatedCell, 2, 3, num_layers=2, bidirectional=True)
    model.to(device=device)
    x = rng.standard_normal((5, 3, 2))
    lengths = [3, 5, 1]
    out, h_n = model(tensor(x, device), lengths=lengths)
    for b, n in enumerate(lengths):
        o, h = model(tensor(x[:n, b:b + 1], device))
        assert_close(out.numpy()[:n, b], o.numpy()[:, 0])
        assert np.all(out.numpy()[n:, b] == 0)
        assert_close(h_n.numpy()[:, b], h.numpy()[:, 0])


# ----------------------------------------------------------------- state dicts
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(device, kind, tmp_path):
    a = make_layer(kind, 3, 4, num_layers=2, bidirectional=True, device=device)
    random_params(a, np.random.default_rng(16))
    state = a.state_dict()
    for v in state.values():
        assert isinstance(v, np.ndarray) and v.dtype == np.float64
    b = make_layer(kind, 3, 4, num_layers=2, bidirectional=True, device=device)
    missing, unexpected = b.load_state_dict(state)
    assert missing == [] and unexpected == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    x = tensor(np.random.default_rng(17).standard_normal((4, 2, 3)), device)
    out_a, h_a = a(x)
    out_b, h_b = b(x)
    np.testing.assert_array_equal(out_a.numpy(), out_b.numpy())
    for s, t in zip(parts(h_a), parts(h_b)):
        np.testing.assert_array_equal(s.numpy(), t.numpy())
    # the dict holds copies
    state["weight_hh_l0"][...] = 0
    assert np.any(a.state_dict()["weight_hh_l0"] != 0)
    # through a file
    tg.save(a.state_dict(), tmp_path / "rnn.npz")
    c = make_layer(kind, 3, 4, num_layers=2, bidirectional=True, device=device)
    c.load_state_dict(tg.load(tmp_path / "rnn.npz"))
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v, a.state_dict()[k])
    # another configuration does not fit
    with pytest.raises(ValueError, match="missing keys"):
        make_layer(kind, 3, 4, num_layers=2, bidirectional=False).load_state_dict(
            make_layer(kind, 3, 4, num_layers=1, bidirectional=False).state_dict())
    with pytest.raises(ValueError, match="unexpected keys.*_reverse"):
        make_layer(kind, 3, 4, num_layers=2).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="shape mismatch.*weight_ih_l0"):
        make_layer(kind, 5, 4, num_layers=2, bidirectional=True).load_state_dict(a.state_dict())


def test_module_to_moves_the_cells_parameters(device):
    model = tg.nn.GRU(2, 3, num_layers=2)
    model.to(device=device, dtype=tg.float64)
    for cell in model.cells():
        for p in cell.parameters():
            assert p.dtype == tg.float64 and p.device == device
    out, h = model(tensor(np.ones((2, 1, 2)), device))
    assert out.dtype == tg.float64


# ----------------------------------------------------------------- PyTorch as an oracle
TORCH_CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=False, lengths=None, with_hx=False),
    dict(num_layers=2, bidirectional=True, batch_first=False, lengths=[5, 2, 4], with_hx=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, lengths=[1, 5, 3], with_hx=False),
    dict(num_layers=1, bidirectional=True, batch_first=True, lengths=None, with_hx=True),
    dict(num_layers=3, bidirectional=False, batch_first=False, lengths=[4, 4, 2], with_hx=True),
]


def _torch_layer(torch, kind, I, H, cfg, bias=True):
    kw = dict(num_layers=cfg["num_layers"], bias=bias, batch_first=cfg["batch_first"],
              bidirectional=cfg["bidirectional"], dtype=torch.float64)
    if kind.startswith("rnn"):
        return torch.nn.RNN(I, H, nonlinearity=kind[4:], **kw)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H, **kw)


@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=lambda c: "L{num_layers}-bd{bidirectional:d}-bf{batch_first:d}-"
                         "len{len}-hx{with_hx:d}".format(len=int(c["lengths"] is not None), **c))
@pytest.mark.parametrize("kind", KINDS)
def test_layers_equal_torch(device, kind, cfg):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(1)
    I, H, T, B = 3, 4, 5, 3
    D = 2 if cfg["bidirectional"] else 1
    ref = _torch_layer(torch, kind, I, H, cfg)
    model = make_layer(kind, I, H, cfg["num_layers"], cfg["bidirectional"], cfg["batch_first"], device=device)
    torch_state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    assert list(torch_state) == list(model.state_dict())
    model.load_state_dict(torch_state)

    rng = np.random.default_rng(18)
    bf = cfg["batch_first"]
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))
    hx = [rng.standard_normal((cfg["num_layers"] * D, B, H)) for _ in range(n_state_parts(kind))] \
        if cfg["with_hx"] else None
    w_out = rng.standard_normal((B, T, D * H) if bf else (T, B, D * H))
    w_state = [rng.standard_normal((cfg["num_layers"] * D, B, H)) for _ in range(n_state_parts(kind))]

    # ours
    xt = tensor(x, device, grad=True)
    h0 = hx_tensors(kind, hx, device, grad=True)
    out, h_n = model(xt, h0, lengths=cfg["lengths"])
    loss = (out * tensor(w_out, device)).sum()
    for s, w in zip(parts(h_n), w_state):
        loss = loss + (s * tensor(w, device)).sum()
    loss.backward()

    # PyTorch
    tx = torch.tensor(x, requires_grad=True)
    th = None if hx is None else [torch.tensor(h, requires_grad=True) for h in hx]
    th_arg = None if th is None else (tuple(th) if kind == "lstm" else th[0])
    if cfg["lengths"] is None:
        t_out, t_hn = ref(tx, th_arg)
    else:
        packed = pack_padded_sequence(tx, torch.tensor(cfg["lengths"]), batch_first=bf, enforce_sorted=False)
        t_out, t_hn = ref(packed, th_arg)
        t_out, _ = pad_packed_sequence(t_out, batch_first=bf, total_length=T)
    t_states = list(t_hn) if kind == "lstm" else [t_hn]
    t_loss = (t_out * torch.tensor(w_out)).sum() + sum((s * torch.tensor(w)).sum() for s, w in zip(t_states, w_state))
    t_loss.backward()

    assert_close(out.numpy(), t_out.detach().numpy(), msg="output")
    if cfg["lengths"] is not None:
        o = out.numpy().swapaxes(0, 1) if bf else out.numpy()
        for b, n in enumerate(cfg["lengths"]):
            assert np.all(o[n:, b] == 0)
    for k, (s, t) in enumerate(zip(parts(h_n), t_states)):
        assert_close(s.numpy(), t.detach().numpy(), msg=f"state part {k}")
    assert_close(xt.grad.numpy(), tx.grad.numpy(), msg="input gradient")
    if th is not None:
        for k, (h, t) in enumerate(zip(parts(h0), th)):
            assert_close(h.grad.numpy(), t.grad.numpy(), msg=f"initial state gradient {k}")
    grads = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        assert_close(grads[name].grad.numpy(), p.grad.numpy(), rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_layers_without_bias_equal_torch(device, kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    cfg = dict(num_layers=2, bidirectional=True, batch_first=False)
    ref = _torch_layer(torch, kind, 2, 3, cfg, bias=False)
    model = make_layer(kind, 2, 3, 2, True, bias=False, device=device)
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(19).standard_normal((4, 2, 2))
    out, _ = model(tensor(x, device))
    t_out, _ = ref(torch.tensor(x))
    assert_close(out.numpy(), t_out.detach().numpy())


def test_load_state_dict_takes_torch_tensors(device):
    torch = pytest.importorskip("torch")
    ref = torch.nn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    model = make_layer("lstm", 2, 3, 2, True, device=device)
    model.load_state_dict(ref.state_dict())
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())
