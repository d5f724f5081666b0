"""Output-fed networks: teacher forcing (nn.teacher_forced_unroll, nn.Jordan) and the
back-projection cell (nn.ElmanJordanCell).

Teacher-forced, free-running and mixed runs are one whole-sequence node each; they are
held to the plain Python loop of the cell's own calls (values and every gradient), to
the docstring equations written out in NumPy here, and to finite differences in float64.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.teacher_forcing import teacher_mask
from tinygrad_rnn.study import bptt_gradients, jvp, rtrl_gradients
from helpers import hyp, parts, scan_nodes

F64 = tg.float64


# ----------------------------------------------------------------- references in NumPy
def emit(params, h, act):
    y = h @ params["weight_hy"].T + params["bias_hy"]
    return np.tanh(y) if act == "tanh" else y


def numpy_step(kind, params, x, state, act):
    """One step of the docstring equations; state is y (jordan) or (h, y) (elman_jordan)."""
    if kind == "jordan":
        h = np.tanh(x @ params["weight_ih"].T + params["bias_ih"] + state @ params["weight_yh"].T)
        return emit(params, h, act)
    h, y = state
    h = np.tanh(x @ params["weight_ih"].T + params["bias_ih"] + h @ params["weight_hh"].T + y @ params["weight_yh"].T)
    return h, emit(params, h, act)


def numpy_teacher_forced(kind, params, x, targets, state, mask, act):
    """The loop of nn/teacher_forcing.py's docstring: feed d_{t-1} where mask[t], else y_{t-1}."""
    truth_before = state if kind == "jordan" else state[1]
    outs = []
    for t in range(x.shape[0]):
        own = state if kind == "jordan" else state[1]
        truth = truth_before if t == 0 else targets[t - 1]
        fed = np.where(mask[t][:, None], truth, own)
        state = numpy_step(kind, params, x[t], fed if kind == "jordan" else (state[0], fed), act)
        outs.append(state if kind == "jordan" else state[1])
    return np.stack(outs), state


# ----------------------------------------------------------------- helpers
def make_cell(kind, input_size, hidden_size, output_size, act="tanh", bias=True, device="cpu"):
    cls = nn.JordanCell if kind == "jordan" else nn.ElmanJordanCell
    return cls(input_size, hidden_size, output_size, bias, act, device=device, dtype=F64)


def load_random(module, rng, scale=0.7):
    state = {name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()}
    module.load_state_dict(state)
    return state


def rebuild(like, items):
    return tuple(items) if isinstance(like, tuple) else items[0]


def random_state(kind, batch, hidden, out, rng):
    y = rng.standard_normal((batch, out))
    return y if kind == "jordan" else (rng.standard_normal((batch, hidden)), y)


def tensors(state, device, grad=True):
    ts = [tg.tensor(s, dtype=F64, device=device, requires_grad=grad) for s in parts(state)]
    return tuple(ts) if isinstance(state, tuple) else ts[0]


def mask_for(mode, steps, batch, rng):
    if mode == "teacher":
        return np.ones((steps, batch), bool)
    if mode == "free":
        return np.zeros((steps, batch), bool)
    return rng.random((steps, batch)) < 0.5


def step_loop(cell, x, targets, state, mask):
    """The teacher-forcing loop on the cell's own calls: one graph node per op and step."""
    truth_before, outs = cell.fed_back(state), []
    for t in range(x.shape[0]):
        truth = truth_before if t == 0 else targets[t - 1]
        use = tg.tensor(mask[t][:, None], device=x.device)
        fed = tg.where(use, truth, cell.fed_back(state))
        state = cell(x[t], cell.with_fed_back(state, fed))
        outs.append(cell.output(state))
    return tg.stack(outs, axis=0), state


def gradients(out, final, inputs, rng):
    """d/d inputs of sum(out * w) + sum_k sum(final_k * v_k), for fixed random w, v_k."""
    loss = (out * tg.tensor(rng.standard_normal(out.shape), dtype=F64, device=out.device)).sum()
    for f in parts(final):
        loss = loss + (f * tg.tensor(rng.standard_normal(f.shape), dtype=F64, device=f.device)).sum()
    return [None if g is None else g.numpy() for g in tg.grad(loss, inputs, allow_unused=True)]


def close(got, expected, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=rtol, atol=atol)


# ----------------------------------------------------------------- teacher forcing
@hyp(20)
@given(kind=st.sampled_from(["jordan", "elman_jordan"]), mode=st.sampled_from(["teacher", "free", "mixed"]),
       steps=st.integers(1, 6), batch=st.integers(1, 3), input_size=st.integers(1, 3),
       hidden_size=st.integers(1, 4), output_size=st.integers(1, 3), act=st.sampled_from(["tanh", "identity"]),
       seed=st.integers(0, 2**16))
def test_teacher_forcing_is_one_node_equal_to_the_step_loop(device, kind, mode, steps, batch, input_size,
                                                             hidden_size, output_size, act, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, input_size, hidden_size, output_size, act, device=device)
    params = load_random(cell, rng)
    x_np = rng.standard_normal((steps, batch, input_size))
    d_np = rng.standard_normal((steps, batch, output_size))
    s_np = random_state(kind, batch, hidden_size, output_size, rng)
    mask = mask_for(mode, steps, batch, rng)
    x, d = (tg.tensor(a, dtype=F64, device=device, requires_grad=True) for a in (x_np, d_np))
    state = tensors(s_np, device)
    inputs = [x, d, *parts(state), *cell.parameters()]

    out, final = nn.teacher_forced_unroll(cell, x, d, mask, state)
    assert len(scan_nodes(out, *parts(final))) == 1         # the whole sequence is one node
    ref_out, ref_final = numpy_teacher_forced(kind, params, x_np, d_np, s_np, mask, act)
    close(out.numpy(), ref_out)
    for got, expected in zip(parts(final), parts(ref_final)):
        close(got.numpy(), expected)

    loop_out, loop_final = step_loop(cell, x, d, state, mask)
    close(loop_out.numpy(), out.numpy())
    node_grads = gradients(out, final, inputs, np.random.default_rng(seed + 1))
    loop_grads = gradients(loop_out, loop_final, inputs, np.random.default_rng(seed + 1))
    for got, expected in zip(node_grads, loop_grads):
        if got is None or expected is None:       # a path no gradient takes (e.g. d when nothing is fed)
            assert np.all((got if got is not None else expected) == 0) or got is expected
            continue
        close(got, expected)


@pytest.mark.parametrize("kind", ["jordan", "elman_jordan"])
@pytest.mark.parametrize("mode", ["teacher", "mixed"])
def test_teacher_forcing_gradcheck(device, kind, mode):
    rng = np.random.default_rng(3)
    cell = make_cell(kind, 2, 3, 2, device=device)
    load_random(cell, rng)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=F64, device=device, requires_grad=True)
    d = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=F64, device=device, requires_grad=True)
    state = tensors(random_state(kind, 2, 3, 2, rng), device)
    mask = mask_for(mode, 4, 2, rng)
    mask[1:, 0] = [True, False, True]               # both choices in the mixed case

    def fn(x, d, *rest):
        out, final = nn.teacher_forced_unroll(cell, x, d, mask, rebuild(state, list(rest[:len(parts(state))])),
                                              lengths=[4, 3])
        return (out, *parts(final))

    assert tg.gradcheck(fn, (x, d, *parts(state), *cell.parameters()))


def test_teacher_forcing_forward_mode_equals_reverse_mode():
    """study.jvp through the teacher-forced node: J v, contracted with w, equals w^T J . v from backward."""
    rng = np.random.default_rng(4)
    cell = make_cell("elman_jordan", 2, 3, 2)
    load_random(cell, rng)
    x = tg.tensor(rng.standard_normal((5, 2, 2)), dtype=F64)
    d = tg.tensor(rng.standard_normal((5, 2, 2)), dtype=F64)
    mask = mask_for("mixed", 5, 2, rng)
    params = cell.parameters()
    directions = [rng.standard_normal((1,) + p.shape) for p in params]
    w = rng.standard_normal((5, 2, 2))
    out, tangent = jvp(lambda *ps: nn.teacher_forced_unroll(cell, x, d, mask)[0], params, directions)
    assert len(scan_nodes(nn.teacher_forced_unroll(cell, x, d, mask)[0])) == 1
    grads = tg.grad((nn.teacher_forced_unroll(cell, x, d, mask)[0] * tg.tensor(w, dtype=F64)).sum(), params)
    close((tangent.numpy()[0] * w).sum(), sum((g.numpy() * v[0]).sum() for g, v in zip(grads, directions)),
          rtol=1e-9)


def test_teacher_forced_jordan_reads_no_state():
    """Teacher-forced, a Jordan cell's outputs do not depend on its own earlier outputs: the fed-back
    value is the target, so the gradient reaching the initial output is what step 0 sends it."""
    rng = np.random.default_rng(5)
    cell = make_cell("jordan", 1, 4, 1, act="identity")
    load_random(cell, rng)
    x = tg.tensor(rng.standard_normal((6, 1, 1)), dtype=F64)
    d = tg.tensor(rng.standard_normal((6, 1, 1)), dtype=F64, requires_grad=True)
    out, _ = nn.teacher_forced_unroll(cell, x, d)
    g, = tg.grad(out[3].sum(), [d])
    nonzero = np.nonzero(g.numpy().ravel())[0]
    assert list(nonzero) == [2]                 # y_3 reads d_2 only


def test_jordan_layer_modes_and_layouts():
    rng = np.random.default_rng(6)
    net = nn.Jordan(2, 4, output_size=3, hidden_feedback=True, dtype=F64)
    state = load_random(net, rng)
    ref = nn.Recurrent(lambda i, h: nn.ElmanJordanCell(i, h, 3, dtype=F64), 2, 4)
    ref.load_state_dict(state)                           # the same parameter names as nn.Recurrent
    x = tg.tensor(rng.standard_normal((5, 3, 2)), dtype=F64)
    d = tg.tensor(rng.standard_normal((5, 3, 3)), dtype=F64)
    free, (h_n, y_n) = net(x)
    close(free.numpy(), ref(x)[0].numpy())
    assert h_n.shape == (1, 3, 4) and y_n.shape == (1, 3, 3)
    close(net(x, targets=d, teacher_forcing=0.0)[0].numpy(), free.numpy())
    forced, _ = net(x, targets=d)
    close(forced.numpy(), net(x, targets=d, teacher_forcing=np.ones((5, 3), bool))[0].numpy())
    assert not np.allclose(forced.numpy(), free.numpy())
    # batch_first: everything (B, T, ...), the mask included; unbatched: (T, ...)
    mask = rng.random((5, 3)) < 0.5
    mixed, _ = net(x, targets=d, teacher_forcing=mask)
    bf = nn.Jordan(2, 4, output_size=3, hidden_feedback=True, batch_first=True, dtype=F64)
    bf.load_state_dict(state)
    close(bf(x.swapaxes(0, 1), targets=d.swapaxes(0, 1), teacher_forcing=mask.T)[0].numpy(),
          mixed.numpy().swapaxes(0, 1))
    one, (h1, y1) = net(x[:, 1], targets=d[:, 1], teacher_forcing=mask[:, 1])
    close(one.numpy(), mixed.numpy()[:, 1])
    assert h1.shape == (1, 4) and y1.shape == (1, 3)
    # hx (1, B, .) parts start the run, and the fed output at t = 0 is y_0
    hx = (tg.tensor(rng.standard_normal((1, 3, 4)), dtype=F64), tg.tensor(rng.standard_normal((1, 3, 3)), dtype=F64))
    started, _ = net(x, hx, targets=d)
    expected, _ = numpy_teacher_forced("elman_jordan", state_of(net), x.numpy(), d.numpy(),
                                       (hx[0].numpy()[0], hx[1].numpy()[0]), np.ones((5, 3), bool), "tanh")
    close(started.numpy(), expected)


def state_of(net):
    return {name[:-3]: p.numpy() for name, p in net.named_parameters()}


def test_jordan_layer_draws_scheduled_sampling_masks():
    rng = np.random.default_rng(7)
    net = nn.Jordan(1, 3, output_size=2, dtype=F64)
    load_random(net, rng)
    x = tg.tensor(rng.standard_normal((8, 4, 1)), dtype=F64)
    d = tg.tensor(rng.standard_normal((8, 4, 2)), dtype=F64)
    tg.manual_seed(11)
    drawn, _ = net(x, targets=d, teacher_forcing=0.4)
    tg.manual_seed(11)
    mask = teacher_mask(0.4, 8, 4)
    close(drawn.numpy(), net(x, targets=d, teacher_forcing=mask)[0].numpy())
    tg.manual_seed(12)
    big = teacher_mask(0.3, 200, 50)
    assert abs(big.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / big.size)


def test_teacher_forcing_with_lengths_equals_each_row_alone():
    rng = np.random.default_rng(8)
    cell = make_cell("elman_jordan", 2, 3, 2)
    load_random(cell, rng)
    x = rng.standard_normal((5, 3, 2))
    d = rng.standard_normal((5, 3, 2))
    mask = rng.random((5, 3)) < 0.5
    lengths = [5, 2, 4]
    out, (h, y) = nn.teacher_forced_unroll(cell, tg.tensor(x, dtype=F64), tg.tensor(d, dtype=F64), mask,
                                           lengths=lengths)
    for b, n in enumerate(lengths):
        alone, (hb, yb) = nn.teacher_forced_unroll(cell, tg.tensor(x[:n, b:b + 1], dtype=F64),
                                                   tg.tensor(d[:n, b:b + 1], dtype=F64), mask[:n, b:b + 1])
        close(out.numpy()[:n, b], alone.numpy()[:, 0])
        assert np.all(out.numpy()[n:, b] == 0)
        close(y.numpy()[b], yb.numpy()[0])
        close(h.numpy()[b], hb.numpy()[0])


def test_teacher_forcing_bad_inputs():
    cell = make_cell("jordan", 2, 3, 2)
    x, d = tg.zeros(4, 2, 2, dtype=F64), tg.zeros(4, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"targets has shape \(4, 2, 3\), expected \(4, 2, 2\)"):
        nn.teacher_forced_unroll(cell, x, tg.zeros(4, 2, 3, dtype=F64))
    with pytest.raises(TypeError, match="targets"):
        nn.teacher_forced_unroll(cell, x, d.numpy())
    with pytest.raises(TypeError, match="float32.*expected float64"):
        nn.teacher_forced_unroll(cell, x, tg.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\], got 1.5"):
        nn.teacher_forced_unroll(cell, x, d, 1.5)
    with pytest.raises(TypeError, match="got the bool True"):
        nn.teacher_forced_unroll(cell, x, d, True)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\), expected \(4, 2\)"):
        nn.teacher_forced_unroll(cell, x, d, np.ones((2, 4), bool))
    with pytest.raises(TypeError, match="must be bool"):
        nn.teacher_forced_unroll(cell, x, d, np.ones((4, 2)))
    with pytest.raises(TypeError, match="output-fed cell"):
        nn.teacher_forced_unroll(nn.RNNCell(2, 3), x, d)
    net = nn.Jordan(2, 3, output_size=2, dtype=F64)
    with pytest.raises(ValueError, match="needs targets"):
        net(x, teacher_forcing=0.5)
    with pytest.raises(ValueError, match=r"hx part 0 has shape \(2, 2\), expected \(1, batch, size\)"):
        net(x, tg.zeros(2, 2, dtype=F64), targets=d)
    with pytest.raises(ValueError, match="hx must be a tuple"):
        nn.Jordan(2, 3, hidden_feedback=True, dtype=F64)(x, tg.zeros(1, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="input has shape"):
        net(tg.zeros(4, 2, 5, dtype=F64))


# ----------------------------------------------------------------- back projections
@hyp(15)
@given(steps=st.integers(1, 5), batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden_size=st.integers(1, 4),
       output_size=st.integers(1, 3), act=st.sampled_from(["tanh", "identity"]), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_elman_jordan_cell_equals_its_equations(device, steps, batch, input_size, hidden_size, output_size, act,
                                                bias, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell("elman_jordan", input_size, hidden_size, output_size, act, bias, device)
    params = load_random(cell, rng)
    if not bias:
        params["bias_ih"], params["bias_hy"] = np.zeros(hidden_size), np.zeros(output_size)
    x = rng.standard_normal((steps, batch, input_size))
    s0 = random_state("elman_jordan", batch, hidden_size, output_size, rng)
    out, (h, y) = nn.unroll(cell, tg.tensor(x, dtype=F64, device=device), tensors(s0, device, grad=False))
    state, expected = s0, []
    for t in range(steps):
        state = numpy_step("elman_jordan", params, x[t], state, act)
        expected.append(state[1])
    assert out.shape == (steps, batch, output_size)
    close(out.numpy(), np.stack(expected))
    close(h.numpy(), state[0])
    close(y.numpy(), state[1])


def test_elman_jordan_reduces_to_elman_and_to_jordan():
    """W_yh = 0: an Elman RNNCell read out linearly; W_hh = 0: a JordanCell."""
    rng = np.random.default_rng(9)
    cell = make_cell("elman_jordan", 2, 4, 3, act="identity")
    params = load_random(cell, rng)
    x = tg.tensor(rng.standard_normal((6, 2, 2)), dtype=F64)
    cell.weight_yh.data[...] = 0
    rnn = nn.RNNCell(2, 4, dtype=F64)
    rnn.load_state_dict({"weight_ih": params["weight_ih"], "weight_hh": params["weight_hh"],
                         "bias_ih": params["bias_ih"], "bias_hh": np.zeros(4)})
    hs, _ = nn.unroll(rnn, x)
    out, _ = nn.unroll(cell, x)
    close(out.numpy(), hs.numpy() @ params["weight_hy"].T + params["bias_hy"])
    cell.weight_yh.data[...] = params["weight_yh"]
    cell.weight_hh.data[...] = 0
    jordan = make_cell("jordan", 2, 4, 3, act="identity")
    jordan.load_state_dict({k: v for k, v in params.items() if k != "weight_hh"})
    close(nn.unroll(cell, x)[0].numpy(), nn.unroll(jordan, x)[0].numpy())


def test_elman_jordan_gradcheck_through_recurrent(device):
    rng = np.random.default_rng(10)
    model = nn.Recurrent(lambda i, h: nn.ElmanJordanCell(i, h, 2, device=device, dtype=F64), 2, 3, num_layers=2,
                         bidirectional=True)
    load_random(model, rng)
    x = tg.tensor(rng.standard_normal((4, 2, 2)), dtype=F64, device=device, requires_grad=True)

    def fn(x, *params):
        out, (h_n, y_n) = model(x, lengths=[4, 3])
        return out, h_n, y_n

    out, (h_n, y_n) = model(x, lengths=[4, 3])
    assert out.shape == (4, 2, 4) and h_n.shape == (4, 2, 3) and y_n.shape == (4, 2, 2)
    assert tg.gradcheck(fn, (x, *model.parameters()))


def test_rtrl_equals_bptt_for_the_elman_jordan_cell():
    rng = np.random.default_rng(11)
    cell = make_cell("elman_jordan", 2, 3, 2, act="identity")
    load_random(cell, rng, 0.5)
    x = tg.tensor(rng.standard_normal((6, 2, 2)), dtype=F64)

    def step_loss(t, y):
        return (y * y).sum() * (t + 1)

    loss_r, grads_r = rtrl_gradients(cell, x, step_loss=step_loss)
    loss_b, grads_b = bptt_gradients(cell, x, step_loss=step_loss)
    close(loss_r, loss_b)
    for name in grads_b:
        close(grads_r[name].numpy(), grads_b[name].numpy(), rtol=1e-9, atol=1e-11)


def test_output_fed_constructor_errors():
    with pytest.raises(ValueError, match="output_nonlinearity"):
        nn.ElmanJordanCell(2, 3, output_nonlinearity="relu")
    with pytest.raises(ValueError, match="hidden_size must be at least 1"):
        nn.ElmanJordanCell(2, 0)
    with pytest.raises(TypeError, match="output_size must be an int"):
        nn.JordanCell(2, 3, output_size=2.5)
