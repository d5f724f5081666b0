"""nn.Attention: the four scoring functions against their equations written out in
NumPy, gradients (first and second order) against finite differences in float64,
exact masking of padded positions, prepared memories, and input checks."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

KINDS = ["bahdanau", "luong_dot", "luong_general", "luong_concat"]


# ----------------------------------------------------------------- helpers
@st.composite
def cases(draw, max_batch=3, max_len=5, max_size=3, mask=None):
    """Sizes, an optional mask (every row with at least one True, not necessarily a prefix) and a seed."""
    batch = draw(st.integers(1, max_batch))
    length = draw(st.integers(1, max_len))
    with_mask = draw(st.booleans()) if mask is None else mask
    m = None
    if with_mask:
        m = np.array(draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length),
                                   min_size=batch, max_size=batch)), dtype=bool).reshape(batch, length)
        for b in range(batch):
            if not m[b].any():
                m[b, draw(st.integers(0, length - 1))] = True
    return dict(batch=batch, length=length, query_size=draw(st.integers(1, max_size)),
                key_size=draw(st.integers(1, max_size)), attn_size=draw(st.none() | st.integers(1, max_size)),
                mask=m, seed=draw(st.integers(0, 2**16)))


FULL = dict(batch=3, length=4, query_size=2, key_size=3, attn_size=2,
            mask=np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], dtype=bool), seed=7)


def t64(a, device, grad=False):
    return tg.tensor(np.asarray(a, dtype=np.float64), dtype=tg.float64, device=device, requires_grad=grad)


def build(kind, case, device, scale=1.0):
    """The module (float64, random parameters), query, keys and mask (or None) as arrays."""
    q_size = case["key_size"] if kind == "luong_dot" else case["query_size"]
    rng = np.random.default_rng(case["seed"] + 101 * KINDS.index(kind))
    attn = tg.nn.Attention(q_size, case["key_size"], kind, attn_size=case["attn_size"], device=device,
                           dtype=tg.float64)
    attn.load_state_dict({n: scale * rng.standard_normal(p.shape) for n, p in attn.named_parameters()})
    q = rng.standard_normal((case["batch"], q_size))
    k = rng.standard_normal((case["batch"], case["length"], case["key_size"]))
    return attn, q, k, case["mask"]


def mask_tensor(mask, device):
    return None if mask is None else tg.tensor(mask, device=device)


def reference(kind, params, q, k, mask):
    """The module docstring's equations in plain NumPy: scores, softmax over the valid positions, context."""
    if kind == "luong_dot":
        scores = np.einsum("bsh,bh->bs", k, q)
    elif kind == "luong_general":
        scores = np.einsum("bsh,hq,bq->bs", k, params["weight"], q)
    else:   # additive: v^T tanh(W_q q + W_k k), the concat form with W split in two
        hidden = np.tanh(np.einsum("ah,bsh->bsa", params["weight_key"], k)
                         + np.einsum("aq,bq->ba", params["weight_query"], q)[:, None, :])
        scores = hidden @ params["v"]
    valid = np.ones(scores.shape, dtype=bool) if mask is None else mask
    shifted = np.where(valid, scores - np.max(np.where(valid, scores, -np.inf), axis=1, keepdims=True), -np.inf)
    e = np.exp(shifted)
    weights = e / e.sum(axis=1, keepdims=True)
    context = np.einsum("bs,bsh->bh", weights, k)
    return context, weights


def assert_close(got, expected, rtol=1e-10, atol=1e-12, msg=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (msg, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=msg)


# ----------------------------------------------------------------- values
@pytest.mark.parametrize("kind", KINDS)
@hyp()
@given(case=cases())
@example(case=FULL)
@example(case=dict(FULL, mask=None))
def test_values_match_equations(device, kind, case):
    attn, q, k, mask = build(kind, case, device)
    context, weights = attn(t64(q, device), t64(k, device), mask_tensor(mask, device))
    assert context.shape == (case["batch"], case["key_size"])
    assert weights.shape == (case["batch"], case["length"])
    assert context.dtype == tg.float64 and weights.dtype == tg.float64
    params = {n: p.numpy() for n, p in attn.named_parameters()}
    ref_context, ref_weights = reference(kind, params, q, k, mask)
    assert_close(weights.numpy(), ref_weights, msg="weights")
    assert_close(context.numpy(), ref_context, msg="context")


def test_parameters_per_kind(device):
    names = {kind: {n: p.shape for n, p in tg.nn.Attention(3, 4 if kind != "luong_dot" else 3, kind, attn_size=5,
                                                           device=device, dtype=tg.float64).named_parameters()}
             for kind in KINDS}
    assert names["luong_dot"] == {}
    assert names["luong_general"] == {"weight": (4, 3)}
    for kind in ("bahdanau", "luong_concat"):
        assert names[kind] == {"weight_query": (5, 3), "weight_key": (5, 4), "v": (5,)}
    default = tg.nn.Attention(3, 4, "bahdanau", device=device, dtype=tg.float64)
    assert default.attn_size == 4 and default.v.shape == (4,)


@pytest.mark.parametrize("kind", KINDS)
@hyp(10)
@given(case=cases(max_batch=4, max_len=6))
def test_weights_are_a_distribution_over_valid_positions(device, kind, case):
    attn, q, k, mask = build(kind, case, device, scale=2.0)
    context, weights = attn(t64(q, device), t64(k, device), mask_tensor(mask, device))
    w = weights.numpy()
    assert np.all(w >= 0.0)
    assert_close(w.sum(axis=1), np.ones(case["batch"]), rtol=0, atol=1e-12)
    if mask is not None:
        assert np.all(w[~mask] == 0.0)
    # the context is a convex combination of the keys: inside their per-feature range
    valid = np.ones(w.shape, dtype=bool) if mask is None else mask
    lo = np.where(valid[..., None], k, np.inf).min(axis=1)
    hi = np.where(valid[..., None], k, -np.inf).max(axis=1)
    c = context.numpy()
    assert np.all(c >= lo - 1e-12) and np.all(c <= hi + 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_large_scores_do_not_overflow(device, kind):
    attn, q, k, mask = build(kind, FULL, device, scale=30.0)
    q, k = 1e3 * q, 1e3 * k
    context, weights = attn(t64(q, device), t64(k, device), mask_tensor(mask, device))
    w = weights.numpy()
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(context.numpy()))
    assert_close(w.sum(axis=1), np.ones(FULL["batch"]), rtol=0, atol=1e-12)
    assert np.all(w[~mask] == 0.0)
    params = {n: p.numpy() for n, p in attn.named_parameters()}
    ref_context, ref_weights = reference(kind, params, q, k, mask)
    assert_close(w, ref_weights, rtol=1e-7, atol=1e-9)
    assert_close(context.numpy(), ref_context, rtol=1e-7, atol=1e-6)


def test_single_position_gets_all_the_weight(device):
    for kind in KINDS:
        attn, q, k, _ = build(kind, dict(FULL, length=1, mask=None), device)
        context, weights = attn(t64(q, device), t64(k, device))
        assert np.all(weights.numpy() == 1.0)
        assert_close(context.numpy(), k[:, 0])


# ----------------------------------------------------------------- gradients
def inputs_for(attn, q, k, device):
    qt, kt = t64(q, device, grad=True), t64(k, device, grad=True)
    return qt, kt, list(attn.parameters())


@pytest.mark.parametrize("kind", KINDS)
@hyp(8)
@given(case=cases(max_batch=2, max_len=3, max_size=3))
@example(case=dict(FULL, batch=2, length=3, mask=np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)))
def test_gradcheck(device, kind, case):
    attn, q, k, mask = build(kind, case, device)
    qt, kt, params = inputs_for(attn, q, k, device)
    m = mask_tensor(mask, device)
    assert tg.gradcheck(lambda a, b, *p: attn(a, b, m), (qt, kt, *params))


@pytest.mark.parametrize("kind", KINDS)
@hyp(4)
@given(case=cases(max_batch=2, max_len=3, max_size=2))
@example(case=dict(batch=2, length=3, query_size=2, key_size=2, attn_size=2,
                   mask=np.array([[1, 1, 0], [1, 1, 1]], dtype=bool), seed=3))
def test_gradgradcheck(device, kind, case):
    attn, q, k, mask = build(kind, case, device)
    qt, kt, params = inputs_for(attn, q, k, device)
    m = mask_tensor(mask, device)
    assert tg.gradgradcheck(lambda a, b, *p: attn(a, b, m), (qt, kt, *params))


def _grads(attn, q, k, mask, device, seed=0):
    """Gradients of a random linear function of (context, weights) w.r.t. query, keys and the parameters."""
    rng = np.random.default_rng(seed)
    qt, kt, params = inputs_for(attn, q, k, device)
    context, weights = attn(qt, kt, mask_tensor(mask, device))
    loss = (context * t64(rng.standard_normal(context.shape), device)).sum() \
        + (weights * t64(rng.standard_normal(weights.shape), device)).sum()
    grads = tg.grad([loss], [qt, kt, *params])
    return context.numpy(), weights.numpy(), [g.numpy() for g in grads]


# ----------------------------------------------------------------- masking
@pytest.mark.parametrize("kind", KINDS)
@hyp(10)
@given(case=cases(max_batch=3, max_len=5, mask=True))
@example(case=FULL)
def test_mask_gives_exact_zeros_and_padding_changes_nothing(device, kind, case):
    attn, q, k, mask = build(kind, case, device)
    context, weights, grads = _grads(attn, q, k, mask, device)
    assert np.all(weights[~mask] == 0.0), "padded positions must get weight exactly 0.0"
    assert np.all(grads[1][~mask] == 0.0), "padded keys must get exactly zero gradient"
    assert np.all(np.isfinite(grads[1])) and all(np.all(np.isfinite(g)) for g in grads)

    # other values at the padded keys, even huge ones, change neither values nor gradients
    rng = np.random.default_rng(case["seed"])
    k2 = np.where(mask[..., None], k, 1e6 * rng.standard_normal(k.shape))
    context2, weights2, grads2 = _grads(attn, q, k2, mask, device)
    np.testing.assert_array_equal(weights2, weights)
    np.testing.assert_array_equal(context2, context)
    assert_close(grads2[0], grads[0], rtol=1e-13, atol=1e-14, msg="query grad")
    assert_close(grads2[1], grads[1], rtol=1e-13, atol=1e-14, msg="keys grad")
    for i, (g2, g) in enumerate(zip(grads2[2:], grads[2:])):
        assert_close(g2, g, rtol=1e-13, atol=1e-14, msg=f"parameter {i} grad")

    # and the result equals attention over the valid keys only, row by row
    params = {n: p.numpy() for n, p in attn.named_parameters()}
    for b in range(case["batch"]):
        c_b, w_b = reference(kind, params, q[b:b + 1], k[b:b + 1, mask[b]], None)
        assert_close(context[b], c_b[0])
        assert_close(weights[b, mask[b]], w_b[0])


@pytest.mark.parametrize("kind", KINDS)
def test_all_true_mask_equals_no_mask(device, kind):
    attn, q, k, _ = build(kind, FULL, device)
    full = np.ones((FULL["batch"], FULL["length"]), dtype=bool)
    c1, w1, g1 = _grads(attn, q, k, full, device)
    c2, w2, g2 = _grads(attn, q, k, None, device)
    assert_close(c1, c2)
    assert_close(w1, w2)
    for a, b in zip(g1, g2):
        assert_close(a, b)


# ----------------------------------------------------------------- prepared memory
@pytest.mark.parametrize("kind", KINDS)
@hyp(8)
@given(case=cases())
@example(case=FULL)
def test_prepared_memory_equals_direct_call(device, kind, case):
    attn, q, k, mask = build(kind, case, device)
    direct = _grads(attn, q, k, mask, device, seed=1)

    rng = np.random.default_rng(1)
    qt, kt, params = inputs_for(attn, q, k, device)
    memory = attn.prepare(kt, mask_tensor(mask, device))
    context, weights = attn(qt, memory)
    loss = (context * t64(rng.standard_normal(context.shape), device)).sum() \
        + (weights * t64(rng.standard_normal(weights.shape), device)).sum()
    grads = [g.numpy() for g in tg.grad([loss], [qt, kt, *params])]
    assert_close(context.numpy(), direct[0], rtol=1e-13, atol=1e-14)
    assert_close(weights.numpy(), direct[1], rtol=1e-13, atol=1e-14)
    for i, (g, d) in enumerate(zip(grads, direct[2])):
        assert_close(g, d, rtol=1e-12, atol=1e-13, msg=f"gradient {i}")

    # one memory serves many queries (a decoder's steps), each as if called directly
    for step in range(2):
        q2 = np.random.default_rng(step).standard_normal(q.shape)
        c_mem, w_mem = attn(t64(q2, device), memory)
        c_dir, w_dir = attn(t64(q2, device), t64(k, device), mask_tensor(mask, device))
        assert_close(c_mem.numpy(), c_dir.numpy(), rtol=1e-13, atol=1e-14)
        assert_close(w_mem.numpy(), w_dir.numpy(), rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------- errors
def test_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        tg.nn.Attention(3, 3, kind="multiplicative")
    with pytest.raises(ValueError, match="kind"):
        tg.nn.Attention(3, 3, kind="Bahdanau")


def test_luong_dot_needs_equal_sizes():
    with pytest.raises(ValueError, match="luong_dot"):
        tg.nn.Attention(3, 4, kind="luong_dot")
    tg.nn.Attention(4, 4, kind="luong_dot")     # equal sizes are fine
    for kind in ("bahdanau", "luong_general", "luong_concat"):
        tg.nn.Attention(3, 4, kind=kind)        # the others take any sizes


@pytest.mark.parametrize("kind", KINDS)
def test_bad_query(device, kind):
    attn, q, k, mask = build(kind, FULL, device)
    keys = t64(k, device)
    B, Hq = q.shape
    for bad in (t64(q[:, :1] if Hq > 1 else np.zeros((B, 2)), device),   # wrong feature size
                t64(q[:2], device),                                        # wrong batch
                t64(q[0], device),                                         # 1-D
                t64(q[:, None, :], device)):                               # 3-D
        with pytest.raises(ValueError, match="query"):
            attn(bad, keys)
    with pytest.raises(ValueError, match="query"):
        attn(q, keys)                                                      # not a tensor


@pytest.mark.parametrize("kind", KINDS)
def test_bad_keys(device, kind):
    attn, q, k, mask = build(kind, FULL, device)
    query = t64(q, device)
    for bad in (t64(k[:, 0], device),                  # 2-D
                t64(k[..., None], device),             # 4-D
                t64(np.zeros(k.shape[:2] + (k.shape[2] + 1,)), device)):   # wrong feature size
        with pytest.raises(ValueError, match="keys"):
            attn(query, bad)
        with pytest.raises(ValueError, match="keys"):
            attn.prepare(bad)
    with pytest.raises(ValueError, match="keys"):
        attn(query, k)                                 # a NumPy array, not a tensor


@pytest.mark.parametrize("kind", KINDS)
def test_bad_mask(device, kind):
    attn, q, k, mask = build(kind, FULL, device)
    query, keys = t64(q, device), t64(k, device)
    bad_masks = [tg.tensor(mask[:, :-1], device=device),                  # too short
                 tg.tensor(mask[:-1], device=device),                     # too few rows
                 tg.tensor(mask[:, :, None], device=device),              # 3-D
                 tg.tensor(mask.astype(np.int64), device=device),         # ints, not bools
                 tg.tensor(mask.astype(np.float64), device=device)]       # floats, not bools
    for bad in bad_masks:
        with pytest.raises(ValueError, match="mask"):
            attn(query, keys, bad)
        with pytest.raises(ValueError, match="mask"):
            attn.prepare(keys, bad)
    with pytest.raises(ValueError, match="mask"):
        attn(query, keys, mask)                        # a NumPy array, not a tensor
    empty = mask.copy()
    empty[1] = False
    with pytest.raises(ValueError, match="mask"):
        attn(query, keys, tg.tensor(empty, device=device))
    with pytest.raises(ValueError, match="mask"):
        attn.prepare(keys, tg.tensor(empty, device=device))
