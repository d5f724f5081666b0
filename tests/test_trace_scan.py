"""The whole-sequence node ``Scan`` (nn/trace_scan.py) held to the per-step graph.

Every recurrent layer runs its T steps as ONE graph node: the replay of a tape traced
from the cell's composed ``step`` ("traced") or, for the built-in cells with
``fused=True``, a hand-written kernel ("kernel"). ``unroll(..., per_step=True)`` runs the
same ``step`` as ordinary graph ops, one node per op and step ("per_step"): the reference.

Properties held here (float64 unless said otherwise):
1. traced == per_step == kernel for every cell: outputs, final state, and the gradients of
   x, every part of h0 and every parameter; hypothesis over sizes, bias, lengths (0..T),
   direction, and whether the loss reads the outputs or only the final state.
2. the same through full layers (num_layers, bidirectional, batch_first, lengths, hx).
3. forward mode (``study.jvp``) through the node equals forward mode through the per-step graph.
4. gradcheck and gradgradcheck through the traced node and the kernel node.
5. a second backward with retain_graph=True gives identical gradients; without it the graph is freed.
6. a step that reads values into Python, or makes a constant from its own data, or draws
   dropout masks, runs step by step after exactly one RuntimeWarning naming its class.
7. the program's structure: W_hh^T hoisted out of the loop, the recurrent matmul deferred,
   dL/dW_hh as one matmul after the loop.
8. the graph behind a traced layer has a number of nodes independent of T.
9. float32 runs and stays close to float64.
"""
import warnings

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import functional as F
from tinygrad_rnn import nn, ops
from tinygrad_rnn.nn import recurrent, trace_scan
from tinygrad_rnn.nn.cells import project_input, uniform_parameter
from tinygrad_rnn.nn.recurrent import unroll
from tinygrad_rnn.study.forward_mode import jvp
from helpers import hyp

F64 = tg.float64


# ----------------------------------------------------------------- user cells
class MinimalGatedCell(nn.RecurrentCell):
    """f = sigmoid(x W_f^T + h U_f^T + b_f);  h' = f * h + (1 - f) * tanh(x W_h^T + (f * h) U_h^T + b_h)
    (the minimal gated unit of Zhou et al. 2016)."""

    def __init__(self, input_size, hidden_size):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = uniform_parameter((2 * hidden_size, input_size), hidden_size, None, None)
        self.weight_hh = uniform_parameter((2 * hidden_size, hidden_size), hidden_size, None, None)
        self.bias_ih = uniform_parameter((2 * hidden_size,), hidden_size, None, None)

    def project(self, x):                       # (*, I) -> (*, 2H): one matmul for every step
        return project_input(x, self.weight_ih, self.bias_ih)

    def step(self, p, h):                       # p (B, 2H), h (B, H) -> h' (B, H)
        p_f, p_h = tg.split(p, self.hidden_size, axis=1)
        u_f, u_h = tg.split(self.weight_hh, self.hidden_size, axis=0)
        f = (p_f + h @ u_f.T).sigmoid()
        candidate = (p_h + (f * h) @ u_h.T).tanh()
        return f * h + (1 - f) * candidate


class TripleStateCell(nn.RecurrentCell):
    """A state of three parts and an output that is none of them (and twice as wide):

        a, b, d = split(x W_ih^T + b_ih + h W_hh^T)
        h' = tanh(a) sigmoid(m),   c' = sigmoid(b) c + tanh(d),   m' = m / 2 + h' c'
        output = [h' c', m']   (B, 2H)
    """

    state_names = ("h", "c", "m")

    def __init__(self, input_size, hidden_size, bias=True, *, device=None, dtype=None):
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, 2 * hidden_size
        self.weight_ih = uniform_parameter((3 * hidden_size, input_size), hidden_size, device, dtype)
        self.weight_hh = uniform_parameter((3 * hidden_size, hidden_size), hidden_size, device, dtype)
        self.bias_ih = uniform_parameter((3 * hidden_size,), hidden_size, device, dtype) if bias else None

    def project(self, x):
        return project_input(x, self.weight_ih, self.bias_ih)


    def step(self, p, state):
        h, c, m = state
        a, b, d = tg.split(p + h @ self.weight_hh.T, self.hidden_size, axis=-1)
        h = a.tanh() * m.sigmoid()
        c = b.sigmoid() * c + d.tanh()
        return h, c, 0.5 * m + h * c

    def output(self, state):
        h, c, m = state
        return tg.cat([h * c, m], axis=-1)


# clockwork periods per hidden size (one module per period, equal module sizes)
PERIODS = {1: (2,), 2: (1, 2), 3: (1, 2, 3), 4: (1, 2, 3, 4)}

KERNEL_KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
TRACED_KINDS = ["peephole", "coupled", "jordan", "clockwork", "minimal_gated", "triple"]


def make_cell(kind, input_size, hidden_size, bias=True, device="cpu", dtype=F64):
    """A cell of ``kind`` (see KERNEL_KINDS, TRACED_KINDS); built-in cells get ``fused=True``."""
    kw = dict(device=device, dtype=dtype)
    if kind.startswith("rnn_"):
        return nn.RNNCell(input_size, hidden_size, bias, kind[4:], **kw)
    if kind == "minimal_gated":                 # the README's cell: no bias option, default dtype
        return MinimalGatedCell(input_size, hidden_size).to(device=device, dtype=dtype)
    if kind == "jordan":
        return nn.JordanCell(input_size, hidden_size, output_size=hidden_size % 3 + 1, bias=bias, **kw)
    if kind == "clockwork":
        return nn.ClockworkRNNCell(input_size, hidden_size, periods=PERIODS[hidden_size], bias=bias, **kw)
    classes = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "peephole": nn.PeepholeLSTMCell,
               "coupled": nn.CoupledLSTMCell, "triple": TripleStateCell}
    return classes[kind](input_size, hidden_size, bias, **kw)


# ----------------------------------------------------------------- helpers
def tensor(a, device, dtype=F64, grad=False):
    return tg.tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device, requires_grad=grad)


def as_parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def rebuild(parts):
    return tuple(parts) if len(parts) > 1 else parts[0]


def randomize(module, rng, scale=0.6):
    module.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in module.named_parameters()})


def random_state(cell, batch, rng, device, dtype=F64, grad=False, lead=()):
    """Random parts shaped like ``cell.initial_state`` (with ``lead`` dims in front); a clock
    part ``t`` gets small integers (a step counter)."""
    like = tensor(np.zeros(1), device, dtype)
    parts = []
    for name, zero in zip(cell.state_names, as_parts(cell.initial_state(batch, like))):
        shape = tuple(lead) + zero.shape
        value = rng.integers(0, 4, shape) if name == "t" else rng.standard_normal(shape)
        parts.append(tensor(value, device, dtype, grad))
    return parts


def set_mode(cell, mode):
    """Choose the path of a built-in cell: "kernel" (fused) or "traced"."""
    if hasattr(cell, "fused"):
        cell.fused = mode == "kernel"


def run(cell, x, parts, lengths, reverse, mode):
    """(outputs, final parts) of ``cell`` over x, through ``mode``: "kernel", "traced" or "per_step"."""
    set_mode(cell, mode)
    out, final = unroll(cell, x, rebuild(parts), lengths, reverse, per_step=mode == "per_step")
    return out, as_parts(final)


def graph_nodes(*tensors):
    """Every node of the graph behind ``tensors`` (a walk over ``grad_fn.inputs``)."""
    seen, stack = set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(i.grad_fn for i in node.inputs if isinstance(i, tg.Tensor) and i.grad_fn is not None)
    return seen


def scan_nodes(*tensors):
    return [n for n in graph_nodes(*tensors) if isinstance(n, trace_scan.Scan)]


def assert_path(mode, out, finals):
    """The graph behind a run was made by ``mode``: one Scan node with a kernel or a traced
    program, or per-step ops and no Scan node."""
    scans = scan_nodes(out, *finals)
    if mode == "per_step":
        assert scans == []
    else:
        assert len(scans) == 1
        assert (scans[0].program.kernel is not None) == (mode == "kernel"), type(scans[0].program)


def assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


def assert_all_close(got, expected, names, **kw):
    """Lists of arrays (None: a zero gradient) equal pairwise."""
    assert len(got) == len(expected) == len(names)
    for g, e, name in zip(got, expected, names):
        if g is None and e is None:
            continue
        like = g if g is not None else e
        assert_close(np.zeros_like(like) if g is None else g, np.zeros_like(like) if e is None else e,
                     msg=name, **kw)


def loss_of(out, finals, w_out, w_final):
    """sum(out * w_out) (when w_out is not None) + sum(final part * its weight)."""
    loss = sum((f * w).sum() for f, w in zip(finals, w_final))
    return loss if w_out is None else loss + (out * w_out).sum()


def values_and_grads(cell, x, parts, lengths, reverse, mode, w_out, w_final):
    """Outputs, final parts and the gradients of x, h0's parts and the parameters, as arrays;
    and the inputs of the graph's Relu nodes (per step: the relu pre-activations)."""
    out, finals = run(cell, x, parts, lengths, reverse, mode)
    assert_path(mode, out, finals)
    relu_inputs = [n.inputs[0].numpy() for n in graph_nodes(out, *finals) if isinstance(n, ops.Relu)]
    inputs = [x, *parts, *cell.parameters()]
    grads = tg.grad(loss_of(out, finals, w_out, w_final), inputs, allow_unused=True)
    return [out.numpy(), *(f.numpy() for f in finals)], [None if g is None else g.numpy() for g in grads], \
        relu_inputs


@st.composite
def cases(draw, max_steps=5, max_batch=3, max_size=4):
    """Sizes, bias, lengths (None or 0..T per row), direction, what the loss reads, a seed."""
    steps = draw(st.integers(1, max_steps))
    batch = draw(st.integers(1, max_batch))
    lengths = st.lists(st.integers(0, steps), min_size=batch, max_size=batch)
    return dict(steps=steps, batch=batch, input_size=draw(st.integers(1, max_size)),
                hidden_size=draw(st.integers(1, max_size)), bias=draw(st.booleans()),
                lengths=draw(st.none() | lengths), reverse=draw(st.booleans()),
                read_outputs=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


RICH = dict(steps=5, batch=3, input_size=3, hidden_size=4, bias=True, lengths=[5, 0, 3], reverse=True,
            read_outputs=True, seed=7)


def build_case(kind, case, device, dtype=F64):
    """The cell, x, h0's parts (all requiring grad) and the loss weights of a case."""
    rng = np.random.default_rng(case["seed"])
    T, B = case["steps"], case["batch"]
    cell = make_cell(kind, case["input_size"], case["hidden_size"], case["bias"], device, dtype)
    randomize(cell, rng)
    x = tensor(rng.standard_normal((T, B, case["input_size"])), device, dtype, grad=True)
    parts = random_state(cell, B, rng, device, dtype, grad=True)
    out_size = getattr(cell, "output_size", case["hidden_size"])
    w_out = tensor(rng.standard_normal((T, B, out_size)), device, dtype) if case["read_outputs"] else None
    w_final = [tensor(rng.standard_normal(p.shape), device, dtype) for p in parts]
    return cell, x, parts, w_out, w_final


# ----------------------------------------------------------------- 1. traced == per step == kernel
@pytest.mark.parametrize("kind", KERNEL_KINDS + TRACED_KINDS)
@hyp(10)
@given(case=cases())
@example(case=RICH)
def test_node_equals_per_step_graph_in_values_and_gradients(device, kind, case):
    """Property 1: for every cell, the Scan node (traced, and the kernel where the cell has one)
    gives the per-step graph's outputs, final state and gradients of x, h0 and every parameter."""
    cell, x, parts, w_out, w_final = build_case(kind, case, device)
    lengths, reverse = case["lengths"], case["reverse"]
    modes = ["per_step", "traced"] + (["kernel"] if kind in KERNEL_KINDS else [])
    results = {m: values_and_grads(cell, x, parts, lengths, reverse, m, w_out, w_final) for m in modes}
    if kind == "rnn_relu":          # away from relu's kink, where the paths may round to different sides
        pre_activations = results["per_step"][2]
        assert pre_activations
        assume(all(np.abs(a).min() > 1e-6 for a in pre_activations))
    names = ["x"] + [f"h0[{i}]" for i in range(len(parts))] + [n for n, _ in cell.named_parameters()]
    ref_values, ref_grads = results["per_step"][:2]
    for mode in modes[1:]:
        values, grads = results[mode][:2]
        assert_all_close(values, ref_values, [f"{mode} output"] + [f"{mode} final[{i}]" for i in range(len(parts))])
        assert_all_close(grads, ref_grads, [f"{mode} d{n}" for n in names])


@pytest.mark.parametrize("start", [0, 1])
@pytest.mark.parametrize("mode", ["traced", "per_step"])
def test_clockwork_modules_tick_on_their_periods(device, mode, start):
    """Property 1, the clock: module k of a ClockworkRNNCell changes exactly at the steps whose
    counter t (starting from h0's t part) is a multiple of its period, and t counts the steps
    each row ran (its length)."""
    rng = np.random.default_rng(3)
    periods, T, B = (1, 2, 3), 7, 2
    cell = nn.ClockworkRNNCell(2, 3, periods=periods, device=device, dtype=F64)
    randomize(cell, rng)
    x = tensor(rng.standard_normal((T, B, 2)), device)
    h0 = tensor(rng.standard_normal((B, 3)), device)
    t0 = tensor(np.full((B, 1), start), device)
    out, (h, t) = run(cell, x, [h0, t0], [T, 4], False, mode)
    assert_path(mode, out, [h, t])
    o = np.concatenate([h0.numpy()[None], out.numpy()])     # o[s + 1] is the state after step s
    for s in range(T):
        for k, period in enumerate(periods):
            ticks = (start + s) % period == 0
            changed = o[s + 1, 0, k] != o[s, 0, k]
            assert changed == ticks, (s, k, period)
    assert_close(t.numpy()[:, 0], [start + T, start + 4])


# ----------------------------------------------------------------- 2. whole layers
LAYER_KINDS = ["rnn_tanh", "lstm", "gru", "lstm_traced", "gru_traced", "peephole", "jordan", "clockwork",
               "minimal_gated", "triple"]


def make_layer(kind, input_size, hidden_size, num_layers, bidirectional, batch_first, device):
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    builtin = {"rnn_tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
    base = kind.replace("_traced", "")
    if base in builtin:
        return builtin[base](input_size, hidden_size, fused=not kind.endswith("_traced"), device=device,
                             dtype=F64, **kw)
    return nn.Recurrent(lambda i, h: make_cell(kind, i, h, True, device), input_size, hidden_size, **kw)


def per_step_unroll(*args, **kwargs):
    """``unroll`` forced to run step by step, whatever the layer asks."""
    return unroll(*args, **dict(kwargs, per_step=True))


@st.composite
def layer_cases(draw):
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lengths = st.lists(st.integers(1, steps), min_size=batch, max_size=batch)
    return dict(steps=steps, batch=batch, input_size=draw(st.integers(1, 3)), hidden_size=draw(st.integers(1, 4)),
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), with_hx=draw(st.booleans()), lengths=draw(st.none() | lengths),
                seed=draw(st.integers(0, 2**16)))


def layer_values_and_grads(model, x, hx, lengths, w_out, w_final):
    out, h_n = model(x, None if hx is None else rebuild(hx), lengths=lengths)
    finals = as_parts(h_n)
    n_scans = len(scan_nodes(out, *finals))
    inputs = [x, *(hx or []), *model.parameters()]
    grads = tg.grad(loss_of(out, finals, w_out, w_final), inputs, allow_unused=True)
    return [out.numpy(), *(f.numpy() for f in finals)], [None if g is None else g.numpy() for g in grads], n_scans


@pytest.mark.parametrize("kind", LAYER_KINDS)
@hyp(6)
@given(case=layer_cases())
@example(case=dict(steps=4, batch=3, input_size=2, hidden_size=4, num_layers=2, bidirectional=True,
                   batch_first=True, with_hx=True, lengths=[4, 1, 3], seed=1))
def test_layer_equals_layer_of_per_step_cells(device, kind, case):
    """Property 2: a whole layer (layers, directions, batch_first, lengths, hx) through its Scan
    nodes equals the same layer with every cell run step by step, in values and gradients."""
    rng = np.random.default_rng(case["seed"])
    T, B, I, L = case["steps"], case["batch"], case["input_size"], case["num_layers"]
    D = 2 if case["bidirectional"] else 1
    model = make_layer(kind, I, case["hidden_size"], L, case["bidirectional"], case["batch_first"], device)
    randomize(model, rng)
    x = tensor(rng.standard_normal((B, T, I) if case["batch_first"] else (T, B, I)), device, grad=True)
    cell = model.cells()[0]
    hx = random_state(cell, B, rng, device, grad=True, lead=(L * D,)) if case["with_hx"] else None
    out_size = getattr(cell, "output_size", case["hidden_size"]) * D
    w_out = tensor(rng.standard_normal(x.shape[:2] + (out_size,)), device)
    w_final = [tensor(rng.standard_normal((L * D,) + p.shape), device)
               for p in as_parts(cell.initial_state(B, x))]
    values, grads, n_scans = layer_values_and_grads(model, x, hx, case["lengths"], w_out, w_final)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recurrent, "unroll", per_step_unroll)
        ref_values, ref_grads, ref_scans = layer_values_and_grads(model, x, hx, case["lengths"], w_out, w_final)
    assert (n_scans, ref_scans) == (L * D, 0)
    names = ["x"] + [f"hx[{i}]" for i in range(len(hx or []))] + [n for n, _ in model.named_parameters()]
    assert_all_close(values, ref_values, ["output"] + [f"h_n[{i}]" for i in range(len(w_final))])
    assert_all_close(grads, ref_grads, [f"d{n}" for n in names])


# ----------------------------------------------------------------- 3. forward mode
JVP_CASES = [("rnn_tanh", "kernel"), ("lstm", "kernel"), ("gru", "kernel"), ("lstm", "traced"), ("gru", "traced"),
             ("peephole", "traced"), ("clockwork", "traced"), ("triple", "traced")]


@pytest.mark.parametrize("kind, mode", JVP_CASES)
@hyp(5)
@given(case=cases(max_steps=4, max_size=3))
@example(case=RICH)
def test_jvp_through_the_node_equals_jvp_through_the_per_step_graph(device, kind, mode, case):
    """Property 3: study.jvp through the Scan node (its jvp replays the traced program, also for a
    kernel cell) equals study.jvp through the per-step graph, seeding x, every part of h0 and weight_hh."""
    cell, x, parts, _, _ = build_case(kind, case, device)
    x, parts = x.detach(), [p.detach() for p in parts]
    rng = np.random.default_rng(case["seed"] + 1)
    k = 2
    primals = [x, *parts, cell.weight_hh]
    directions = [rng.standard_normal((k,) + p.shape) for p in primals]
    programs = []
    original = trace_scan.Scan.jvp

    def spy(ctx, *tangents):
        programs.append(ctx.program)
        return original(ctx, *tangents)

    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace_scan.Scan, "jvp", staticmethod(spy))
        for m in (mode, "per_step"):
            def fn(x, *rest, m=m):
                out, finals = run(cell, x, list(rest[:len(parts)]), case["lengths"], case["reverse"], m)
                return (out, *finals)
            results[m] = jvp(fn, primals, directions)
    assert len(programs) == 1 and (programs[0].kernel is not None) == (mode == "kernel")
    (values, tangents), (ref_values, ref_tangents) = results[mode], results["per_step"]
    assert_all_close([v.numpy() for v in values], [v.numpy() for v in ref_values], ["value"] * len(values))
    assert_all_close([t.numpy() for t in tangents], [t.numpy() for t in ref_tangents],
                     ["tangent of output"] + [f"tangent of final[{i}]" for i in range(len(parts))])


# ----------------------------------------------------------------- 4. gradcheck and gradgradcheck
@pytest.mark.parametrize("lengths, reverse", [(None, False), ([3, 0], True)])
@pytest.mark.parametrize("mode", ["kernel", "traced"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_gradcheck_and_gradgradcheck_through_the_node(device, kind, mode, lengths, reverse):
    """Property 4: first and second derivatives through the Scan node (kernel and traced) match
    finite differences, with and without lengths. Second order differentiates the backward
    that create_graph=True replays on the per-step graph, so that backward must also give the
    plain backward's first derivatives (gradgradcheck alone only sees it consistent with itself)."""
    rng = np.random.default_rng(11)
    cell = make_cell(kind, 2, 2, device=device)
    randomize(cell, rng)
    set_mode(cell, mode)
    x = tensor(rng.standard_normal((3, 2, 2)), device, grad=True)
    parts = random_state(cell, 2, rng, device, grad=True)
    n = len(parts)

    def fn(x, *rest):
        out, final = unroll(cell, x, rebuild(list(rest[:n])), lengths, reverse)
        return (out, *as_parts(final))

    result = fn(x, *parts)
    assert_path(mode, result[0], result[1:])
    weights = [tensor(rng.standard_normal(r.shape), device) for r in result]
    inputs = [x, *parts, *cell.parameters()]
    plain = tg.grad(list(result), inputs, grad_outputs=weights, retain_graph=True)
    graphed = tg.grad(list(result), inputs, grad_outputs=weights, create_graph=True)
    assert all(g.requires_grad for g in graphed)
    assert_all_close([g.detach().numpy() for g in graphed], [g.numpy() for g in plain], ["create_graph"] * len(plain))
    assert tg.gradcheck(fn, (x, *parts, *cell.parameters()))
    assert tg.gradgradcheck(fn, (x, *parts, cell.weight_hh))


# ----------------------------------------------------------------- 5. retain_graph
RETAIN_CASES = [("rnn_tanh", "kernel"), ("lstm", "kernel"), ("gru", "kernel"), ("lstm", "traced"),
                ("gru", "traced"), ("clockwork", "traced"), ("triple", "traced")]


@pytest.mark.parametrize("read_outputs", [True, False])
@pytest.mark.parametrize("kind, mode", RETAIN_CASES)
def test_retain_graph_gives_identical_gradients_and_freeing_raises(device, kind, mode, read_outputs):
    """Property 5: backward through the node twice with retain_graph=True gives identical
    gradients (the node's saved arrays are not changed by its backward); a backward
    without it frees them, and one more backward raises."""
    case = dict(RICH, steps=4, hidden_size=2, read_outputs=read_outputs, lengths=[4, 0, 2])
    cell, x, parts, w_out, w_final = build_case(kind, case, device)
    set_mode(cell, mode)
    out, final = unroll(cell, x, rebuild(parts), case["lengths"], reverse=True)
    finals = as_parts(final)
    assert_path(mode, out, finals)
    loss = loss_of(out, finals, w_out, w_final)
    inputs = [x, *parts, *cell.parameters()]
    first = tg.grad(loss, inputs, retain_graph=True, allow_unused=True)
    second = tg.grad(loss, inputs, retain_graph=True, allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    loss.backward()                     # frees the graph
    for t, g in zip(inputs, first):
        if g is not None:
            np.testing.assert_array_equal(t.grad.numpy(), g.numpy())
    with pytest.raises(RuntimeError, match="Scan.*second time"):
        tg.grad(finals, inputs, grad_outputs=w_final, allow_unused=True)


# ----------------------------------------------------------------- 6. the fallback
class SmallCell(nn.RecurrentCell):
    """h' = tanh(x W_ih^T + h W_hh^T): the base of the untraceable cells below."""

    def __init__(self, input_size, hidden_size, device="cpu"):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = uniform_parameter((hidden_size, input_size), hidden_size, device, F64)
        self.weight_hh = uniform_parameter((hidden_size, hidden_size), hidden_size, device, F64)

    def project(self, x):
        return project_input(x, self.weight_ih)

    def update(self, p, h):
        return (p + h @ self.weight_hh.T).tanh()


class ItemCell(SmallCell):
    """Halves its update when a value read with item() is large."""

    def step(self, p, h):
        scale = 0.5 if h.abs().max().item() > 0.5 else 1.0
        return self.update(p, h) * scale


class BoolCell(SmallCell):
    """Branches in Python on bool() of a tensor."""

    def step(self, p, h):
        new = self.update(p, h)
        return new * 0.5 if bool(h.sum() > 0) else new


class DataConstantCell(SmallCell):
    """Makes a constant from its own state's values (h.data), outside the ops."""

    def step(self, p, h):
        positive = tg.tensor(h.data > 0, device=h.device)
        new = self.update(p, h)
        return tg.where(positive, new, 0.5 * new)


class Draws:
    """A generator for F.dropout: draws from a seeded NumPy generator, or in turn the entries of
    ``script`` (arrays, or numbers that fill the whole draw); keeps every draw."""

    def __init__(self, seed=0, script=None):
        self.rng, self.script, self.draws = np.random.default_rng(seed), script, []

    def random(self, shape):
        if self.script is None:
            value = self.rng.random(shape)
        else:
            value = np.broadcast_to(np.asarray(self.script[len(self.draws)], dtype=np.float64), shape).copy()
        self.draws.append(value)
        return value


class DropoutCell(SmallCell):
    """Random dropout on its new state, inside the step."""

    p = 0.5
    generator = None

    def step(self, p, h):
        return F.dropout(self.update(p, h), self.p, generator=self.generator)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """An empty set of cell classes already warned about, restored afterwards."""
    monkeypatch.setattr(trace_scan, "_warned", set())


def first_run_warns_once(cls, fn):
    """``fn()`` warns exactly once (a RuntimeWarning naming ``cls``); a second ``fn()`` does not warn."""
    with pytest.warns(RuntimeWarning, match=cls.__name__) as record:
        result = fn()
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1, [str(w.message) for w in record]
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        fn()
    assert [str(w.message) for w in again if issubclass(w.category, RuntimeWarning)] == []
    return result


def check_fallback(cell, x, h0, reference_setup=lambda: None, steps_setup=lambda: None):
    """The cell runs step by step (no Scan node) after one warning, with the per-step graph's
    values and gradients (``*_setup`` prepare the cell before each run, e.g. its random draws)."""

    def default_run():
        steps_setup()
        out, h = unroll(cell, x, h0)
        n_scans = len(scan_nodes(out, h))
        return out, h, tg.grad(out.sum() + h.sum(), [x, h0, *cell.parameters()]), n_scans

    out, h, grads, n_scans = first_run_warns_once(type(cell), default_run)
    assert n_scans == 0
    reference_setup()
    ref_out, ref_h = unroll(cell, x, h0, per_step=True)
    ref_grads = tg.grad(ref_out.sum() + ref_h.sum(), [x, h0, *cell.parameters()])
    assert_close(out.numpy(), ref_out.numpy(), msg="output")
    assert_close(h.numpy(), ref_h.numpy(), msg="final state")
    assert_all_close([g.numpy() for g in grads], [g.numpy() for g in ref_grads], ["dx", "dh0", "dW_ih", "dW_hh"])


@pytest.mark.parametrize("cls", [ItemCell, BoolCell, DataConstantCell])
def test_data_dependent_step_falls_back_with_one_warning(device, cls, fresh_warnings):
    """Property 6: a step that reads values into Python (item(), bool()) or makes a constant from
    h.data runs step by step, after exactly one RuntimeWarning naming its class, with the
    per-step graph's results."""
    rng = np.random.default_rng(5)
    cell = cls(2, 4, device)
    randomize(cell, rng)
    x = tensor(rng.standard_normal((5, 3, 2)), device, grad=True)
    h0 = tensor(rng.standard_normal((3, 4)), device, grad=True)
    check_fallback(cell, x, h0)


def test_dropout_in_the_step_falls_back_with_one_warning(device, fresh_warnings):
    """Property 6: a step that draws a dropout mask runs step by step after one warning; its
    results are the per-step graph's with the same masks (a traced step may draw nothing: the
    tracer refuses the first draw, so there are exactly T)."""
    rng = np.random.default_rng(6)
    T = 5
    cell = DropoutCell(2, 4, device)
    randomize(cell, rng)
    x = tensor(rng.standard_normal((T, 3, 2)), device, grad=True)
    h0 = tensor(rng.standard_normal((3, 4)), device, grad=True)
    runs = []

    def new_draws():
        cell.generator = Draws(seed=0)
        runs.append(cell.generator)

    def replay_the_steps_draws():
        drawn = runs[0].draws
        assert len(drawn) == T, f"{len(drawn)} draws: the step was not run step by step, once"
        cell.generator = Draws(script=drawn)

    check_fallback(cell, x, h0, steps_setup=new_draws, reference_setup=replay_the_steps_draws)


@pytest.mark.parametrize("what", ["dropout", "data_constant"])
def test_step_whose_first_two_steps_happen_to_agree_still_falls_back(device, what, fresh_warnings):
    """Property 6, the unlucky case: a mask or data constant that happens to be the same on the
    first two steps must still not be frozen into the program. Dropout with p = 0.1 on one unit
    draws the same mask on both of the first two steps 82% of the time (the tracer refuses any
    draw); a sign pattern of h often stays the same for two steps (the tracer's second trace
    runs at a random point, where it differs)."""
    T = 4
    cls = DropoutCell if what == "dropout" else DataConstantCell
    cell = cls(1, 1, device)
    cell.load_state_dict({"weight_ih": np.ones((1, 1)), "weight_hh": np.zeros((1, 1))})
    x = tensor(np.array([1.0, 1.0, -1.0, 1.0]).reshape(T, 1, 1), device, grad=True)
    h0 = tensor(np.ones((1, 1)), device, grad=True)
    if what == "dropout":
        cell.p = 0.1
        script = [0.5, 0.5, 0.05, 0.5]              # keep, keep, drop, keep
        check_fallback(cell, x, h0, steps_setup=lambda: setattr(cell, "generator", Draws(script=script)),
                       reference_setup=lambda: setattr(cell, "generator", Draws(script=script)))
    else:
        check_fallback(cell, x, h0)    # h0, h1 > 0 on the two traced steps; h3 = tanh(-1) < 0


# ----------------------------------------------------------------- 7. hoisting and deferral
def register_of(program, tensor):
    return next(r for r, t in zip(program.inputs, program.input_tensors) if t is tensor)


def test_lstm_program_hoists_w_hh_transpose_and_defers_its_gradient(device, monkeypatch):
    """Property 7: in the traced LSTM the transpose of weight_hh runs once before the loop (in
    ``pre``), the recurrent matmul h @ W_hh^T has ``defer`` on its h operand, and the backward
    calls MatMul.backward once per step for dL/dh only and exactly ONE time for dL/dW_hh^T,
    on all T*B rows at once."""
    T, B, I, H = 4, 2, 3, 2
    rng = np.random.default_rng(8)
    cell = make_cell("lstm", I, H, device=device)
    cell.fused = False
    randomize(cell, rng)
    x = tensor(rng.standard_normal((T, B, I)), device, grad=True)
    parts = random_state(cell, B, rng, device, grad=True)
    out, (h, c) = unroll(cell, x, tuple(parts))
    program = out.grad_fn.program
    assert type(program) is trace_scan.Program
    w = register_of(program, cell.weight_hh)
    hoisted = [ins for ins in program.pre if ins.cls is ops.Transpose and ins.args[0] == w]
    assert len(hoisted) == 1
    assert not any(w in ins.args for ins in program.loop)
    assert not any(ins.cls is ops.Transpose for ins in program.loop)
    recurrent_mm = [ins for ins in program.loop if ins.cls is ops.MatMul and hoisted[0].outs[0] in ins.args]
    assert len(recurrent_mm) == 1
    assert recurrent_mm[0].args.index(hoisted[0].outs[0]) == 1 and recurrent_mm[0].defer == 0

    calls = []
    original = ops.MatMul.backward

    def spy(ctx, g):
        a, b = ctx.saved_tensors
        calls.append((tuple(bool(n) for n in ctx.needs_input_grad), a.shape, b.shape))
        return original(ctx, g)

    monkeypatch.setattr(ops.MatMul, "backward", staticmethod(spy))
    tg.grad([out, h, c], [x, *parts, cell.weight_hh],
            grad_outputs=[tensor(np.ones(t.shape), device) for t in (out, h, c)])
    recurrent_calls = [call for call in calls if call[2] == (H, 4 * H)]        # b is W_hh^T
    per_step = [call for call in recurrent_calls if not call[0][1]]
    for_weight = [call for call in recurrent_calls if call[0][1]]
    assert len(per_step) == T and all(call == ((True, False), (B, H), (H, 4 * H)) for call in per_step)
    assert for_weight == [((False, True), (T * B, H), (H, 4 * H))]


# ----------------------------------------------------------------- 8. one node, whatever T
@pytest.mark.parametrize("lengths, reverse", [(False, False), (True, True)])
@pytest.mark.parametrize("kind, mode", [("lstm", "kernel"), ("gru", "kernel"), ("lstm", "traced"),
                                        ("peephole", "traced"), ("triple", "traced")])
def test_graph_size_does_not_grow_with_steps(device, kind, mode, lengths, reverse):
    """Property 8: the graph behind a traced (or kernel) sequence has the same number of nodes
    for T = 1, 3, 9 (no node per op per step), while the per-step graph grows with T."""
    rng = np.random.default_rng(9)
    counts = {}
    for m in (mode, "per_step"):
        for T in (1, 3, 9):
            cell = make_cell(kind, 2, 3, device=device)
            randomize(cell, rng)
            x = tensor(rng.standard_normal((T, 2, 2)), device, grad=True)
            parts = random_state(cell, 2, rng, device, grad=True)
            out, finals = run(cell, x, parts, [T, max(T - 1, 0)] if lengths else None, reverse, m)
            assert_path(m, out, finals)
            counts[m, T] = len(graph_nodes(out, *finals))
    assert counts[mode, 1] == counts[mode, 3] == counts[mode, 9] <= 3, counts
    assert counts["per_step", 1] < counts["per_step", 3] < counts["per_step", 9], counts


# ----------------------------------------------------------------- 9. float32
@pytest.mark.parametrize("kind, mode", [("rnn_tanh", "kernel"), ("lstm", "kernel"), ("gru", "kernel"),
                                        ("lstm", "traced"), ("gru", "traced"), ("peephole", "traced"),
                                        ("clockwork", "traced"), ("triple", "traced")])
def test_float32_runs_and_matches_float64(device, kind, mode):
    """Property 9: in float32 the node keeps float32 throughout (values and gradients) and stays
    within float32 rounding of the float64 per-step graph."""
    case = dict(RICH, steps=4, lengths=[4, 0, 3])
    results = {}
    for dtype, m in ((tg.float32, mode), (F64, "per_step")):
        cell, x, parts, w_out, w_final = build_case(kind, case, device, dtype)
        values, grads, _ = values_and_grads(cell, x, parts, case["lengths"], case["reverse"], m, w_out, w_final)
        results[dtype] = values, grads
    values, grads = results[tg.float32]
    assert all(v.dtype == np.float32 for v in values)
    assert all(g is None or g.dtype == np.float32 for g in grads)
    ref_values, ref_grads = results[F64]
    assert_all_close(values, ref_values, ["value"] * len(values), rtol=1e-4, atol=1e-5)
    assert_all_close(grads, ref_grads, ["gradient"] * len(grads), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lengths", [None, [7, 3, 5]])
def test_lstm_kernel_backward_in_chunks_of_steps_equals_the_traced_step(device, monkeypatch, lengths):
    """The LSTM kernel computes its local derivatives a chunk of steps at a time; with chunks of
    1 to 3 steps (boundaries inside the masked part too) it still equals the traced step."""
    from tinygrad_rnn.nn import lstm
    rng = np.random.default_rng(8)
    x = tensor(rng.standard_normal((7, 3, 2)), device, grad=True)
    results = []
    for chunk_elements, fused in ((None, False), (2 * 3, True), (3 * 2 * 3, True)):   # B * H = 6
        if chunk_elements is not None:
            monkeypatch.setattr(lstm, "_CHUNK", chunk_elements)
        cell = nn.LSTMCell(2, 2, fused=fused, device=device, dtype=F64)
        randomize(cell, np.random.default_rng(3))
        out, (h, c) = unroll(cell, x, lengths=lengths)
        loss = (out * out).sum() + (h * c).sum()
        results.append([g.numpy() for g in tg.grad(loss, [x] + cell.parameters())])
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_kernel_cell_called_step_by_step_is_one_node_per_step_and_sees_new_parameters(device):
    """cell(x_t, h) of a cell with a kernel is one graph node; the program the cell keeps between
    calls is made anew when a parameter is replaced, so the replacement is what the next call uses."""
    rng = np.random.default_rng(2)
    cell = nn.LSTMCell(2, 3, device=device, dtype=F64)
    x = tensor(rng.standard_normal((2, 2)), device)
    h, c = cell(x)
    assert isinstance(h.grad_fn, trace_scan.Scan) and h.grad_fn is c.grad_fn
    reference = nn.LSTMCell(2, 3, fused=False, device=device, dtype=F64)
    reference.load_state_dict(cell.state_dict())
    np.testing.assert_allclose(h.numpy(), reference(x)[0].numpy(), rtol=1e-12)
    cell.weight_hh = nn.Parameter(tensor(rng.standard_normal((12, 3)), device))
    reference.load_state_dict(cell.state_dict())
    state = (h.detach(), c.detach())
    np.testing.assert_allclose(cell(x, state)[0].numpy(), reference(x, state)[0].numpy(), rtol=1e-12)
    loss = cell(x, state)[0].sum()
    loss.backward()
    assert cell.weight_hh.grad is not None
