"""The kernels' buffers kept across calls (``nn/kernels.py``: Plans) never leak between calls.

A built-in layer keeps the buffers of its hand-tuned kernel (a *plan*) from one call to
the next. Properties held here, float64, against the same layer with ``fused=False`` (the
traced composed step, which keeps nothing) run on each call alone:
1. several calls in flight on one layer, of repeating and differing shapes, with and
   without lengths, their backward passes in any order, some twice (retain_graph): every
   call's outputs, final state and gradients equal the reference's;
2. nothing a call returned changes afterwards: outputs and final states held across later
   calls, and the gradients of x and h0, keep their values;
3. the plan is reused: a call after a finished backward gets the same buffers back, and
   a call while an earlier one is in flight does not;
4. a layer that has kept plans and traced programs still deep-copies, and the copy computes the same;
5. an LSTM backward that stopped part way after writing over its saved gates refuses to run again.
"""
import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.kernels import RowGrads
from helpers import hyp, parts, scan_nodes

F64 = tg.float64
LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
SHAPES = [(3, 2), (1, 1), (4, 2)]           # (T, B): few, so that shapes repeat and plans are reused
I, H = 3, 4


def make_layers(kind, device, seed=0):
    tg.manual_seed(seed)
    layer = LAYERS[kind](I, H, device=device, dtype=F64)
    reference = LAYERS[kind](I, H, fused=False, device=device, dtype=F64)
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def call(layer, x, h0, lengths):
    """(outputs, final state parts) of ``layer`` on x from h0 (one Tensor or an (h, c) pair)."""
    out, state = layer(x, h0, lengths=lengths)
    return out, parts(state)


def loss_of(out, finals, rng_seed):
    rng = np.random.default_rng(rng_seed)
    total = (out * tg.Tensor(rng.standard_normal(out.shape), device=out.device)).sum()
    for s in finals:
        total = total + (s * tg.Tensor(rng.standard_normal(s.shape), device=s.device)).sum()
    return total


def inputs(kind, shape, lengths_on, seed, device):
    steps, batch = shape
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((steps, batch, I)), requires_grad=True, device=device)
    h0 = [tg.Tensor(rng.standard_normal((1, batch, H)), requires_grad=True, device=device)
          for _ in range(2 if kind == "lstm" else 1)]
    lengths = list(rng.integers(1, steps + 1, size=batch)) if lengths_on else None
    return x, h0, lengths


def as_state(h0):
    return tuple(h0) if len(h0) == 2 else h0[0]


def numpy_of(tensors):
    return [t.numpy().copy() for t in tensors]


@hyp(max_examples=20)
@given(kind=st.sampled_from(sorted(LAYERS)),
       calls=st.lists(st.tuples(st.sampled_from(SHAPES), st.booleans(), st.booleans()), min_size=2, max_size=6),
       order=st.randoms(use_true_random=False))
def test_calls_in_flight_never_share_buffers(device, kind, calls, order):
    layer, reference = make_layers(kind, device)
    params = list(layer.parameters())
    pending, done = [], []
    for k, (shape, lengths_on, retain) in enumerate(calls):
        x, h0, lengths = inputs(kind, shape, lengths_on, k, device)
        out, finals = call(layer, x, as_state(h0), lengths)
        pending.append((k, x, h0, lengths, retain, out, finals, numpy_of([out] + finals)))
        if order.random() < 0.5:                     # sometimes finish a call before the next forward
            done.append(_finish(pending.pop(order.randrange(len(pending))), params))
    order.shuffle(pending)
    done += [_finish(item, params) for item in pending]
    for k, x, h0, lengths, held, values, grads in done:
        ref_params = list(reference.parameters())
        ref_x, ref_h0 = (tg.Tensor(t.numpy(), requires_grad=True, device=device) for t in (x, h0[0]))
        ref_h = [ref_h0] + [tg.Tensor(h.numpy(), requires_grad=True, device=device) for h in h0[1:]]
        ref_out, ref_finals = call(reference, ref_x, as_state(ref_h), lengths)
        expected = tg.grad(loss_of(ref_out, ref_finals, k), [ref_x, *ref_h, *ref_params])
        for got, want in zip(values, numpy_of([ref_out] + ref_finals)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for got, want in zip(numpy_of(held), numpy_of([ref_out] + ref_finals)):      # still what they were
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        for got, want in zip(grads, expected):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def _finish(item, params):
    """Backward through one call (twice with retain_graph); returns what the check needs."""
    k, x, h0, lengths, retain, out, finals, values = item
    loss = loss_of(out, finals, k)
    grads = tg.grad(loss, [x, *h0, *params], retain_graph=retain)
    if retain:
        again = tg.grad(loss, [x, *h0, *params])
        for a, b in zip(grads, again):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    return k, x, h0, lengths, [out] + finals, values, grads


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_a_plan_is_reused_once_its_backward_has_run_and_never_while_in_flight(device, kind):
    layer, _ = make_layers(kind, device)
    x, h0, _ = inputs(kind, (5, 2), False, 0, device)
    first, finals = call(layer, x, as_state(h0), None)
    plan = scan_nodes(first)[0].plan
    second, _ = call(layer, x, as_state(h0), None)              # the first still holds its plan
    assert scan_nodes(second)[0].plan is not plan
    loss_of(first, finals, 0).backward()
    third, _ = call(layer, x, as_state(h0), None)
    assert scan_nodes(third)[0].plan is plan                    # given back by the first's backward
    np.testing.assert_array_equal(third.numpy(), first.numpy())


def test_a_forward_without_graph_gives_its_plan_back(device):
    layer, _ = make_layers("lstm", device)
    x, h0, _ = inputs("lstm", (5, 2), False, 0, device)
    with tg.no_grad():
        layer(x, as_state(h0))
    plans = [c.__dict__["_kernel_plans"] for c in layer.cells() if "_kernel_plans" in c.__dict__]
    assert len(plans) == 1 and len(plans[0].free) == 1          # the node died at once, its plan came back


@pytest.mark.parametrize("fused", [True, False])
def test_a_layer_with_kept_buffers_deep_copies(device, fused):
    layer, _ = make_layers("lstm", device)
    if not fused:
        layer = nn.LSTM(I, H, fused=False, device=device, dtype=F64)
    x, h0, _ = inputs("lstm", (5, 2), False, 0, device)
    out, finals = call(layer, x, as_state(h0), None)
    loss_of(out, finals, 0).backward()
    twin = copy.deepcopy(layer)
    again, _ = call(twin, x, as_state(h0), None)
    np.testing.assert_array_equal(again.numpy(), out.numpy())


def test_a_backward_that_failed_after_writing_over_the_gates_is_not_run_again(device, monkeypatch):
    layer, _ = make_layers("lstm", device)
    x, h0, _ = inputs("lstm", (5, 2), False, 0, device)
    out, finals = call(layer, x, as_state(h0), None)
    loss = loss_of(out, finals, 0)

    def fail(*args, **kwargs):
        raise MemoryError("no room for the input gradients")

    monkeypatch.setattr(RowGrads, "done", fail)                 # after the loop has written dz over the gates
    with pytest.raises(MemoryError):
        loss.backward()
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="saved gates"):       # a loss anew, on the layer's outputs: the
        out.sum().backward(retain_graph=True)                   # first one's own nodes were freed


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("block_rows, chunk", [(1, None), (5, 8), (2, 4)])
@pytest.mark.parametrize("lengths_on", [False, True])
def test_row_gradients_summed_in_blocks_of_steps_equal_the_traced_step(device, monkeypatch, kind, block_rows,
                                                                      chunk, lengths_on):
    """The kernels sum dx, dW, db and the context's gradient a block of steps at a time (RowGrads);
    with blocks of 1 to 3 steps (B = 2), across chunk boundaries of the local derivatives and
    through the masked steps, every gradient equals the traced step's."""
    from tinygrad_rnn.nn import gru, kernels, lstm
    monkeypatch.setattr(kernels, "_BLOCK_ROWS", block_rows)
    if chunk is not None:
        monkeypatch.setattr(lstm, "_CHUNK", chunk)
        monkeypatch.setattr(gru, "_CHUNK", chunk)
    results = []
    for fused in (False, True):
        tg.manual_seed(4)
        layer = LAYERS[kind](I, H, context_size=2, fused=fused, device=device, dtype=F64)
        x, h0, lengths = inputs(kind, (7, 2), lengths_on, 5, device)
        context = tg.Tensor(np.random.default_rng(6).standard_normal((2, 2)), requires_grad=True, device=device)
        out, finals = layer(x, as_state(h0), lengths=lengths, context=context)
        loss = loss_of(out, parts(finals), 7)
        results.append([g.numpy() for g in tg.grad(loss, [x, context, *h0] + layer.parameters())])
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_gradients_a_kernel_hands_to_leaves_are_arrays_of_their_own(device, kind):
    """A kernel's gradients become the leaves' .grad without a copy (Function.fresh_grads): no two
    leaves share one array (b_ih and b_hh have the same gradient), none is a view of a kernel's
    buffer, and a later call leaves an earlier call's gradients as they were."""
    layer, _ = make_layers(kind, device)
    x, h0, _ = inputs(kind, (4, 2), False, 0, device)
    out, finals = call(layer, x, as_state(h0), None)
    loss_of(out, finals, 0).backward()
    grads = [t.grad.data for t in [x, *h0] + layer.parameters()]
    kept = [np.array(tg.Tensor(g).numpy()) for g in grads]
    for i, a in enumerate(grads):
        for b in grads[i + 1:]:
            assert a is not b and not np.shares_memory(tg.Tensor(a).numpy(), tg.Tensor(b).numpy())
    layer.zero_grad()
    x2, h2, _ = inputs(kind, (4, 2), False, 1, device)
    out, finals = call(layer, x2, as_state(h2), None)
    loss_of(out, finals, 1).backward()
    for g, before in zip(grads, kept):
        np.testing.assert_array_equal(tg.Tensor(g).numpy(), before)


def test_row_gradients_refuse_to_answer_before_step_0_is_summed():
    """RowGrads.result() before the loop has reported step 0 would hand out partial sums."""
    from tinygrad_rnn.nn.kernels import RowGrads
    d = np.ones((4, 2, 3))
    rows = RowGrads(np, 4, 2)
    rows.total("bias_ih", d)
    rows.done(2)
    with pytest.raises(RuntimeError, match="never summed"):
        rows.result()
    rows.done(0)
    _, grads = rows.result()
    np.testing.assert_array_equal(grads["bias_ih"], np.full(3, 8.0))
