"""Trees over sequences: ``TreeNetwork.over_sequence`` and ``balanced_tree``.

``over_sequence`` runs the balanced binary tree over a (T, B, I) batch level by
level with reshapes in place of a general tree's gathers; it must equal the
same trees built node by node with ``Tree`` and run by the general evaluation,
in value and in gradient, for every tree model, every T (powers of two or not)
and batch size, and pass finite differences in float64. The tree itself must
have height ceil(log2 T), keep the positions in order, and put every leaf at
depth ceil(log2 T) or one less.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.nn.tree import ChildSumTreeLSTM, NaryTreeLSTM, RecursiveNN, Tree, balanced_tree, leaf_depths
from helpers import hyp

MODELS = {"recursive": RecursiveNN, "child_sum": ChildSumTreeLSTM, "nary": NaryTreeLSTM}


def make(kind, input_size, hidden_size, device, seed, **kw):
    rng = np.random.default_rng(seed)
    model = MODELS[kind](input_size, hidden_size, device=device, dtype=tg.float64, **kw)
    model.load_state_dict({name: 0.7 * rng.standard_normal(p.shape) for name, p in model.named_parameters()})
    return model


def parts(result):
    """output and every part of the roots' state, as a flat list of tensors."""
    output, state = result
    return [output] + (list(state) if isinstance(state, tuple) else [state])


def hand_built(model, x):
    """The same computation through the general API: one Tree per sequence, leaves x[t, b] (tensors)."""
    steps, batch = x.shape[:2]
    trees = [balanced_tree(steps, [x[t, b] for t in range(steps)]) for b in range(batch)]
    output, state = model(trees)
    nodes = 2 * steps - 1
    output = output.reshape(batch, nodes, model.hidden_size).transpose(1, 0, 2)     # tree after tree -> (N, B, H)
    return output, state


def leaves_in_order(tree):
    """The leaf values, left to right, and every inner node's number of children, walked without recursion."""
    leaves, arities, stack = [], [], [tree]
    while stack:
        node = stack.pop()
        if node.children:
            arities.append(len(node.children))
            stack.extend(reversed(node.children))
        else:
            leaves.append(node.value)
    return leaves, arities


def depths(tree):
    """Each leaf's depth, left to right."""
    found, stack = [], [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.children:
            stack.extend((c, depth + 1) for c in reversed(node.children))
        else:
            found.append(depth)
    return found


# --------------------------------------------------------------- the tree's shape
@hyp()
@given(length=st.integers(1, 300))
def test_balanced_tree_is_complete_and_keeps_the_order(length):
    tree = balanced_tree(length)
    leaves, arities = leaves_in_order(tree)
    assert leaves == list(range(length))
    assert all(a == 2 for a in arities) and tree.size() == 2 * length - 1
    height = math.ceil(math.log2(length))
    assert tree.height() == height
    got = depths(tree)
    assert got == list(leaf_depths(length))
    assert set(got) <= {height, height - 1}
    assert all(n.value is None for n in tree.nodes() if n.children)


def test_small_trees_by_hand():
    def show(node):
        return str(node.value) if not node.children else "(" + " ".join(show(c) for c in node.children) + ")"
    assert show(balanced_tree(1)) == "0"
    assert show(balanced_tree(3)) == "((0 1) 2)"
    assert show(balanced_tree(5)) == "(((0 1) 2) (3 4))"
    assert show(balanced_tree(6, list("abcdef"))) == "(((a b) (c d)) (e f))"
    assert show(balanced_tree(8)) == "(((0 1) (2 3)) ((4 5) (6 7)))"


# ---------------------------------------------------- equal to the hand-built tree
@pytest.mark.parametrize("kind", list(MODELS))
@hyp(12)
@given(steps=st.integers(1, 13), batch=st.integers(1, 3), input_size=st.integers(1, 3),
       hidden=st.integers(1, 3), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_equals_the_hand_built_tree_in_value_and_gradient(device, kind, steps, batch, input_size, hidden, bias, seed):
    model = make(kind, input_size, hidden, device, seed, bias=bias)
    rng = np.random.default_rng(seed + 1)
    data = rng.standard_normal((steps, batch, input_size))
    results, grads = [], []
    for run in (lambda x: model.over_sequence(x), lambda x: hand_built(model, x)):
        x = tg.tensor(data, dtype=tg.float64, device=device, requires_grad=True)
        model.zero_grad()
        got = parts(run(x))
        weights = [tg.tensor(np.random.default_rng(seed + 2 + k).standard_normal(g.shape), dtype=tg.float64,
                             device=device) for k, g in enumerate(got)]
        sum((g * w).sum() for g, w in zip(got, weights)).backward()
        results.append([g.numpy() for g in got])
        grads.append([x.grad] + [p.grad for p in model.parameters()])     # weight_hh gets none when T = 1
    for fast, slow in zip(*results):
        assert fast.shape == slow.shape
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-14)
    for fast, slow in zip(*grads):
        assert (fast is None) == (slow is None)
        if fast is not None:
            np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-10, atol=1e-12)


def test_token_ids_equal_their_embedding_rows(device):
    model = make("nary", 3, 4, device, seed=5, vocab_size=7)
    ids = np.random.default_rng(6).integers(0, 7, (6, 2))
    output, (h, c) = model.over_sequence(tg.tensor(ids, device=device))
    plain = NaryTreeLSTM(3, 4, device=device, dtype=tg.float64)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("embedding")})
    vectors = tg.tensor(model.embedding.weight.numpy()[ids], dtype=tg.float64, device=device)
    want_output, (want_h, want_c) = plain.over_sequence(vectors)
    np.testing.assert_allclose(output.numpy(), want_output.numpy(), rtol=1e-13)
    np.testing.assert_allclose(c.numpy(), want_c.numpy(), rtol=1e-13)


def test_wider_nary_model_sees_zeros_for_its_third_child(device):
    """A ternary model over the binary tree: the missing third child counts as zeros, as in the general API."""
    model = make("nary", 2, 3, device, seed=7, arity=3)
    x = tg.tensor(np.random.default_rng(8).standard_normal((5, 2, 2)), dtype=tg.float64, device=device)
    for fast, slow in zip(parts(model.over_sequence(x)), parts(hand_built(model, x))):
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_gradcheck(kind, steps):
    model = make(kind, 2, 2, "cpu", seed=steps)
    x = tg.tensor(np.random.default_rng(steps).standard_normal((steps, 2, 2)), dtype=tg.float64,
                  requires_grad=True)
    assert tg.gradcheck(lambda *args: tuple(parts(model.over_sequence(args[0]))), (x, *model.parameters()))


def test_every_leaf_reaches_the_root_of_a_long_sequence():
    """T = 1000: 10 levels; the root's gradient reaches every position."""
    model = make("nary", 2, 3, "cpu", seed=9)
    x = tg.tensor(np.random.default_rng(9).standard_normal((1000, 2, 2)), dtype=tg.float64, requires_grad=True)
    output, (h, c) = model.over_sequence(x)
    assert output.shape == (1999, 2, 3) and h.shape == (2, 3)
    np.testing.assert_array_equal(output.numpy()[-1], h.numpy())       # the root comes last in post-order
    h.sum().backward()
    assert (np.abs(x.grad.numpy()).sum(axis=2) > 0).all()


# ------------------------------------------------------------------------ errors
def test_bad_inputs_are_named(device):
    model = NaryTreeLSTM(2, 3, device=device)
    with pytest.raises(TypeError, match=r"NaryTreeLSTM.over_sequence: input must be a tinygrad_rnn Tensor"):
        model.over_sequence(np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match=r"input has 2 dims, expected 3 \(seq, batch, feature\)"):
        model.over_sequence(tg.zeros(3, 2, device=device))
    with pytest.raises(ValueError, match="input has 4 features, expected input_size=2"):
        model.over_sequence(tg.zeros(3, 1, 4, device=device))
    with pytest.raises(ValueError, match="has no time steps"):
        model.over_sequence(tg.zeros(0, 1, 2, device=device))
    with pytest.raises(TypeError, match="input is float64 but the parameters are float32"):
        model.over_sequence(tg.zeros(3, 1, 2, dtype=tg.float64, device=device))
    with pytest.raises(ValueError, match=r"takes at most 1 \(build it with arity >= 2\)"):
        RecursiveNN(2, 3, arity=1, device=device).over_sequence(tg.zeros(3, 1, 2, device=device))
    embedded = NaryTreeLSTM(2, 3, vocab_size=5, device=device)
    with pytest.raises(ValueError, match=r"token ids of shape \(seq, batch\) and an integer dtype"):
        embedded.over_sequence(tg.zeros(3, 1, 2, device=device))


def test_bad_lengths_and_values():
    for length in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match="balanced_tree: length must be a positive int"):
            balanced_tree(length)
    with pytest.raises(ValueError, match="got 2 values for 3 leaves"):
        balanced_tree(3, [Tree(1), Tree(2)])
    with pytest.raises(ValueError, match="leaf_depths: length must be a positive int"):
        leaf_depths(0)
