"""tg.functional: activations, softmax family, linear/embedding/one_hot,
dropout and the losses.

Forward values are compared with NumPy formulas written here, first and second
derivatives with finite differences in float64 (``tg.gradcheck`` /
``tg.gradgradcheck``), shapes are drawn with hypothesis, and bad arguments
must raise errors that say what is wrong.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
from helpers import hyp

F = tg.functional
MAX_SIZE = 12   # gradcheck builds full Jacobians: keep every input tiny


# ----------------------------------------------------------------- helpers
def size_of(shape):
    return int(np.prod(shape, dtype=np.int64))


def T(a, device, grad=False, dtype=tg.float64):
    return tg.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=grad)


def ids(a, device):
    return tg.tensor(np.asarray(a, dtype=np.int64), device=device)


def check_grads(fn, arrays, device, second=True, **kw):
    """First (and second) derivatives of ``fn`` at float64 copies of ``arrays``."""
    inputs = [T(a, device, grad=True) for a in arrays]
    assert tg.gradcheck(fn, inputs, **kw)
    if second:
        assert tg.gradgradcheck(fn, inputs, **kw)


def close(tensor, expected, rtol=1e-10, atol=1e-12):
    got = tensor.numpy()
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def away(rng, shape, lo=0.2, hi=2.0):
    """Values with lo <= |x| <= hi and random signs (no kinks at 0)."""
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


seeds = st.integers(0, 2**32 - 1)


def small_shapes(min_dims=1, max_dims=3, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side).filter(
        lambda s: size_of(s) <= MAX_SIZE)


@st.composite
def shape_and_axis(draw, tuples=False):
    shape = draw(small_shapes())
    nd = len(shape)
    single = st.integers(-nd, nd - 1)
    if tuples:
        axis = draw(st.one_of(single, st.lists(single, min_size=1, max_size=nd,
                                                unique_by=lambda a: a % nd).map(tuple)))
    else:
        axis = draw(single)
    return shape, axis


# ----------------------------------------------------------------- NumPy references
def np_logsumexp(a, axis, keepdims=False):
    """The plain formula (fine for the moderate values it is used on)."""
    return np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))


def np_softmax(a, axis):
    e = np.exp(a)
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(a, axis):
    return a - np_logsumexp(a, axis, keepdims=True)


def np_nll(log_probs, target, ignore_index=-100, reduction="mean"):
    """-log_probs[n, target[n, ...], ...], ignored positions 0, mean over kept ones."""
    lp = np.moveaxis(log_probs, 1, -1)                     # (N, d..., C)
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(lp, safe[..., None], axis=-1)[..., 0]
    loss = np.where(keep, -picked, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / keep.sum()


def np_bce_with_logits(x, y):
    """-[y log s(x) + (1 - y) log(1 - s(x))] with log s(x) = -log(1 + e^-x)."""
    log_s = -np.logaddexp(0.0, -x)
    log_1ms = -np.logaddexp(0.0, x)
    return -(y * log_s + (1 - y) * log_1ms)


def reduce_np(loss, reduction):
    return {"none": loss, "sum": np.sum(loss), "mean": np.mean(loss)}[reduction]


# ----------------------------------------------------------------- softmax family
@hyp()
@given(sa=shape_and_axis(), seed=seeds)
def test_softmax(device, sa, seed):
    shape, axis = sa
    a = np.random.default_rng(seed).standard_normal(shape)
    out = F.softmax(T(a, device), axis=axis)
    close(out, np_softmax(a, axis))
    close(F.softmax(T(a, device), dim=axis), np_softmax(a, axis))
    close(out.sum(axis), np.ones(np.sum(a, axis=axis).shape))
    check_grads(lambda x: F.softmax(x, axis), [a], device)


@hyp()
@given(sa=shape_and_axis(), seed=seeds)
def test_log_softmax(device, sa, seed):
    shape, axis = sa
    a = np.random.default_rng(seed).standard_normal(shape)
    close(F.log_softmax(T(a, device), axis=axis), np_log_softmax(a, axis))
    close(F.log_softmax(T(a, device), dim=axis), np_log_softmax(a, axis))
    check_grads(lambda x: F.log_softmax(x, axis), [a], device)


@hyp()
@given(sa=shape_and_axis(tuples=True), keepdims=st.booleans(), seed=seeds)
def test_logsumexp(device, sa, keepdims, seed):
    shape, axis = sa
    a = np.random.default_rng(seed).standard_normal(shape)
    close(F.logsumexp(T(a, device), axis, keepdims=keepdims), np_logsumexp(a, axis, keepdims))
    check_grads(lambda x: F.logsumexp(x, axis, keepdims=keepdims), [a], device)


def test_softmax_family_huge_values(device):
    """Values like 1e4 must not overflow: the results follow from exact identities."""
    a = np.array([[1e4, 1e4, 1e4 - 1.0], [-1e4, 0.0, 1e4]])
    x = T(a, device)
    close(F.logsumexp(x, axis=1), [1e4 + np.log(2 + np.exp(-1.0)), 1e4], rtol=1e-14)
    s = 1 / (2 + np.exp(-1.0))
    close(F.softmax(x, axis=1), [[s, s, s * np.exp(-1.0)], [0.0, 0.0, 1.0]], rtol=1e-12)
    close(F.log_softmax(x, axis=1), [[np.log(s), np.log(s), np.log(s) - 1.0], [-2e4, -1e4, 0.0]], rtol=1e-12)
    xg = T(a, device, grad=True)
    F.logsumexp(xg, axis=1).sum().backward()
    assert np.isfinite(xg.grad.numpy()).all()
    close(xg.grad, [[s, s, s * np.exp(-1.0)], [0.0, 0.0, 1.0]], rtol=1e-12)
    assert np.isfinite(F.logsumexp(T([-1e4, -1e4], device)).numpy())
    close(F.logsumexp(T([-1e4, -1e4], device)), -1e4 + np.log(2.0), rtol=1e-14)


def test_logsumexp_rows_of_minus_inf(device):
    """A row of -inf gives -inf (not NaN); -inf entries beside finite ones get zero gradient."""
    a = np.array([[-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 0.0]])
    out = F.logsumexp(T(a, device), axis=1)
    np.testing.assert_array_equal(out.numpy(), [-np.inf, np.log(2.0)])
    x = T(a[1:], device, grad=True)
    F.logsumexp(x, axis=1).sum().backward()
    close(x.grad, [[0.0, 0.5, 0.5]])
    close(F.softmax(T(a[1:], device), axis=1), [[0.0, 0.5, 0.5]])
    close(F.log_softmax(T(a[1:], device), axis=1)[:, 1:], [[-np.log(2.0), -np.log(2.0)]])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax, F.logsumexp], ids=["softmax", "log_softmax", "lse"])
def test_softmax_family_bad_axis(device, fn):
    with pytest.raises(ValueError, match="axis"):
        fn(T(np.ones((2, 3)), device), axis=2)


# ----------------------------------------------------------------- activations
@pytest.mark.parametrize("slope", [0.01, 0.2])
@hyp()
@given(shape=small_shapes(min_dims=0), seed=seeds)
def test_leaky_relu(device, slope, shape, seed):
    a = away(np.random.default_rng(seed), shape)
    close(F.leaky_relu(T(a, device), slope), np.where(a > 0, a, slope * a))
    check_grads(lambda x: F.leaky_relu(x, slope), [a], device)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
@hyp()
@given(shape=small_shapes(min_dims=0), seed=seeds)
def test_elu(device, alpha, shape, seed):
    a = away(np.random.default_rng(seed), shape)
    close(F.elu(T(a, device), alpha), np.where(a > 0, a, alpha * np.expm1(a)), rtol=1e-9)
    check_grads(lambda x: F.elu(x, alpha), [a], device)


def test_leaky_relu_gradient_at_zero(device):
    """At 0 the gradient is the negative slope, as in PyTorch."""
    x = T([0.0, -1.0, 1.0], device, grad=True)
    F.leaky_relu(x, 0.1).sum().backward()
    close(x.grad, [0.1, 0.1, 1.0])


def test_elu_gradient_at_zero(device):
    """With alpha = 1, elu is continuously differentiable: its derivative at 0 is 1."""
    x = T([0.0, -1.0, 1.0], device, grad=True)
    F.elu(x).sum().backward()
    close(x.grad, [1.0, np.exp(-1.0), 1.0])


def test_elu_large_negative_is_finite(device):
    x = T([-1000.0, 1000.0], device, grad=True)
    y = F.elu(x)
    close(y, [-1.0, 1000.0])
    y.sum().backward()
    close(x.grad, [0.0, 1.0])


# ----------------------------------------------------------------- linear / embedding / one_hot
@st.composite
def linear_case(draw):
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=2))
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return batch, n_in, n_out, draw(st.booleans())


@hyp()
@given(case=linear_case(), seed=seeds)
def test_linear(device, case, seed):
    batch, n_in, n_out, bias = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(batch + (n_in,)), rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    expected = x @ w.T + (b if bias else 0.0)
    got = F.linear(T(x, device), T(w, device), T(b, device) if bias else None)
    close(got, expected)
    if bias:
        check_grads(lambda x_, w_, b_: F.linear(x_, w_, b_), [x, w, b], device)
    else:
        check_grads(lambda x_, w_: F.linear(x_, w_), [x, w], device)


def test_linear_feature_mismatch(device):
    with pytest.raises(ValueError, match=r"linear: input has 3 features, weight expects 4"):
        F.linear(T(np.ones((2, 3)), device), T(np.ones((5, 4)), device))


def test_linear_needs_an_input_with_a_feature_dim(device):
    with pytest.raises(ValueError, match=r"linear: expected input of shape \(\*, in_features\) and weight of shape "
                                         r"\(out_features, in_features\), got \(\) and \(2, 1\)"):
        F.linear(T(3.0, device), T(np.ones((2, 1)), device))
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(\)"):
        F.linear(T(np.ones((2, 3)), device), T(2.0, device))


def test_linear_with_a_1d_weight_drops_the_output_dim(device):
    """As torch.nn.functional.linear: a weight of shape (in,) gives an output of shape (*)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal(4)
    close(F.linear(T(x, device), T(w, device)), x @ w)
    close(F.linear(T(x[0, 0], device), T(w, device)), x[0, 0] @ w)


@st.composite
def embedding_case(draw):
    vocab, dim = draw(st.integers(2, 4)), draw(st.integers(1, 3))
    id_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    id_values = draw(hnp.arrays(np.int64, id_shape, elements=st.integers(0, vocab - 1)))
    return vocab, dim, id_values


@hyp()
@given(case=embedding_case(), seed=seeds)
def test_embedding(device, case, seed):
    vocab, dim, id_values = case
    w = np.random.default_rng(seed).standard_normal((vocab, dim))
    out = F.embedding(ids(id_values, device), T(w, device))
    close(out, w[id_values])
    check_grads(lambda w_: F.embedding(ids(id_values, device), w_), [w], device)


def test_embedding_repeated_ids_accumulate(device):
    w = T(np.zeros((4, 2)), device, grad=True)
    out = F.embedding(ids([[1, 3, 1], [1, 0, 3]], device), w)
    (out * T(np.arange(12.0).reshape(2, 3, 2), device)).sum().backward()
    # row 1 picked at (0,0), (0,2), (1,0); row 3 at (0,1), (1,2); row 0 at (1,1)
    close(w.grad, [[8.0, 9.0], [0 + 4 + 6, 1 + 5 + 7], [0.0, 0.0], [2 + 10, 3 + 11]])


@pytest.mark.parametrize("padding_idx", [0, 2, -1, -4])
def test_embedding_padding_idx_gets_no_gradient(device, padding_idx):
    """A negative padding_idx counts from the end, as in PyTorch: -1 is the last row."""
    id_values = np.array([[0, 3, 3], [1, 2, 0]])
    w = T(np.ones((4, 2)), device, grad=True)
    out = F.embedding(ids(id_values, device), w, padding_idx=padding_idx)
    close(out, np.ones((2, 3, 2)))
    out.sum().backward()
    counts = np.bincount(id_values.ravel(), minlength=4).astype(float)
    counts[padding_idx] = 0.0
    close(w.grad, np.repeat(counts[:, None], 2, axis=1))


def test_embedding_padding_idx_matches_torch(device):
    torch = pytest.importorskip("torch")
    id_values = np.array([0, 3, 3, 1])
    w = np.random.default_rng(0).standard_normal((4, 3))
    ours = T(w, device, grad=True)
    theirs = torch.tensor(w, requires_grad=True)
    (F.embedding(ids(id_values, device), ours, padding_idx=-1) ** 2).sum().backward()
    (torch.nn.functional.embedding(torch.tensor(id_values), theirs, padding_idx=-1) ** 2).sum().backward()
    close(ours.grad, theirs.grad.numpy())


@pytest.mark.parametrize("padding_idx", [4, -5, 1.0])
def test_embedding_padding_idx_out_of_range(device, padding_idx):
    with pytest.raises(ValueError, match=rf"embedding: padding_idx must be an int in \[-4, 4\) for 4 rows, "
                                         rf"got {padding_idx}"):
        F.embedding(ids([0], device), T(np.ones((4, 2)), device), padding_idx=padding_idx)


@pytest.mark.parametrize("bad", [[0, 4], [-1, 0], [[5]]])
def test_embedding_bad_ids(device, bad):
    with pytest.raises(ValueError, match=r"embedding: ids must be in \[0, 4\)"):
        F.embedding(ids(bad, device), T(np.ones((4, 2)), device))


def test_embedding_float_ids(device):
    with pytest.raises(TypeError, match="ids must be integers"):
        F.embedding(T([0.0, 1.0], device), T(np.ones((4, 2)), device))


def test_one_hot(device):
    """A constant int64 tensor; num_classes=-1 takes max(ids) + 1."""
    v = np.array([[0, 2], [1, 2]])
    out = F.one_hot(ids(v, device), 4)
    assert out.dtype == tg.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.int64)[v])
    np.testing.assert_array_equal(F.one_hot(ids(v, device)).numpy(), np.eye(3, dtype=np.int64)[v])
    with pytest.raises(ValueError, match=r"one_hot: ids must be in \[0, 2\)"):
        F.one_hot(ids(v, device), 2)
    with pytest.raises(ValueError, match="ids must be in"):
        F.one_hot(ids([-1, 0], device), 3)
    with pytest.raises(TypeError, match="ids must be integers"):
        F.one_hot(T([0.0], device))


# ----------------------------------------------------------------- dropout
def test_dropout_p0_and_eval_are_identity(device):
    a = np.random.default_rng(0).standard_normal((3, 4))
    x = T(a, device, grad=True)
    close(F.dropout(x, 0.0), a)
    close(F.dropout(x, 0.7, training=False), a)
    (F.dropout(x, 0.0) + F.dropout(x, 0.7, training=False)).sum().backward()
    close(x.grad, np.full((3, 4), 2.0))
    check_grads(lambda x_: F.dropout(x_, 0.5, training=False), [a], device)
    check_grads(lambda x_: F.dropout(x_, 0.0), [a], device)


def test_dropout_p1_is_zero(device):
    a = np.random.default_rng(0).standard_normal((3, 4))
    x = T(a, device, grad=True)
    y = F.dropout(x, 1.0)
    close(y, np.zeros((3, 4)))
    y.sum().backward()
    close(x.grad, np.zeros((3, 4)))
    check_grads(lambda x_: F.dropout(x_, 1.0), [a], device)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_expected_value(device, p):
    """E[out] = x: a fraction p is zeroed and the rest scaled by 1/(1-p)."""
    n = 200_000
    x = T(np.full(n, 3.0), device)
    out = F.dropout(x, p, generator=np.random.default_rng(123)).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 3.0 / (1 - p), rtol=1e-12)
    se = np.sqrt(p * (1 - p) / n)                  # standard error of the dropped fraction
    assert abs((1 - kept.mean()) - p) < 5 * se
    assert abs(out.mean() - 3.0) < 5 * 3.0 * se / (1 - p)


def test_dropout_backward_uses_forward_mask(device):
    """The gradient is the same mask, scaled by 1/(1-p), that forward applied."""
    p = 0.4
    a = np.random.default_rng(1).uniform(0.5, 1.5, (6, 7))
    w = np.random.default_rng(2).standard_normal((6, 7))
    x = T(a, device, grad=True)
    out = F.dropout(x, p, generator=np.random.default_rng(5))
    (out * T(w, device)).sum().backward()
    mask = out.numpy() / a                       # 0 or 1/(1-p) elementwise
    assert set(np.round(np.unique(mask), 12)) <= {0.0, round(1 / (1 - p), 12)}
    close(x.grad, w * mask)


def test_dropout_gradients_with_fixed_generator(device):
    a = np.random.default_rng(0).standard_normal((3, 4))
    check_grads(lambda x_: F.dropout(x_, 0.3, generator=np.random.default_rng(7)), [a], device)


def test_dropout_seeded_and_dtype(device):
    """tg.manual_seed makes the default generator repeatable; float32 stays float32."""
    x = tg.ones(5, 5, device=device)
    tg.manual_seed(11)
    a = F.dropout(x, 0.5)
    tg.manual_seed(11)
    b = F.dropout(x, 0.5)
    assert a.dtype == tg.float32
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_bad_p(device, p):
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
        F.dropout(T([1.0], device), p)


# ----------------------------------------------------------------- nll_loss / cross_entropy
@st.composite
def class_case(draw):
    """(N, C) or (N, C, d) shapes, targets (some equal to ignore_index), a reduction."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    extra = draw(hnp.array_shapes(min_dims=0, max_dims=1, min_side=1, max_side=3))
    assume(n * c * size_of(extra) <= MAX_SIZE)
    ignore_index = draw(st.sampled_from([-100, 1]))
    target = draw(hnp.arrays(np.int64, (n,) + extra,
                             elements=st.one_of(st.integers(0, c - 1), st.just(ignore_index))))
    reduction = draw(st.sampled_from(["none", "mean", "sum"]))
    if reduction == "mean":
        assume((target != ignore_index).any())
    return (n, c) + extra, target, ignore_index, reduction


@hyp()
@given(case=class_case(), seed=seeds)
def test_cross_entropy(device, case, seed):
    """(N, C) and (N, C, d) logits, class-index targets, ignore_index, every reduction."""
    shape, target, ignore_index, reduction = case
    z = np.random.default_rng(seed).standard_normal(shape)
    t = ids(target, device)
    expected = np_nll(np_log_softmax(z, 1), target, ignore_index, reduction)
    close(F.cross_entropy(T(z, device), t, ignore_index=ignore_index, reduction=reduction), expected,
          rtol=1e-9)
    check_grads(lambda x: F.cross_entropy(x, t, ignore_index=ignore_index, reduction=reduction), [z], device)


@hyp()
@given(case=class_case(), seed=seeds)
def test_nll_loss(device, case, seed):
    shape, target, ignore_index, reduction = case
    lp = np.random.default_rng(seed).standard_normal(shape)
    t = ids(target, device)
    close(F.nll_loss(T(lp, device), t, ignore_index=ignore_index, reduction=reduction),
          np_nll(lp, target, ignore_index, reduction), rtol=1e-12)
    check_grads(lambda x: F.nll_loss(x, t, ignore_index=ignore_index, reduction=reduction), [lp], device)


@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (1, 2, 3, 2), (2, 2, 1, 3)])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_nll_loss_several_extra_dims(device, shape, reduction):
    """(N, C, d1, d2): each position (n, d1, d2) picks its own target class."""
    rng = np.random.default_rng(0)
    lp = rng.standard_normal(shape)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    t = ids(target, device)
    close(F.nll_loss(T(lp, device), t, reduction=reduction), np_nll(lp, target, reduction=reduction))
    close(F.cross_entropy(T(lp, device), t, reduction=reduction),
          np_nll(np_log_softmax(lp, 1), target, reduction=reduction), rtol=1e-9)
    check_grads(lambda x: F.nll_loss(x, t, reduction=reduction), [lp], device, second=False)


def test_cross_entropy_ignore_index_gets_no_gradient(device):
    z = T(np.random.default_rng(0).standard_normal((3, 4)), device, grad=True)
    loss = F.cross_entropy(z, ids([2, -100, 0], device))
    loss.backward()
    close(z.grad[1], np.zeros(4))
    p = np_softmax(z.numpy(), 1)
    expected = (p - np.eye(4)[[2, 0, 0]]) / 2      # mean over the 2 kept rows
    expected[1] = 0
    close(z.grad, expected)


def test_cross_entropy_all_ignored_mean_is_nan(device):
    """As PyTorch: averaging over zero kept targets gives NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = F.cross_entropy(T(np.zeros((2, 3)), device), ids([-100, -100], device))
    assert np.isnan(loss.item())


def test_cross_entropy_large_logits(device):
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    loss = F.cross_entropy(T(z, device), ids([1, 2], device), reduction="none")
    close(loss, [1e4, np.log(2.0)], rtol=1e-12)


def test_class_loss_errors(device):
    z = T(np.zeros((2, 3)), device)
    with pytest.raises(ValueError, match="target 3 is out of range for 3 classes"):
        F.cross_entropy(z, ids([0, 3], device))
    with pytest.raises(ValueError, match="target -2 is out of range"):
        F.nll_loss(z, ids([-2, 0], device))
    with pytest.raises(ValueError, match=r"needs a target of shape \(2,\), got \(3,\)"):
        F.nll_loss(z, ids([0, 1, 2], device))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(z, T([0.0, 1.0], device))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(z, ids([0, 1], device), reduction="avg")
    with pytest.raises(ValueError, match=r"logits must be \(N, C\)"):
        F.cross_entropy(T([1.0, 2.0], device), ids(0, device))


# ----------------------------------------------------------------- mse / bce
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@hyp()
@given(shape=small_shapes(min_dims=0), seed=seeds)
def test_mse_loss(device, reduction, shape, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    close(F.mse_loss(T(x, device), T(y, device), reduction=reduction), reduce_np((x - y) ** 2, reduction))
    close(F.mse_loss(T(x, device), y, reduction=reduction), reduce_np((x - y) ** 2, reduction))
    check_grads(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y], device)


def test_mse_loss_shape_mismatch(device):
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2, 3\) and target shape \(3,\) differ"):
        F.mse_loss(T(np.ones((2, 3)), device), T(np.ones(3), device))
    with pytest.raises(ValueError, match="differ"):
        F.mse_loss(T(np.ones((2, 1)), device), T(np.ones((2, 3)), device))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(T(np.ones(2), device), T(np.ones(2), device), reduction="mea")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@hyp()
@given(shape=small_shapes(min_dims=0), seed=seeds)
def test_bce_with_logits(device, reduction, shape, seed):
    rng = np.random.default_rng(seed)
    x, y = away(rng, shape, 0.1, 4.0), rng.uniform(0.0, 1.0, shape)
    expected = reduce_np(np_bce_with_logits(x, y), reduction)
    close(F.binary_cross_entropy_with_logits(T(x, device), T(y, device), reduction=reduction), expected,
          rtol=1e-9)
    check_grads(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, y], device)


def test_bce_with_logits_stable_for_large_logits(device):
    """|x| = 100 (and 1000, where a naive log(sigmoid(x)) is -inf) stay finite and exact."""
    x = np.array([100.0, -100.0, 100.0, -100.0, 40.0, 1000.0, -1000.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.25, 0.0, 1.0])
    xt = T(x, device, grad=True)
    loss = F.binary_cross_entropy_with_logits(xt, T(y, device), reduction="none")
    assert np.isfinite(loss.numpy()).all()
    close(loss, np_bce_with_logits(x, y), rtol=1e-12, atol=1e-12)
    loss.sum().backward()
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    close(xt.grad, sig - y, rtol=1e-12, atol=1e-12)


def test_bce_with_logits_gradient_at_zero(device):
    """d/dx = sigmoid(x) - y, also at x = 0 exactly (e.g. a zero-initialised output layer)."""
    x = T(np.zeros(3), device, grad=True)
    y = T([0.0, 1.0, 0.3], device)
    F.binary_cross_entropy_with_logits(x, y, reduction="sum").backward()
    close(x.grad, [0.5, -0.5, 0.2])


def test_bce_with_logits_shape_mismatch(device):
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: input shape \(4,\) and target "
                                         r"shape \(4, 1\) differ"):
        F.binary_cross_entropy_with_logits(T(np.zeros(4), device), T(np.zeros((4, 1)), device))
