"""Backpropagation through time: truncated BPTT(k1, k2) and checkpointed unrolls.

``truncated_bptt`` is held to brute-force references written here (full BPTT when
k1 >= T; per chunk, a rerun from the detached state k2 steps back otherwise),
chunk by chunk. ``checkpointed_unroll`` and ``tg.checkpoint`` must give exactly
the values and gradients of the plain unrolled graph.
"""
import gc
import math
import weakref

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.nn.bptt import checkpointed_unroll, truncated_bptt
from helpers import hyp

KINDS = ["lstm", "gru", "rnn_tanh"]


# ----------------------------------------------------------------- helpers
def tensor(a, device, grad=False):
    return tg.tensor(np.asarray(a, dtype=np.float64), dtype=tg.float64, device=device, requires_grad=grad)


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def assert_close(got, expected, rtol=1e-9, atol=1e-11, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


def random_params(module, rng, scale=0.6):
    state = {name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()}
    module.load_state_dict(state)
    return state


class Net(tg.nn.Module):
    """A unidirectional recurrent layer and a linear head: model(x, state) -> (y, state)."""

    def __init__(self, kind, input_size, hidden_size, num_layers, device):
        kw = dict(num_layers=num_layers, device=device, dtype=tg.float64)
        if kind.startswith("rnn"):
            self.rnn = tg.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
        else:
            self.rnn = {"lstm": tg.nn.LSTM, "gru": tg.nn.GRU}[kind](input_size, hidden_size, **kw)
        self.head = tg.nn.Linear(hidden_size, 2, device=device, dtype=tg.float64)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)
        return self.head(out), state


def loss_fn(outputs, targets):
    d = outputs - targets
    return (d * d).sum() * 0.5


def grads_of(model):
    return {n: (np.zeros(p.shape) if p.grad is None else p.grad.numpy().copy()) for n, p in model.named_parameters()}


def setup(kind, steps, batch, num_layers, with_state, seed, device):
    rng = np.random.default_rng(seed)
    model = Net(kind, 2, 3, num_layers, device)
    random_params(model, rng)
    x = tensor(rng.standard_normal((steps, batch, 2)), device)
    y = tensor(rng.standard_normal((steps, batch, 2)), device)
    state = None
    if with_state:
        shape = (num_layers, batch, 3)
        state = tuple(tensor(rng.standard_normal(shape), device) for _ in range(2)) if kind == "lstm" else \
            tensor(rng.standard_normal(shape), device)
    return model, x, y, state


def chunk_ends(steps, k1):
    return [min(t + k1, steps) for t in range(0, steps, k1)]


def full_bptt(model, x, y, state):
    model.zero_grad()
    out, final = model(x, state)
    loss = loss_fn(out, y)
    loss.backward()
    return loss.item(), grads_of(model), final


def reference_chunked(model, x, y, k, state):
    """BPTT(k, k): each chunk from the detached carried state, its own loss only."""
    results = []
    for t0 in range(0, x.shape[0], k):
        model.zero_grad()
        out, state = model(x[t0:t0 + k], detach(state))
        loss = loss_fn(out, y[t0:t0 + k])
        loss.backward()
        results.append((loss.item(), grads_of(model)))
    return results


def reference_windowed(model, x, y, k1, k2, state):
    """BPTT(k1, k2) by brute force: for the chunk ending at t1, rerun steps [t1 - k2, t1) from the
    detached state at t1 - k2 (taken from a full forward with the same weights) and backpropagate
    the loss on that chunk's outputs only."""
    steps = x.shape[0]
    states = [state]
    with tg.no_grad():
        s = state
        for t in range(steps):
            _, s = model(x[t:t + 1], s)
            states.append(s)
    results, start_of_chunk = [], 0
    for t1 in chunk_ends(steps, k1):
        n = t1 - start_of_chunk
        t0 = max(0, t1 - k2)
        model.zero_grad()
        out, _ = model(x[t0:t1], detach(states[t0]))
        loss = loss_fn(out[out.shape[0] - n:], y[t1 - n:t1])
        loss.backward()
        results.append((loss.item(), grads_of(model)))
        start_of_chunk = t1
    return results, states[-1]


def run_truncated(model, x, y, k1, k2, state):
    """truncated_bptt with an on_chunk that records each chunk's loss and gradients, then zeroes them."""
    calls = []

    def on_chunk(loss):
        assert isinstance(loss, tg.Tensor) and loss.shape == ()
        calls.append((loss.item(), grads_of(model)))
        model.zero_grad()

    model.zero_grad()
    losses, final = truncated_bptt(model, x, y, loss_fn, k1, k2, state=state, on_chunk=on_chunk)
    return losses, calls, final


def assert_grads_equal(got, expected, msg=""):
    assert got.keys() == expected.keys()
    for name in got:
        assert_close(got[name], expected[name], msg=f"{msg} {name}")


# ----------------------------------------------------------------- truncated BPTT
@pytest.mark.parametrize("k2_extra", [0, 1, 5], ids=["k2=k1", "k2=k1+1", "k2=k1+5"])
@pytest.mark.parametrize("kind", KINDS)
def test_truncated_with_k1_at_least_T_is_full_bptt(device, kind, k2_extra):
    for steps, k1 in ((5, 5), (4, 7)):
        model, x, y, state = setup(kind, steps, 2, 2, True, 1, device)
        full_loss, full_grads, full_final = full_bptt(model, x, y, state)
        model.zero_grad()
        losses, final = truncated_bptt(model, x, y, loss_fn, k1, k1 + k2_extra, state=state)
        assert len(losses) == 1
        assert losses[0] == pytest.approx(full_loss, rel=1e-12)
        assert_grads_equal(grads_of(model), full_grads)
        for a, b in zip(parts(final), parts(full_final)):
            assert_close(a.numpy(), b.numpy())


def test_truncated_with_k1_at_least_T_is_full_bptt_for_a_clockwork_model(device):
    """Cells whose step depends on the time index (Clockwork) must see the same clock in every mode."""
    rng = np.random.default_rng(3)
    model = tg.nn.Recurrent(lambda i, h: tg.nn.ClockworkRNNCell(i, h, periods=(1, 2, 4), dtype=tg.float64), 2, 3)
    model.to(device=device)
    random_params(model, rng)
    x = tensor(rng.standard_normal((6, 2, 2)), device)
    y = tensor(rng.standard_normal((6, 2, 3)), device)
    full_loss, full_grads, _ = full_bptt(model, x, y, None)
    for k2 in (6, 7):
        model.zero_grad()
        losses, _ = truncated_bptt(model, x, y, loss_fn, 6, k2)
        assert losses == [pytest.approx(full_loss, rel=1e-12)], f"k2={k2}"
        assert_grads_equal(grads_of(model), full_grads, msg=f"k2={k2}")


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_with_k1_at_least_T_from_no_state(device, kind):
    model, x, y, _ = setup(kind, 4, 3, 1, False, 2, device)
    full_loss, full_grads, _ = full_bptt(model, x, y, None)
    for k2 in (4, 6):
        model.zero_grad()
        losses, _ = truncated_bptt(model, x, y, loss_fn, 4, k2)
        assert losses == [pytest.approx(full_loss, rel=1e-12)]
        assert_grads_equal(grads_of(model), full_grads, msg=f"k2={k2}")


@hyp()
@given(kind=st.sampled_from(KINDS), steps=st.integers(2, 8), batch=st.integers(1, 2), num_layers=st.integers(1, 2),
       with_state=st.booleans(), data=st.data())
def test_truncated_k1_equals_k2_is_chunked_bptt(device, kind, steps, batch, num_layers, with_state, data):
    k = data.draw(st.integers(1, steps - 1), label="k")
    model, x, y, state = setup(kind, steps, batch, num_layers, with_state, steps * 13 + k, device)
    expected = reference_chunked(model, x, y, k, state)
    losses, calls, final = run_truncated(model, x, y, k, k, state)
    assert len(calls) == len(losses) == len(expected) == math.ceil(steps / k)
    for i, ((loss, grads), (ref_loss, ref_grads)) in enumerate(zip(calls, expected)):
        assert loss == pytest.approx(ref_loss, rel=1e-12) and losses[i] == loss
        assert_grads_equal(grads, ref_grads, msg=f"chunk {i}")
    with tg.no_grad():
        _, full_final = model(x, state)
    for a, b in zip(parts(final), parts(full_final)):
        assert_close(a.numpy(), b.numpy())


@hyp()
@given(kind=st.sampled_from(KINDS), steps=st.integers(2, 9), batch=st.integers(1, 2), num_layers=st.integers(1, 2),
       with_state=st.booleans(), data=st.data())
@example(kind="lstm", steps=9, batch=2, num_layers=2, with_state=True, data=None)
def test_truncated_k1_below_k2_equals_brute_force(device, kind, steps, batch, num_layers, with_state, data):
    if data is None:
        k1, k2 = 2, 5
    else:
        k1 = data.draw(st.integers(1, steps - 1), label="k1")
        k2 = data.draw(st.integers(k1 + 1, steps + 2), label="k2")
    model, x, y, state = setup(kind, steps, batch, num_layers, with_state, steps * 17 + k1 * 3 + k2, device)
    expected, ref_final = reference_windowed(model, x, y, k1, k2, state)
    losses, calls, final = run_truncated(model, x, y, k1, k2, state)
    assert len(calls) == len(losses) == len(expected) == math.ceil(steps / k1)
    for i, ((loss, grads), (ref_loss, ref_grads)) in enumerate(zip(calls, expected)):
        assert loss == pytest.approx(ref_loss, rel=1e-12) and losses[i] == loss
        assert_grads_equal(grads, ref_grads, msg=f"chunk {i} (k1={k1}, k2={k2})")
    for a, b in zip(parts(final), parts(ref_final)):
        assert_close(a.numpy(), b.numpy())


@pytest.mark.parametrize("k1, k2", [(1, 1), (2, 2), (3, 3), (1, 3), (2, 3), (2, 4), (3, 7)])
def test_truncated_gradients_accumulate_to_the_sum_over_chunks(device, k1, k2):
    model, x, y, state = setup("lstm", 7, 2, 1, True, 5, device)
    if k1 == k2:
        expected = reference_chunked(model, x, y, k1, state)
    else:
        expected, _ = reference_windowed(model, x, y, k1, k2, state)
    model.zero_grad()
    truncated_bptt(model, x, y, loss_fn, k1, k2, state=state)
    total = {n: sum(g[n] for _, g in expected) for n in expected[0][1]}
    assert_grads_equal(grads_of(model), total)


def test_truncated_k2_above_k1_differs_from_k2_equal_k1(device):
    """The longer window must actually carry gradient back across the chunk boundary."""
    model, x, y, state = setup("gru", 6, 2, 1, True, 6, device)
    _, short, _ = run_truncated(model, x, y, 2, 2, state)
    _, long, _ = run_truncated(model, x, y, 2, 4, state)
    assert short[0][1]["rnn.weight_hh_l0"] == pytest.approx(long[0][1]["rnn.weight_hh_l0"], rel=1e-12)
    assert not np.allclose(short[1][1]["rnn.weight_hh_l0"], long[1][1]["rnn.weight_hh_l0"])


@pytest.mark.parametrize("k1, k2", [(2, 2), (2, 3)])
def test_on_chunk_sees_each_chunk_and_can_step_an_optimizer(device, k1, k2):
    model, x, y, state = setup("lstm", 6, 2, 1, False, 7, device)
    opt = tg.optim.SGD(model.parameters(), lr=0.05)
    seen = []

    def on_chunk(loss):
        assert all(p.grad is not None for p in model.parameters())
        seen.append(loss.item())
        opt.step()
        opt.zero_grad()

    before = model.state_dict()
    losses, final = truncated_bptt(model, x, y, loss_fn, k1, k2, on_chunk=on_chunk)
    assert seen == losses and len(seen) == 3
    assert all(p.grad is None for p in model.parameters())
    assert any(not np.array_equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("k1, k2", [(2, 2), (2, 3), (8, 8), (8, 10)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_returned_state_is_detached(device, kind, k1, k2):
    model, x, y, state = setup(kind, 5, 2, 1, True, 8, device)
    for s in parts(state):
        s.requires_grad_()
    _, final = truncated_bptt(model, x, y, loss_fn, k1, k2, state=state)
    assert isinstance(final, tuple) == (kind == "lstm")
    for s in parts(final):
        assert s.grad_fn is None and not s.requires_grad
        assert s.shape == (1, 2, 3)
    # it can start the next call, whose backward stays inside that call
    model.zero_grad()
    losses, _ = truncated_bptt(model, x, y, loss_fn, k1, k2, state=final)
    assert len(losses) == math.ceil(5 / k1)


def test_truncated_without_targets(device):
    model, x, _, _ = setup("gru", 4, 1, 1, False, 9, device)
    losses, _ = truncated_bptt(model, x, None, lambda out, target: (out * out).sum() if target is None else None, 2)
    model.zero_grad()
    out, _ = model(x[:2])
    assert losses[0] == pytest.approx((out * out).sum().item(), rel=1e-12)


@pytest.mark.parametrize("k1, k2", [(0, None), (-1, 2), (0, 0), (3, 2), (2, 1)])
def test_invalid_k_raises(device, k1, k2):
    model, x, y, _ = setup("lstm", 4, 1, 1, False, 10, device)
    with pytest.raises(ValueError, match="k1"):
        truncated_bptt(model, x, y, loss_fn, k1, k2)
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------- checkpointed unroll
def make_cell(kind, fused, device):
    kw = dict(fused=fused, device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return tg.nn.RNNCell(2, 3, nonlinearity=kind[4:], **kw)
    return {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](2, 3, **kw)


def unroll_and_backward(run, cell, x_np, state_np, device, seed):
    cell.zero_grad()
    x = tensor(x_np, device, grad=True)
    state = None
    if state_np is not None:
        ts = [tensor(s, device, grad=True) for s in state_np]
        state = tuple(ts) if len(ts) == 2 else ts[0]
    out, final = run(x, state)
    w = np.random.default_rng(seed)
    loss = (out * tensor(w.standard_normal(out.shape), device)).sum()
    for s in parts(final):
        loss = loss + (s * tensor(w.standard_normal(s.shape), device)).sum()
    loss.backward()
    result = {"out": out.numpy(), "x.grad": x.grad.numpy()}
    for i, s in enumerate(parts(final)):
        result[f"final{i}"] = s.numpy()
    if state is not None:
        for i, s in enumerate(parts(state)):
            result[f"state{i}.grad"] = s.grad.numpy()
    for name, p in cell.named_parameters():
        result[name] = p.grad.numpy()
    return result


def compare_checkpointed(kind, fused, steps, batch, segment, lengths, with_state, seed, device):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, fused, device)
    random_params(cell, rng)
    x = rng.standard_normal((steps, batch, 2))
    state = None
    if with_state:
        state = [rng.standard_normal((batch, 3)) for _ in range(2 if kind == "lstm" else 1)]
    plain = unroll_and_backward(lambda x, s: tg.nn.unroll(cell, x, s, lengths=lengths), cell, x, state, device, seed)
    ckpt = unroll_and_backward(lambda x, s: checkpointed_unroll(cell, x, s, lengths=lengths, segment=segment),
                               cell, x, state, device, seed)
    assert plain.keys() == ckpt.keys()
    for key in plain:
        assert_close(ckpt[key], plain[key], rtol=1e-12, atol=1e-14, msg=key)
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert np.all(ckpt["out"][n:, b] == 0)
            assert np.all(ckpt["x.grad"][n:, b] == 0)


@hyp()
@given(kind=st.sampled_from(KINDS + ["rnn_relu"]), fused=st.booleans(), steps=st.integers(1, 8),
       batch=st.integers(1, 3), with_state=st.booleans(), data=st.data())
def test_checkpointed_unroll_equals_unroll(device, kind, fused, steps, batch, with_state, data):
    segment = data.draw(st.none() | st.integers(1, steps + 1), label="segment")
    lengths = data.draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch), label="lengths")
    compare_checkpointed(kind, fused, steps, batch, segment, lengths, with_state, steps * 7 + batch, device)


@pytest.mark.parametrize("segment", [1, 2, 3, 4, 6, None])
@pytest.mark.parametrize("kind", KINDS)
def test_checkpointed_unroll_with_lengths_at_and_inside_segment_boundaries(device, kind, segment):
    # T = 6: lengths 2, 3, 4 and 6 end at a boundary for some segment sizes, inside for others
    compare_checkpointed(kind, True, 6, 6, segment, [2, 3, 6, 1, 4, 5], True, 11, device)
    compare_checkpointed(kind, False, 6, 6, segment, [2, 3, 6, 1, 4, 5], False, 12, device)


def test_checkpointed_unroll_of_a_clockwork_cell_keeps_its_clock(device):
    """The clock of a Clockwork RNN counts steps from the start of the sequence, not of each segment."""
    rng = np.random.default_rng(13)
    cell = tg.nn.ClockworkRNNCell(2, 4, periods=(1, 2), device=device, dtype=tg.float64)
    random_params(cell, rng)
    x = tensor(rng.standard_normal((6, 2, 2)), device)
    out, final = tg.nn.unroll(cell, x)
    for segment in (2, 3):
        out_c, final_c = checkpointed_unroll(cell, x, segment=segment)
        assert_close(out_c.numpy(), out.numpy(), msg=f"segment={segment}")
        for part_c, part in zip(final_c, final):          # (h, step counter)
            assert_close(part_c.numpy(), part.numpy(), msg=f"segment={segment}")


def test_checkpointed_unroll_rejects_bad_lengths(device):
    cell = make_cell("gru", True, device)
    x = tensor(np.zeros((4, 2, 2)), device)
    with pytest.raises(ValueError, match="checkpointed_unroll: lengths"):
        checkpointed_unroll(cell, x, lengths=[5, 1])
    with pytest.raises(ValueError, match="checkpointed_unroll: lengths has shape"):
        checkpointed_unroll(cell, x, lengths=[2, 2, 2])


def test_checkpointed_unroll_does_not_keep_the_inner_graph(device):
    """What the forward keeps is one node per segment, not the steps inside it."""
    cell = make_cell("lstm", True, device)
    x = tensor(np.random.default_rng(14).standard_normal((9, 1, 2)), device)
    out, _ = checkpointed_unroll(cell, x, segment=3)
    segments = out.grad_fn.inputs
    assert len(segments) == 3
    assert {type(t.grad_fn).__name__ for t in segments} == {"Checkpoint"}


# ----------------------------------------------------------------- tg.checkpoint in a training loop
class Tagger(tg.nn.Module):
    def __init__(self, device, dropout):
        self.cell = tg.nn.LSTMCell(2, 4, device=device, dtype=tg.float64)
        self.head = tg.nn.Linear(4, 1, device=device, dtype=tg.float64)
        self.dropout = dropout

    def segment(self, x, h, c):
        out, (h, c) = tg.nn.unroll(self.cell, x, (h, c))
        return tg.functional.dropout(out, self.dropout), h, c

    def forward(self, x, use_checkpoint, segment=3):
        batch = x.shape[1]
        h = tg.zeros(batch, 4, dtype=tg.float64, device=x.device)
        c = tg.zeros(batch, 4, dtype=tg.float64, device=x.device)
        outs = []
        for t0 in range(0, x.shape[0], segment):
            chunk = x[t0:t0 + segment]
            out, h, c = tg.checkpoint(self.segment, chunk, h, c) if use_checkpoint else self.segment(chunk, h, c)
            outs.append(out)
        return self.head(tg.cat(outs, axis=0))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_checkpoint_in_a_training_loop(device, dropout):
    rng = np.random.default_rng(15)
    model = Tagger(device, dropout)
    twin = Tagger(device, dropout)
    twin.load_state_dict(random_params(model, rng))
    opt, opt_twin = tg.optim.SGD(model.parameters(), lr=0.1), tg.optim.SGD(twin.parameters(), lr=0.1)
    nodes = []
    for it in range(4):
        x = tensor(rng.standard_normal((7, 2, 2)), device)
        y = tensor(rng.standard_normal((7, 2, 1)), device)
        tg.manual_seed(100 + it)
        loss = loss_fn(model(x, use_checkpoint=True), y)
        tg.manual_seed(100 + it)
        loss_twin = loss_fn(twin(x, use_checkpoint=False), y)
        assert loss.item() == pytest.approx(loss_twin.item(), rel=1e-12)
        opt.zero_grad()
        opt_twin.zero_grad()
        loss.backward()
        loss_twin.backward()
        assert_grads_equal(grads_of(model), grads_of(twin), msg=f"iteration {it}")
        # the graph is freed: a second backward is refused
        with pytest.raises(RuntimeError, match="retain_graph"):
            loss.backward()
        nodes.append(weakref.ref(loss.grad_fn))
        opt.step()
        opt_twin.step()
        del loss, loss_twin
        gc.collect()
        assert all(ref() is None for ref in nodes), "an earlier iteration's graph is still alive"
    for k, v in model.state_dict().items():
        assert_close(v, twin.state_dict()[k], msg=k)


def test_checkpoint_rejects_create_graph(device):
    cell = make_cell("gru", True, device)
    x = tensor(np.ones((2, 1, 2)), device, grad=True)
    out, _ = checkpointed_unroll(cell, x, segment=1)
    with pytest.raises(RuntimeError, match="create_graph"):
        tg.grad([out.sum()], [x], create_graph=True)
