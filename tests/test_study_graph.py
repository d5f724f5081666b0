"""The unrolled-graph view: DOT export with (layer, step) clusters, rendering, the per-step table.

The DOT text is read back with a small parser written here (and, where the
Graphviz ``dot`` program is installed, by ``dot`` itself). Op counts per step are
checked against an independent walk of one step built alone on leaf tensors;
saved bytes of fused steps against a count by hand of what each step saves.
"""
import re
import shutil
import subprocess
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.study import graph as G
from helpers import hyp


# ----------------------------------------------------------------- helpers
def make_cell(kind, input_size, hidden_size, fused, device):
    cls = {"rnn": tg.nn.RNNCell, "lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind]
    return cls(input_size, hidden_size, fused=fused, device=device, dtype=tg.float64)


def make_layer(kind, input_size, hidden_size, fused, device):
    cls = {"rnn": tg.nn.RNN, "lstm": tg.nn.LSTM, "gru": tg.nn.GRU}[kind]
    return cls(input_size, hidden_size, fused=fused, device=device, dtype=tg.float64)


def leaf(shape, device, grad=True, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape)
    return tg.tensor(data, dtype=tg.float64, device=device, requires_grad=grad)


def zero_state(kind, batch, hidden, device):
    z = tg.zeros(batch, hidden, dtype=tg.float64, device=device)
    return (z, z) if kind == "lstm" else z


def first(state):
    return state[0] if isinstance(state, tuple) else state


def loop(cells, x, kind):
    """A step-by-step stacked loop; returns the per-layer state lists [s0, s1, ..., sT] and a loss."""
    states = [[zero_state(kind, x.shape[1], c.hidden_size, x.device)] for c in cells]
    for t in range(x.shape[0]):
        inp = x[t]
        for layer, cell in enumerate(cells):
            states[layer].append(cell(inp, states[layer][-1]))
            inp = first(states[layer][-1])
    loss = tg.stack([first(s) for s in states[-1][1:]]).sum()
    return states, loss


def project_and_step(cell, x):
    """``unroll``'s structure, step by step: one projection of all steps, then ``cell.step`` per step.
    Returns the stacked outputs (the stacked-Tensor form of states) and a loss."""
    state, outs = cell.initial_state(x.shape[1], x), []
    for p in tg.unbind(cell.project(x), axis=0):
        state = cell.step(p, state)
        outs.append(first(state))
    out = tg.stack(outs)
    return out, out.sum()


def walk_nodes(outputs):
    """Every recorded node behind ``outputs``: a plain set-based walk, independent of graph.py."""
    seen, todo = set(), [t.grad_fn for t in outputs if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += [i.grad_fn for i in node.inputs if isinstance(i, tg.Tensor) and i.grad_fn is not None]
    return seen


def op_names(outputs):
    return Counter(type(n).__name__ for n in walk_nodes(outputs))


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_dot(text):
    """Nodes {id: (attrs, enclosing clusters)}, edges [(tail, head, attrs)], clusters {name: parent or None}.

    Raises ValueError on unbalanced braces, a node declared twice or a line it cannot read."""
    bare = _QUOTED.sub('""', text)
    if bare.count("{") != bare.count("}"):
        raise ValueError("unbalanced braces")
    nodes, edges, clusters, open_ = {}, [], {}, []
    lines = text.strip().splitlines()
    if not re.match(r'digraph "[^"]*" \{$', lines[0]) or lines[-1] != "}":
        raise ValueError("not one digraph")
    for line in (ln.strip() for ln in lines[1:-1]):
        if m := re.match(r"subgraph (cluster_\w+) \{$", line):
            clusters[m[1]] = open_[-1] if open_ else None
            open_.append(m[1])
        elif line == "}":
            if not open_:
                raise ValueError("a } closes nothing")
            open_.pop()
        elif m := re.match(r"(\w+) -> (\w+)(?: \[(.*)\])?;$", line):
            edges.append((m[1], m[2], m[3] or ""))
        elif m := re.match(r"(\w+) \[(.*)\];$", line):
            if m[1] in ("node", "edge", "graph"):
                continue
            if m[1] in nodes:
                raise ValueError(f"node {m[1]} declared twice")
            nodes[m[1]] = (m[2], list(open_))
        elif not re.match(r"(\w+=[^;]*; ?)+$", line):
            raise ValueError(f"cannot read line {line!r}")
    if open_:
        raise ValueError("a subgraph is not closed")
    return nodes, edges, clusters


def label(attrs):
    return re.search(r'label="((?:[^"\\]|\\.)*)"', attrs)[1].replace("\\n", "\n")


def step_cluster(node):
    """The innermost step cluster of a parsed node, or None."""
    inner = [c for c in node[1] if "_t" in c]
    return inner[-1] if inner else None


# ----------------------------------------------------------------- DOT structure
@hyp(8)
@given(steps=st.integers(1, 4), layers=st.integers(1, 2), kind=st.sampled_from(["rnn", "lstm", "gru"]),
       fused=st.booleans(), as_dict=st.booleans())
def test_dot_is_well_formed_with_one_cluster_per_layer_and_step(device, steps, layers, kind, fused, as_dict):
    cells = [make_cell(kind, 3 if k == 0 else 2, 2, fused, device) for k in range(layers)]
    x = leaf((steps, 2, 3), device, grad=False)
    states, loss = loop(cells, x, kind)
    given_states = ({(k, t - 1): s for k, seq in enumerate(states) for t, s in enumerate(seq)}
                    if as_dict else states)
    nodes, edges, clusters = parse_dot(G.to_dot(loss, given_states))

    for tail, head, _ in edges:
        assert tail in nodes and head in nodes
    expected = {f"cluster_l{k}_t{t}": f"cluster_l{k}" for k in range(layers) for t in range(steps)}
    expected.update({f"cluster_l{k}": None for k in range(layers)})
    assert clusters == expected
    everything = walk_nodes([loss])
    leaves = {id(i) for n in everything for i in n.inputs if isinstance(i, tg.Tensor) and i.grad_fn is None}
    assert len(nodes) == len(everything) + len(leaves)

    # each layer's step cluster holds exactly the ops of that cell's step, built alone
    per_cluster = Counter(step_cluster(n) for n in nodes.values())
    for k, cell in enumerate(cells):
        alone = walk_nodes(parts(cell(leaf((2, cell.input_size), device, grad=k > 0),     # as its input in the loop
                                      tuple(leaf((2, 2), device, seed=i) for i in range(2)) if kind == "lstm"
                                      else leaf((2, 2), device))))
        for t in range(steps):
            assert per_cluster[f"cluster_l{k}_t{t}"] == len(alone)


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz dot program is not installed")
def test_graphviz_dot_reads_the_text(tmp_path):
    cell = tg.nn.LSTMCell(3, 2, fused=False, dtype=tg.float64)
    states, loss = loop([cell], leaf((3, 2, 3), "cpu", grad=False), "lstm")
    source = tmp_path / "g.dot"
    source.write_text(G.to_dot(loss, states[0], params=cell))
    run = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    assert run.stdout.count('class="cluster"') == 1 + 3


@pytest.mark.parametrize("fused", [True, False])
def test_each_parameter_is_drawn_once_and_fans_out_across_steps(device, fused):
    steps = 4
    x = leaf((steps, 2, 3), device, grad=False)
    if not fused:                        # a step-by-step loop of the cell's own step
        model = make_cell("rnn", 3, 2, False, device)
        out, loss = project_and_step(model, x)
        prefix = ""
    else:                                # the layer itself: one whole-sequence node, drawn from its tape
        model = make_layer("rnn", 3, 2, True, device)
        out, _ = model(x)
        loss, prefix = out.sum(), "_l0"
    nodes, edges, _ = parse_dot(G.to_dot(loss, out, params=model))
    for name, p in model.named_parameters():
        drawn = [i for i, n in nodes.items() if label(n[0]).split("\n")[0] == name]
        assert len(drawn) == 1, name
        assert label(nodes[drawn[0]][0]).split("\n")[1] == str(p.shape)
        heads = {head for tail, head, _ in edges if tail == drawn[0]}
        if name == "weight_hh" + prefix and fused:   # W^T is hoisted out of the loop: one transpose, used by every step
            assert len(heads) == 1 and label(nodes[next(iter(heads))][0]).startswith("Transpose")
            heads = {head for tail, head, _ in edges if tail in heads}
        targets = {step_cluster(nodes[head]) for head in heads}
        if name == "weight_hh" + prefix:  # one use per step, in every step's cluster
            assert targets == {f"cluster_l0_t{t}" for t in range(steps)}
        else:                            # the one input projection of all steps, in no cluster
            assert targets == {None}


# ----------------------------------------------------------------- the per-step table
@hyp(8)
@given(steps=st.integers(1, 4), kind=st.sampled_from(["rnn", "lstm", "gru"]), fused=st.booleans(),
       layer_form=st.booleans())
def test_ops_per_step_equal_an_independent_walk_of_one_step(device, steps, kind, fused, layer_form):
    batch, hidden = 2, 3
    x = leaf((steps, batch, 2), device, grad=False)
    cell = make_cell(kind, 2, hidden, fused, device)
    state = tuple(leaf((batch, hidden), device, seed=i) for i in range(2 if kind == "lstm" else 1))
    state = state if kind == "lstm" else state[0]
    if layer_form:                       # unroll's structure, only h listed; the step is cell.step(p, state)
        assume(steps > 1)                # one step: the projection of all steps joins step 0 (rule 4)
        states, root = project_and_step(cell, x)
        alone = op_names(parts(cell.step(leaf((batch, len(cell.gates) * hidden), device, seed=5), state)))
    else:                                # a step-by-step loop: the step is cell(x_t, state)
        (states,), root = loop([cell], x, kind)
        alone = op_names(parts(cell(leaf((batch, 2), device, grad=False), state)))

    graph = G.unrolled_graph(root, states)
    for t in range(steps):
        assert Counter(type(n).__name__ for n in graph.members((0, t))) == alone
    table, costs = G.summary(root, states)
    assert [costs[(0, t)].ops for t in range(steps)] == [sum(alone.values())] * steps
    assert sum(c.ops for c in costs.values()) == len(walk_nodes([root]))
    assert f"{sum(c.ops for c in costs.values()):,}" in table.splitlines()[-1]


@hyp(6)
@given(batch=st.integers(1, 3), hidden=st.integers(1, 4), steps=st.integers(1, 4))
def test_saved_bytes_of_an_expanded_layer_match_a_hand_count(device, batch, hidden, steps):
    """A whole-sequence layer drawn from its tape: per step p[t], then the cell's composed step, with
    W_hh^T hoisted out of the loop (counted at step 0, where it is first saved)."""
    x = leaf((steps, batch, 2), device, grad=False)
    item = 8                              # float64
    bh, hh = batch * hidden, hidden * hidden
    out, _ = make_layer("rnn", 2, hidden, True, device)(x)
    _, costs = G.summary(out.sum(), out)
    # GetItem p[t]; MatMul saves (h_{t-1}, W^T); Add; Tanh saves h_t. h_0 and W^T count at step 0
    assert costs[(0, 0)] == (4, (2 * bh + hh) * item, 0)
    assert all(costs[(0, t)] == (4, bh * item, 0) for t in range(1, steps))

    out, _ = make_layer("lstm", 2, hidden, True, device)(x)
    _, costs = G.summary(out.sum(), out)
    # GetItem, MatMul (h_{t-1}, W^T (H, 4H)), Add, Split, 3 Sigmoid and a Tanh (their outputs), Mul f c
    # (c_{t-1}, first saved here), Mul i g, Add, Tanh (tanh c_t), Mul o tanh(c_t): 13 ops, 7 (B, H) arrays;
    # at step 0 h_0 and c_0 are one zeros array, counted once
    assert costs[(0, 0)] == (13, (6 * bh + 4 * hh) * item, 0)
    assert all(costs[(0, t)] == (13, 7 * bh * item, 0) for t in range(1, steps))


def test_a_20000_step_chain_walks_without_recursion():
    steps = 20_000
    w = tg.tensor([[0.5]], dtype=tg.float64, requires_grad=True)
    states = [tg.zeros(1, 1, dtype=tg.float64)]
    for _ in range(steps):
        states.append((states[-1] * w).tanh())
    loss = states[-1].sum()
    start = time.perf_counter()
    _, costs = G.summary(loss, states)
    nodes, edges, clusters = parse_dot(G.to_dot(loss, states, params={"w": w}))
    assert time.perf_counter() - start < 20
    assert all(costs[(0, t)].ops == 2 for t in range(steps)) and costs[None].ops == 1
    assert len(clusters) == steps + 1
    assert sum(1 for tail, _, _ in edges if label(nodes[tail][0]).startswith("w\n")) == steps


# ----------------------------------------------------------------- gradients on edges
def test_edges_show_the_norm_of_retained_gradients(device):
    cell = make_cell("rnn", 2, 3, False, device)
    states, loss = loop([cell], leaf((4, 2, 2), device, grad=False), "rnn")
    for s in states[0][1:]:
        s.retain_grad()
    loss.backward(retain_graph=True)
    expected = Counter()
    for t, s in enumerate(states[0][1:]):
        uses = 2 if t < 3 else 1         # the next step's matmul and the stack; the last only the stack
        expected[f"{np.linalg.norm(s.grad.numpy()):.2e}"] += uses
    weight = f"|grad| = {np.linalg.norm(cell.weight_hh.grad.numpy()):.2e}"

    from_attr = G.to_dot(loss, states[0], params=cell, grads=True)
    from_dict = G.to_dot(loss, states[0], params=cell, grads={s: s.grad for s in states[0][1:]}
                         | {cell.weight_hh: cell.weight_hh.grad})
    for dot in (from_attr, from_dict):
        nodes, edges, _ = parse_dot(dot)
        shown = Counter(label(a) for _, _, a in edges if "label" in a)
        assert shown == expected
        assert any(label(n[0]) == f"weight_hh\n(3, 3)\n{weight}" for n in nodes.values())
    shown = [(float(label(a)), float(re.search(r'color="([\d.]+)', a)[1])) for _, _, a in parse_dot(from_attr)[1] if a]
    largest, smallest = max(n for n, _ in shown), min(n for n, _ in shown)
    assert min(h for n, h in shown if n == largest) == 0.0       # two norms may print alike: the largest is red
    assert max(h for n, h in shown if n == smallest) == 0.66     # and the smallest blue


# ----------------------------------------------------------------- errors
def test_a_freed_graph_raises_and_retain_graph_keeps_it(device):
    out, _ = make_layer("rnn", 2, 3, False, device)(leaf((3, 2, 2), device, grad=False))
    loss = out.sum()
    loss.backward(retain_graph=True)
    assert "cluster_l0_t2" in G.to_dot(loss, out)
    loss.backward()
    for call in (lambda: G.to_dot(loss, out), lambda: G.summary(loss), lambda: G.unrolled_graph(loss, out)):
        with pytest.raises(RuntimeError, match="freed.*retain_graph=True"):
            call()


def test_bad_arguments_raise_naming_what_was_expected():
    cell = tg.nn.RNNCell(2, 2, dtype=tg.float64)
    states, loss = loop([cell], leaf((2, 1, 2), "cpu", grad=False), "rnn")
    states = states[0]
    other_states, _ = loop([cell], leaf((2, 1, 2), "cpu", grad=False), "rnn")
    cases = [
        (TypeError, "expected a Tensor", dict(root=3.0)),
        (ValueError, "has no graph", dict(root=cell.weight_hh)),
        (ValueError, "empty sequence", dict(root=[])),
        (TypeError, "expected a list", dict(states=7)),
        (TypeError, "pairs of ints", dict(states={(0,): states[1]})),
        (ValueError, "out of range", dict(states={(0, -2): states[1]})),
        (TypeError, "expected a Tensor or a tuple", dict(states=[states[0], [states[1]], 3])),
        (ValueError, "at least one step", dict(states=[states[0]])),
        (ValueError, "made by tg.stack", dict(states=states[1] * 2.0)),
        (ValueError, "not in the graph behind the root", dict(states=other_states[0])),
        (TypeError, "params", dict(params=[cell.weight_hh])),
        (TypeError, r"params\['w'\]", dict(params={"w": 1.0})),
        (TypeError, "grads", dict(grads="yes")),
    ]
    for error, message, kwargs in cases:
        args = {"root": loss, "states": states} | kwargs
        with pytest.raises(error, match=message):
            G.to_dot(**args)
    with pytest.raises(TypeError, match="DOT text"):
        G.render(b"digraph {}", "g.svg")
    with pytest.raises(ValueError, match=r"'\.jpg'.*\.svg"):
        G.render("digraph {}", "g.jpg")


# ----------------------------------------------------------------- rendering
def test_render_draws_with_the_dot_program_else_writes_dot(tmp_path, monkeypatch):
    states, loss = loop([tg.nn.RNNCell(2, 2, dtype=tg.float64)], leaf((2, 1, 2), "cpu", grad=False), "rnn")
    dot = G.to_dot(loss, states)
    fake = tmp_path / "fake-dot"            # a stand-in for Graphviz: prints its format and echoes its input
    fake.write_text('#!/bin/sh\nprintf "<%s>" "$1"; cat\n')
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "dot" else None)
    assert G.render(dot, tmp_path / "a.png") == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == f"<-Tpng>{dot}".encode()
    assert G.render(dot, tmp_path / "b") == str(tmp_path / "b.svg")
    assert (tmp_path / "b.svg").read_bytes().startswith(b"<-Tsvg>")

    broken = tmp_path / "broken-dot"
    broken.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2; exit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(broken))
    with pytest.raises(RuntimeError, match="syntax error"):
        G.render(dot, tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()

    monkeypatch.setattr(shutil, "which", lambda name: None)               # no dot program
    with pytest.warns(RuntimeWarning, match="`dot` program"):
        assert G.render(dot, tmp_path / "c.svg") == str(tmp_path / "c.dot")
    assert (tmp_path / "c.dot").read_text() == dot and not (tmp_path / "c.svg").exists()
    assert G.render(dot, tmp_path / "e.dot") == str(tmp_path / "e.dot")   # asked for .dot: no warning
