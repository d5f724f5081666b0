"""Tree-structured networks: RecursiveNN, ChildSumTreeLSTM, NaryTreeLSTM and the Tree batch.

Each model is checked against finite differences in float64 and against a
recursive NumPy transcription of its docstring equations (Socher et al. 2011;
Tai, Socher & Manning 2015) on random trees and batches of trees. The
Child-Sum Tree-LSTM on a chain must be an LSTM run from the bottom leaf up, and
must not depend on the order of children; the evaluation must not recurse, so
a chain 5,000 nodes deep runs forward and backward under a recursion limit
barely above the test's own stack depth.
"""
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.nn.tree import ChildSumTreeLSTM, NaryTreeLSTM, RecursiveNN, Tree, TreeBatch
from helpers import hyp

MODELS = {"recursive": RecursiveNN, "child_sum": ChildSumTreeLSTM, "nary": NaryTreeLSTM}
ARITY = {"recursive": 2, "child_sum": None, "nary": 2}


# ----------------------------------------------------------------- helpers
@st.composite
def tree_shapes(draw, arity=None, max_nodes=7):
    """children[i]: the children of node i (node 0 is the root; each node hangs under an earlier one)."""
    n = draw(st.integers(1, max_nodes))
    picks = draw(st.lists(st.integers(0, 10**6), min_size=n - 1, max_size=n - 1))
    children = [[] for _ in range(n)]
    for i, pick in enumerate(picks, start=1):
        room = [j for j in range(i) if arity is None or len(children[j]) < arity]
        children[room[pick % len(room)]].append(i)
    return children


def build(children, values):
    """The Tree of a shape from ``tree_shapes``, built from the last node back (children come later)."""
    built = [None] * len(children)
    for i in reversed(range(len(children))):
        built[i] = Tree(values[i], [built[c] for c in children[i]])
    return built[0]


def random_values(children, input_size, rng, inner_none=False):
    return [None if inner_none and kids else rng.standard_normal(input_size) for kids in children]


def chain(values):
    """values[0] at the bottom leaf, values[-1] at the root; built without recursion."""
    node = Tree(values[0])
    for v in values[1:]:
        node = Tree(v, [node])
    return node


def make(kind, input_size, hidden_size, device, rng, scale=0.7, **kw):
    model = MODELS[kind](input_size, hidden_size, device=device, dtype=tg.float64, **kw)
    model.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in model.named_parameters()})
    return model


def params(model):
    return {name: p.numpy() for name, p in model.named_parameters()}


def states(result):
    output, state = result
    return [output] + (list(state) if isinstance(state, tuple) else [state])


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# ------------------------------------------- NumPy transcriptions of the equations
def ref_recursive(node, P, H, arity):
    """h = tanh(W_ih x + W_hh [h_1; ...; h_N] + b), missing children zero; returns {id: (h,)}."""
    out = {}

    def visit(n):
        kids = [visit(c)[0] for c in n.children] + [np.zeros(H)] * (arity - len(n.children))
        x = np.zeros(P["weight_ih"].shape[1]) if n.value is None else n.value
        out[id(n)] = (np.tanh(P["weight_ih"] @ x + P["weight_hh"] @ np.concatenate(kids) + P["bias"]),)
        return out[id(n)]
    visit(node)
    return out


def ref_child_sum(node, P, H):
    """Tai et al. (2015) eqs. 2-8, rows of W, U, b stacked i | o | u | f; returns {id: (h, c)}."""
    W, U, b = P["weight_ih"], P["weight_hh"], P["bias"]
    (Wi, Wo, Wu, Wf), (Ui, Uo, Uu, Uf), (bi, bo, bu, bf) = (np.split(a, 4) for a in (W, U, b))
    out = {}

    def visit(n):
        kids = [visit(c) for c in n.children]
        x = np.zeros(W.shape[1]) if n.value is None else n.value
        h_sum = sum((h for h, _ in kids), np.zeros(H))
        i = sigmoid(Wi @ x + Ui @ h_sum + bi)
        o = sigmoid(Wo @ x + Uo @ h_sum + bo)
        u = np.tanh(Wu @ x + Uu @ h_sum + bu)
        c = i * u + sum((sigmoid(Wf @ x + Uf @ h_k + bf) * c_k for h_k, c_k in kids), np.zeros(H))
        out[id(n)] = (o * np.tanh(c), c)
        return out[id(n)]
    visit(node)
    return out


def ref_nary(node, P, H, N):
    """Tai et al. (2015) eqs. 9-14 with U^(l) written out as blocks; returns {id: (h, c)}."""
    W, U, b = P["weight_ih"], P["weight_hh"], P["bias"]
    (Wi, Wf, Wo, Wu), (bi, bf, bo, bu) = np.split(W, 4), np.split(b, 4)

    def u_block(gate, l):                     # gate rows: i, f_1..f_N, o, u
        return U[gate * H:(gate + 1) * H, l * H:(l + 1) * H]

    out = {}

    def visit(n):
        kids = [visit(c) for c in n.children]
        kids += [(np.zeros(H), np.zeros(H))] * (N - len(kids))
        x = np.zeros(W.shape[1]) if n.value is None else n.value

        def recur(gate):
            return sum(u_block(gate, l) @ kids[l][0] for l in range(N))
        i = sigmoid(Wi @ x + recur(0) + bi)
        f = [sigmoid(Wf @ x + recur(1 + k) + bf) for k in range(N)]
        o = sigmoid(Wo @ x + recur(N + 1) + bo)
        u = np.tanh(Wu @ x + recur(N + 2) + bu)
        c = i * u + sum(f[l] * kids[l][1] for l in range(N))
        out[id(n)] = (o * np.tanh(c), c)
        return out[id(n)]
    visit(node)
    return out


def reference(kind, model, tree):
    P, H = params(model), model.hidden_size
    if kind == "recursive":
        return ref_recursive(tree, P, H, model.arity)
    if kind == "child_sum":
        return ref_child_sum(tree, P, H)
    return ref_nary(tree, P, H, model.arity)


def post_order(node):
    return [m for c in node.children for m in post_order(c)] + [node]


def lstm_chain(xs, P, H):
    """An LSTM over xs (T, I) from zero state with the Child-Sum gates: the Tree-LSTM on a chain."""
    (Wi, Wo, Wu, Wf), (Ui, Uo, Uu, Uf), (bi, bo, bu, bf) = (
        np.split(P[k], 4) for k in ("weight_ih", "weight_hh", "bias"))
    h, c, hs = np.zeros(H), np.zeros(H), []
    for x in xs:
        i, f = sigmoid(Wi @ x + Ui @ h + bi), sigmoid(Wf @ x + Uf @ h + bf)
        o, u = sigmoid(Wo @ x + Uo @ h + bo), np.tanh(Wu @ x + Uu @ h + bu)
        c = f * c + i * u
        h = o * np.tanh(c)
        hs.append(h)
    return np.array(hs), c


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind", list(MODELS))
@hyp(5)
@given(data=st.data())
def test_gradcheck_on_random_trees(device, kind, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    shapes = data.draw(st.lists(tree_shapes(ARITY[kind], max_nodes=5), min_size=1, max_size=2))
    model = make(kind, 2, 2, device, rng, bias=data.draw(st.booleans()))
    inputs, trees = [], []
    for children in shapes:
        values = [tg.tensor(v, dtype=tg.float64, device=device, requires_grad=True) if v is not None else None
                  for v in random_values(children, 2, rng, inner_none=kind != "child_sum")]
        inputs += [v for v in values if v is not None]
        trees.append(build(children, values))
    assert tg.gradcheck(lambda *args: tuple(states(model(trees))), (*inputs, *model.parameters()))


@pytest.mark.parametrize("kind", list(MODELS))
def test_gradgradcheck_on_an_uneven_forest(device, kind):
    """Second derivatives through the gathers and scatter-adds between levels (create_graph=True)."""
    rng = np.random.default_rng(4)
    model = make(kind, 1, 2, device, rng)
    x = [tg.tensor(rng.standard_normal(1), dtype=tg.float64, device=device, requires_grad=True) for _ in range(4)]
    forest = [Tree(x[0], [Tree(x[1], [Tree(x[2])]), Tree(x[3])]), Tree(x[2])]
    assert tg.gradgradcheck(lambda *args: tuple(states(model(forest))[1:]), (*x, *model.parameters()))


@pytest.mark.parametrize("kind", list(MODELS))
@hyp(10)
@given(data=st.data())
def test_matches_numpy_transcription_on_batches(device, kind, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    input_size, hidden = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    shapes = data.draw(st.lists(tree_shapes(ARITY[kind], max_nodes=12), min_size=1, max_size=4))
    inner_none = data.draw(st.booleans())
    trees = [build(c, random_values(c, input_size, rng, inner_none)) for c in shapes]
    model = make(kind, input_size, hidden, device, rng)
    got = [s.numpy() for s in states(model(trees))]
    refs = [reference(kind, model, t) for t in trees]
    want_output = np.array([refs[b][id(n)][0] for b, t in enumerate(trees) for n in post_order(t)])
    np.testing.assert_allclose(got[0], want_output, rtol=1e-10, atol=1e-12)
    for part, root_state in enumerate(got[1:]):
        want = np.array([refs[b][id(t)][part] for b, t in enumerate(trees)])
        np.testing.assert_allclose(root_state, want, rtol=1e-10, atol=1e-12)


def test_token_ids_pick_embedding_rows(device):
    """With vocab_size a node's input is its row of the embedding table."""
    rng = np.random.default_rng(1)
    model = make("nary", 3, 4, device, rng, vocab_size=6)
    ids = Tree(5, [Tree(2), Tree(4, [Tree(0), Tree(2)])])
    table = model.embedding.weight.numpy()
    vectors = Tree(table[5], [Tree(table[2]), Tree(table[4], [Tree(table[0]), Tree(table[2])])])
    ref = ref_nary(vectors, params(model), 4, 2)
    output, (h, c) = model(ids)
    np.testing.assert_allclose(output.numpy(), [ref[id(n)][0] for n in post_order(vectors)], rtol=1e-12)
    np.testing.assert_allclose(c.numpy()[0], ref[id(vectors)][1], rtol=1e-12)


@hyp(8)
@given(steps=st.integers(1, 12), input_size=st.integers(1, 3), hidden=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_child_sum_on_a_chain_is_an_lstm(device, steps, input_size, hidden, seed):
    rng = np.random.default_rng(seed)
    model = make("child_sum", input_size, hidden, device, rng)
    xs = rng.standard_normal((steps, input_size))
    output, (h, c) = model(chain(list(xs)))
    want_h, want_c = lstm_chain(xs, params(model), hidden)
    np.testing.assert_allclose(output.numpy(), want_h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.numpy()[0], want_c, rtol=1e-10, atol=1e-12)
    # the same as tg.nn.LSTM once the rows i | o | u | f are reordered to PyTorch's i | f | g | o
    lstm = tg.nn.LSTM(input_size, hidden, device=device, dtype=tg.float64)
    def order(a):
        return np.concatenate([np.split(a, 4)[k] for k in (0, 3, 2, 1)])
    P = params(model)
    lstm.load_state_dict({"weight_ih_l0": order(P["weight_ih"]), "weight_hh_l0": order(P["weight_hh"]),
                          "bias_ih_l0": order(P["bias"]), "bias_hh_l0": np.zeros(4 * hidden)})
    seq, (h_n, c_n) = lstm(tg.tensor(xs[:, None, :], dtype=tg.float64, device=device))
    np.testing.assert_allclose(h.numpy(), h_n.numpy()[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(output.numpy(), seq.numpy()[:, 0], rtol=1e-10, atol=1e-12)


@hyp(10)
@given(children=tree_shapes(None, max_nodes=10), seed=st.integers(0, 2**16))
def test_child_sum_ignores_the_order_of_children(device, children, seed):
    rng = np.random.default_rng(seed)
    model = make("child_sum", 2, 3, device, rng)
    values = random_values(children, 2, rng)
    shuffled = [list(rng.permutation(kids)) for kids in children]
    tree, twin = build(children, values), build(shuffled, values)
    out, (h, c) = model(tree)
    out_twin, (h_twin, c_twin) = model(twin)
    np.testing.assert_allclose(h.numpy(), h_twin.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c.numpy(), c_twin.numpy(), rtol=1e-12, atol=1e-14)
    # every node keeps its state: match the rows through the node values, which are all distinct
    def key(t):
        return [tuple(n.value) for n in t.nodes()]
    rows = {v: i for i, v in enumerate(key(twin))}
    np.testing.assert_allclose(out.numpy(), out_twin.numpy()[[rows[v] for v in key(tree)]], rtol=1e-12,
                               atol=1e-14)


def test_nary_depends_on_the_order_of_children(device):
    rng = np.random.default_rng(2)
    model = make("nary", 2, 3, device, rng)
    a, b = rng.standard_normal(2), rng.standard_normal(2)
    _, (h, _) = model(Tree(None, [Tree(a), Tree(b)]))
    _, (h_swapped, _) = model(Tree(None, [Tree(b), Tree(a)]))
    assert np.abs(h.numpy() - h_swapped.numpy()).max() > 1e-3


def _stack_depth():
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@pytest.mark.parametrize("kind", ["child_sum", "recursive"])
def test_chain_of_depth_5000_needs_no_recursion(device, kind):
    rng = np.random.default_rng(3)
    model = make(kind, 2, 3, device, rng, scale=0.5)
    xs = rng.standard_normal((5001, 2))
    bottom = tg.tensor(xs[0], dtype=tg.float64, device=device, requires_grad=True)
    tree = chain([bottom] + list(xs[1:]))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 120)        # far below the tree's depth
    try:
        assert tree.height() == 5000 and tree.size() == 5001
        output, state = model([tree])
        h = state[0] if isinstance(state, tuple) else state
        h.sum().backward()
    finally:
        sys.setrecursionlimit(old)
    assert output.shape == (5001, 3) and h.shape == (1, 3)
    if kind == "child_sum":
        np.testing.assert_allclose(output.numpy(), lstm_chain(xs, params(model), 3)[0], rtol=1e-9, atol=1e-12)
    assert bottom.grad is not None and np.isfinite(bottom.grad.numpy()).all()
    assert all(np.isfinite(p.grad.numpy()).all() and np.abs(p.grad.numpy()).max() > 0 for p in model.parameters())


def test_tree_batch_levels():
    """Levels hold the nodes of one height; rows map post-order to level order and back."""
    leaf = Tree(0)
    batch = TreeBatch([Tree(1, [Tree(2, [leaf]), leaf, Tree(3)]), leaf])
    assert batch.num_trees == 2 and batch.num_nodes == 6 and batch.max_children == 3
    # post-order: 0 2 1 0 3 1 | 0  -> heights 0 1 0 0 2 | 0
    assert batch.sizes == [4, 1, 1]
    assert [batch.values[r] for r in batch.output_rows] == [0, 2, 0, 3, 1, 0]
    assert [batch.values[r] for r in batch.root_rows] == [1, 0]


# ------------------------------------------------------------------ errors
def test_binary_models_reject_a_node_with_three_children(device):
    tree = Tree(None, [Tree(np.zeros(2)), Tree(np.zeros(2)), Tree(np.zeros(2))])
    for kind in ("recursive", "nary"):
        model = MODELS[kind](2, 3, device=device, dtype=tg.float64)
        with pytest.raises(ValueError, match=r"node 3 \(post-order\) of tree 0 has 3 children, expected at most 2"):
            model([tree])
    assert ChildSumTreeLSTM(2, 3, device=device, dtype=tg.float64)([tree])[0].shape == (4, 3)


def test_wrong_input_size_names_the_node(device):
    model = ChildSumTreeLSTM(2, 3, device=device, dtype=tg.float64)
    tree = Tree(np.zeros(2), [Tree(np.zeros(2)), Tree(np.zeros(3))])
    with pytest.raises(ValueError, match=r"node 1 \(post-order\) of tree 0 has an input of shape \(3,\), "
                                         r"expected \(2,\)"):
        model(tree)


def test_bad_values_and_arguments(device):
    plain = RecursiveNN(2, 3, device=device)
    with pytest.raises(TypeError, match="the number 4 as its value.*pass vocab_size"):
        plain(Tree(4))
    embedded = RecursiveNN(2, 3, vocab_size=5, device=device)
    with pytest.raises(TypeError, match="vocab_size takes token ids"):
        embedded(Tree(np.zeros(2)))
    with pytest.raises(ValueError, match=r"token id 5, expected one in \[0, 5\)"):
        embedded(Tree(1, [Tree(5)]))
    with pytest.raises(ValueError, match="got no trees"):
        plain([])
    with pytest.raises(TypeError, match=r"trees\[1\] is a int, expected a Tree"):
        plain([Tree(np.zeros(2)), 3])
    with pytest.raises(TypeError, match="child 0 is a int, expected a Tree"):
        Tree(1, [2])
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        NaryTreeLSTM(2, 0)
    with pytest.raises(ValueError, match="arity must be a positive int, got 0"):
        NaryTreeLSTM(2, 3, arity=0)


def test_a_cycle_is_an_error():
    a = Tree(1)
    b = Tree(2, [a])
    a.children = (b,)
    with pytest.raises(ValueError, match="contains itself"):
        TreeBatch(b)
