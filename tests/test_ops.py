"""Primitive ops and Tensor methods.

For each op: forward values against NumPy, first derivatives (``tg.gradcheck``)
and second derivatives (``tg.gradgradcheck``) against central finite
differences in float64, shapes drawn with hypothesis (size-1 dims and
broadcasting included), and the errors raised for bad arguments.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
from helpers import hyp

MAX_SIZE = 12   # gradcheck builds full Jacobians: keep every input tiny


# ----------------------------------------------------------------- helpers
def size_of(shape):
    return int(np.prod(shape, dtype=np.int64))


def T(a, device, grad=False, dtype=tg.float64):
    return tg.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=grad)


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


def positive(rng, shape, lo=0.3, hi=2.0):
    return rng.uniform(lo, hi, shape)


def distinct(rng, shape):
    """Values at least 0.2 apart, so max/min have no ties."""
    n = size_of(shape)
    v = rng.permutation(n) * 0.3 - 0.15 * n + rng.uniform(-0.05, 0.05, n)
    return v.reshape(shape)


seeds = st.integers(0, 2**32 - 1)


def small_shapes(min_dims=0, max_dims=3, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side).filter(
        lambda s: size_of(s) <= MAX_SIZE)


pair_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3).filter(
    lambda b: size_of(b.result_shape) <= MAX_SIZE)
triple_shapes = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3).filter(
    lambda b: size_of(b.result_shape) <= MAX_SIZE)


@st.composite
def shape_and_axis(draw, min_dims=0, max_dims=3):
    """A shape and an axis argument: None, an int (maybe negative) or a tuple."""
    shape = draw(small_shapes(min_dims, max_dims))
    nd = len(shape)
    if nd == 0:
        return shape, None
    axis = draw(st.one_of(
        st.none(),
        st.integers(-nd, nd - 1),
        st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd, unique_by=lambda a: a % nd).map(tuple)))
    return shape, axis


# ----------------------------------------------------------------- binary elementwise
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: a ** b, np.power),
    "maximum": (tg.maximum, np.maximum),
    "minimum": (tg.minimum, np.minimum),
}


def binary_values(name, rng, sa, sb):
    if name == "div":
        return away(rng, sa), away(rng, sb, 0.5, 2.0)
    if name == "pow":                       # tensor ** tensor needs a positive base
        return positive(rng, sa, 0.5, 2.0), rng.uniform(-2.0, 2.0, sb)
    if name in ("maximum", "minimum"):      # integers vs half-integers: never within 0.1
        a = rng.integers(-3, 3, sa) + rng.uniform(-0.2, 0.2, sa)
        b = rng.integers(-3, 3, sb) + 0.5 + rng.uniform(-0.2, 0.2, sb)
        return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return away(rng, sa), away(rng, sb)


@pytest.mark.parametrize("name", list(BINARY))
@hyp()
@given(shapes=pair_shapes, seed=seeds)
def test_binary_op_broadcasting(device, name, shapes, seed):
    """Binary ops broadcast as NumPy; gradients fold back to each input's shape."""
    fn, ref = BINARY[name]
    sa, sb = shapes.input_shapes
    a, b = binary_values(name, np.random.default_rng(seed), sa, sb)
    out = fn(T(a, device), T(b, device))
    assert out.shape == shapes.result_shape and out.dtype == tg.float64
    close(out, ref(a, b))
    check_grads(fn, [a, b], device)


SCALAR_CASES = {
    "x+s": (lambda x: x + 2.5, lambda a: a + 2.5),
    "s+x": (lambda x: 2.5 + x, lambda a: 2.5 + a),
    "x-s": (lambda x: x - 1.5, lambda a: a - 1.5),
    "s-x": (lambda x: 1.5 - x, lambda a: 1.5 - a),
    "x*s": (lambda x: x * -3.0, lambda a: a * -3.0),
    "s*x": (lambda x: -3.0 * x, lambda a: -3.0 * a),
    "x/s": (lambda x: x / 4.0, lambda a: a / 4.0),
    "s/x": (lambda x: 4.0 / x, lambda a: 4.0 / a),
    "neg": (lambda x: -x, lambda a: -a),
    "x**2": (lambda x: x ** 2, lambda a: a ** 2),
    "x**3": (lambda x: x ** 3, lambda a: a ** 3),
    "abs(x)**1.5": (lambda x: x.abs() ** 1.5, lambda a: np.abs(a) ** 1.5),
    "abs(x)**-0.5": (lambda x: x.abs() ** -0.5, lambda a: np.abs(a) ** -0.5),
    "2**x": (lambda x: 2.0 ** x, lambda a: 2.0 ** a),
    "0.5**x": (lambda x: 0.5 ** x, lambda a: 0.5 ** a),
    "maximum(x,s)": (lambda x: tg.maximum(x, 0.1), lambda a: np.maximum(a, 0.1)),
    "maximum(s,x)": (lambda x: tg.maximum(0.1, x), lambda a: np.maximum(0.1, a)),
    "minimum(x,s)": (lambda x: tg.minimum(x, 0.1), lambda a: np.minimum(a, 0.1)),
    "minimum(s,x)": (lambda x: tg.minimum(0.1, x), lambda a: np.minimum(0.1, a)),
    "array+x": (lambda x: np.linspace(-1, 1, x.shape[-1]) + x, lambda a: np.linspace(-1, 1, a.shape[-1]) + a),
    "x*array": (lambda x: x * np.linspace(-1, 1, x.shape[-1]), lambda a: a * np.linspace(-1, 1, a.shape[-1])),
}


@pytest.mark.parametrize("case", list(SCALAR_CASES))
@hyp(max_examples=8)
@given(shape=small_shapes(min_dims=1), seed=seeds)
def test_ops_with_python_scalars_and_arrays(device, case, shape, seed):
    """Numbers and NumPy arrays on either side are constants beside the tensor."""
    fn, ref = SCALAR_CASES[case]
    a = away(np.random.default_rng(seed), shape)
    out = fn(T(a, device))
    assert out.dtype == tg.float64
    close(out, ref(a))
    check_grads(fn, [a], device)


ZERO_DIM = {
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(),
    "abs": lambda x: x.abs(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "softplus": tg.softplus,
    "mul": lambda x: x * x,
    "div": lambda x: 1.0 / x,
    "pow": lambda x: x ** 3,
    "maximum": lambda x: tg.maximum(x, 0.1),
    "max": lambda x: x.max(),
    "sum": lambda x: x.sum(),
}


@pytest.mark.parametrize("case", list(ZERO_DIM))
def test_zero_dim_tensor(device, case):
    """0-d tensors behave like any other shape, second derivatives included."""
    fn = ZERO_DIM[case]
    x = T(1.3, device, grad=True)
    y = fn(x)
    assert y.shape == ()
    g, = tg.grad([y], [x])
    assert g.shape == () and np.isfinite(g.numpy())
    check_grads(fn, [np.array(1.3)], device)


@pytest.mark.parametrize("name", ["max", "min"])
def test_full_reduction_double_backward(device, name):
    """max()/min() over every axis of a 2-D tensor are differentiable twice."""
    a = distinct(np.random.default_rng(3), (2, 3))
    check_grads(lambda x: getattr(x, name)() * x.sum(), [a], device)
    check_grads(lambda x: getattr(x, name)(axis=(0, 1)), [a], device)


def test_grad_of_0d_input_used_twice(device):
    """tg.grad of a 0-d input reached by two paths returns a usable 0-d tensor."""
    x = T(3.0, device, grad=True)
    g, = tg.grad([x * x], [x])
    assert g.shape == ()
    close(g, 6.0)


def test_scalar_ops_keep_float32(device):
    """A Python float beside a float32 tensor does not promote it."""
    x = tg.tensor([1.0, 2.0], device=device)
    for y in (x + 1.5, 2.0 * x, x / 3.0, 1.0 - x, x ** 2, 2.0 ** x):
        assert y.dtype == tg.float32


def test_pow_zero_exponent_has_zero_gradient(device):
    """d/dx x**0 = 0 everywhere, x = 0 included (PyTorch gives 0, not NaN)."""
    x = T([0.0, 1.5, -2.0], device, grad=True)
    y = x ** 0
    close(y, [1.0, 1.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_pow_gradients_at_known_points(device):
    """d/da a**b = b a**(b-1) and d/db a**b = a**b log a, by hand."""
    a, b = T([2.0, 3.0], device, grad=True), T([3.0, 0.5], device, grad=True)
    (a ** b).sum().backward()
    close(a.grad, [3 * 2.0 ** 2, 0.5 * 3.0 ** -0.5])
    close(b.grad, [8 * np.log(2.0), 3.0 ** 0.5 * np.log(3.0)])


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_gradient(device, op):
    """Where a == b each side gets half the gradient, as in PyTorch."""
    fn = getattr(tg, op)
    a = T([1.0, 2.0, 3.0, -1.0], device, grad=True)
    b = T([1.0, 0.0, 3.0, 4.0], device, grad=True)
    fn(a, b).sum().backward()
    a_wins = [0.0, 1.0, 0.0, 0.0] if op == "maximum" else [0.0, 0.0, 0.0, 1.0]
    expected_a = [0.5, a_wins[1], 0.5, a_wins[3]]
    expected_b = [0.5, 1 - a_wins[1], 0.5, 1 - a_wins[3]]
    close(a.grad, expected_a)
    close(b.grad, expected_b)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_with_broadcasting(device, op):
    """A broadcast operand tied with every element collects half of each gradient."""
    fn = getattr(tg, op)
    a = T(np.ones((2, 3)), device, grad=True)
    b = T([1.0], device, grad=True)
    fn(a, b).sum().backward()
    close(a.grad, np.full((2, 3), 0.5))
    close(b.grad, [3.0])


# ----------------------------------------------------------------- matmul
MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (2, 3, 2)),
    ((2, 2, 3), (3, 2)),
    ((3,), (2, 3, 2)),
    ((2, 2, 3), (3,)),
    ((2, 1, 3, 4), (5, 4, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_shapes(device, sa, sb):
    """1-D, 2-D, batched and broadcast-batched products, values and both derivatives."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = T(a, device) @ T(b, device)
    close(out, np.matmul(a, b))
    close(tg.matmul(T(a, device), T(b, device)), np.matmul(a, b))
    check_grads(lambda x, y: x @ y, [a, b], device)


@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2))
    ba, bb = batch.input_shapes
    sa = (k,) if draw(st.booleans()) and not ba else ba + (n, k)
    sb = (k,) if draw(st.booleans()) and not bb else bb + (k, m)
    assume(size_of(sa) <= MAX_SIZE and size_of(sb) <= MAX_SIZE)
    return sa, sb


@hyp(max_examples=15)
@given(shapes=matmul_shapes(), seed=seeds)
def test_matmul_drawn_shapes(device, shapes, seed):
    sa, sb = shapes
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    close(T(a, device) @ T(b, device), np.matmul(a, b))
    check_grads(lambda x, y: x @ y, [a, b], device)


def test_matmul_with_numpy_operand(device):
    """An array on either side of @ is a constant operand."""
    w = np.arange(6.0).reshape(3, 2)
    x = T(np.ones((2, 3)), device)
    close(x @ w, np.ones((2, 3)) @ w)
    close(w.T @ x.T, w.T @ np.ones((3, 2)))


@pytest.mark.parametrize("sa,sb,msg", [
    ((2, 3), (4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\) do not align \(3 != 4\)"),
    ((3,), (4,), r"do not align \(3 != 4\)"),
    ((2, 3), (2,), r"do not align"),
    ((3,), (2, 4), r"do not align"),
    ((2, 2, 3), (2, 4, 2), r"do not align"),
])
def test_matmul_shape_mismatch(device, sa, sb, msg):
    with pytest.raises(ValueError, match=msg):
        T(np.ones(sa), device) @ T(np.ones(sb), device)


def test_matmul_batch_mismatch_names_op(device):
    """Batch dims that cannot broadcast raise a ValueError naming matmul and both shapes."""
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3, 4\).*\(5, 4, 2\)"):
        T(np.ones((2, 3, 4)), device) @ T(np.ones((5, 4, 2)), device)


def test_matmul_rejects_scalars(device):
    x = T(np.ones((2, 2)), device)
    with pytest.raises(ValueError, match="at least 1 dim"):
        x @ T(2.0, device)
    with pytest.raises(TypeError, match="matmul"):
        x @ 2.0


# ----------------------------------------------------------------- unary elementwise
def _sigmoid_ref(a):
    return np.where(a >= 0, 1 / (1 + np.exp(-np.abs(a))), np.exp(-np.abs(a)) / (1 + np.exp(-np.abs(a))))


UNARY = {   # method form, function form, reference, domain
    "exp": (lambda x: x.exp(), tg.exp, np.exp, "any"),
    "log": (lambda x: x.log(), tg.log, np.log, "pos"),
    "sqrt": (lambda x: x.sqrt(), tg.sqrt, np.sqrt, "pos"),
    "abs": (lambda x: x.abs(), tg.abs, np.abs, "any"),
    "tanh": (lambda x: x.tanh(), tg.tanh, np.tanh, "any"),
    "sigmoid": (lambda x: x.sigmoid(), tg.sigmoid, _sigmoid_ref, "any"),
    "relu": (lambda x: x.relu(), tg.relu, lambda a: np.maximum(a, 0), "any"),
    "softplus": (tg.softplus, tg.softplus, lambda a: np.log1p(np.exp(a)), "any"),
}


@pytest.mark.parametrize("name", list(UNARY))
@hyp()
@given(shape=small_shapes(), seed=seeds)
def test_unary_op(device, name, shape, seed):
    method, func, ref, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    a = positive(rng, shape) if domain == "pos" else away(rng, shape)
    close(method(T(a, device)), ref(a))
    close(func(T(a, device)), ref(a))
    check_grads(method, [a], device)


@pytest.mark.parametrize("name,x,value,grad", [
    ("sigmoid", 1000.0, 1.0, 0.0),
    ("sigmoid", -1000.0, 0.0, 0.0),
    ("softplus", 1000.0, 1000.0, 1.0),
    ("softplus", -1000.0, 0.0, 0.0),
    ("tanh", 1000.0, 1.0, 0.0),
    ("tanh", -1000.0, -1.0, 0.0),
    ("relu", 0.0, 0.0, 0.0),      # PyTorch's choices at the kinks
    ("abs", 0.0, 0.0, 0.0),
])
def test_unary_extremes_and_kinks(device, name, x, value, grad):
    """Large inputs give finite values and gradients; the kink values follow PyTorch."""
    t = T([x], device, grad=True)
    y = UNARY[name][0](t)
    close(y, [value])
    y.sum().backward()
    close(t.grad, [grad])


# ----------------------------------------------------------------- where / clip
@hyp()
@given(shapes=triple_shapes, seed=seeds)
def test_where(device, shapes, seed):
    sc, sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    c = rng.random(sc) < 0.5
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    cond = tg.tensor(c, device=device)
    assert cond.dtype == tg.bool_
    close(tg.where(cond, T(a, device), T(b, device)), np.where(c, a, b))
    check_grads(lambda x, y: tg.where(cond, x, y), [a, b], device)


def test_where_with_scalar_branch_and_array_cond(device):
    c = np.array([True, False, True])
    x = T([1.0, 2.0, 3.0], device, grad=True)
    y = tg.where(c, x, 0.0)
    close(y, [1.0, 0.0, 3.0])
    y.sum().backward()
    close(x.grad, [1.0, 0.0, 1.0])
    close(tg.where(x > 1.5, -1.0, x), [1.0, -1.0, -1.0])


@pytest.mark.parametrize("cond", [
    lambda d: T([1.0, 0.0], d),
    lambda d: tg.tensor([1, 0], device=d),
    lambda d: 1,
])
def test_where_rejects_non_bool_cond(device, cond):
    with pytest.raises(TypeError, match="cond must be a bool"):
        tg.where(cond(device), T([1.0, 2.0], device), T([3.0, 4.0], device))


CLIP_GRID = np.array([-1.4, -0.9, -0.3, -0.1, 0.05, 0.2, 0.35, 0.7, 1.1])   # >= 0.1 from +-0.5


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.5), (-0.5, None)])
@hyp()
@given(shape=small_shapes(), seed=seeds)
def test_clip(device, lo, hi, shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.choice(CLIP_GRID, shape) + rng.uniform(-0.04, 0.04, shape)
    ref = np.clip(a, lo, hi)
    close(T(a, device).clip(lo, hi), ref)
    close(T(a, device).clamp(lo, hi), ref)
    close(tg.clip(T(a, device), lo, hi), ref)
    close(tg.clamp(T(a, device), min=lo, max=hi), ref)
    check_grads(lambda x: x.clip(lo, hi), [a], device)


def test_clip_gradient_passes_on_closed_interval(device):
    """Gradient 1 where lo <= x <= hi (the bounds included), 0 outside."""
    x = T([-0.5, 0.5, -0.6, 0.6, 0.0], device, grad=True)
    x.clip(-0.5, 0.5).sum().backward()
    close(x.grad, [1.0, 1.0, 0.0, 0.0, 1.0])


def test_clip_bad_bounds(device):
    x = T([1.0], device)
    with pytest.raises(ValueError, match=r"min \(1\.0\) is greater than max \(0\.0\)"):
        x.clip(1.0, 0.0)
    with pytest.raises(ValueError, match="at least one of min and max"):
        tg.clip(x)


# ----------------------------------------------------------------- reductions
def _np_var(a, axis=None, keepdims=False):
    return np.var(a, axis=axis, keepdims=keepdims, ddof=1)


REDUCTIONS = {
    "sum": (lambda x, **k: x.sum(**k), tg.sum, np.sum),
    "mean": (lambda x, **k: x.mean(**k), tg.mean, np.mean),
    "max": (lambda x, **k: x.max(**k), tg.max, np.max),
    "min": (lambda x, **k: x.min(**k), tg.min, np.min),
    "var": (lambda x, **k: x.var(**k), tg.var, _np_var),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
@hyp()
@given(sa=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_reduction(device, name, sa, keepdims, seed):
    """Reductions over None / int / negative / tuple axes, with and without keepdims."""
    shape, axis = sa
    method, func, ref = REDUCTIONS[name]
    if name == "var":
        axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
        assume(size_of([shape[i] for i in axes]) >= 2)
    a = distinct(np.random.default_rng(seed), shape)
    expected = ref(a, axis=axis, keepdims=keepdims)
    close(method(T(a, device), axis=axis, keepdims=keepdims), expected)
    close(func(T(a, device), axis, keepdims), expected)
    check_grads(lambda x: method(x, axis=axis, keepdims=keepdims), [a], device)


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reduction_dim_alias(device, name):
    """PyTorch's ``dim`` is accepted for ``axis``."""
    method, _, ref = REDUCTIONS[name]
    a = distinct(np.random.default_rng(1), (2, 3))
    close(method(T(a, device), dim=1), ref(a, axis=1))
    close(method(T(a, device), dim=-2, keepdims=True), ref(a, axis=-2, keepdims=True))


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_ties_share_gradient(device, name):
    """Every element equal to the extreme gets an equal share of the gradient."""
    sign = 1.0 if name == "max" else -1.0
    a = sign * np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x = T(a, device, grad=True)
    getattr(x, name)(axis=1).sum().backward()
    close(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])

    x = T(a, device, grad=True)
    getattr(x, name)(axis=0, keepdims=True).sum().backward()
    close(x.grad, [[0, 1, 1], [1, 0, 0]])

    b = sign * np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 1.0]])
    x = T(b, device, grad=True)
    y = getattr(x, name)()
    close(y, sign * 3.0)
    y.backward()
    close(x.grad, [[0, 1 / 3, 1 / 3], [1 / 3, 0, 0]])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_a_nan_takes_the_gradient(device, name):
    """A NaN is the extreme, so it gets the gradient (PyTorch's max()/min(); several NaNs share
    it), not every element a NaN share: NaN == NaN is False, which left 0 / 0 everywhere."""
    nan = np.nan
    x = T([[1.0, nan, 3.0], [2.0, 5.0, 1.0]], device, grad=True)
    getattr(x, name)().backward()
    close(x.grad, [[0, 1, 0], [0, 0, 0]])
    x = T([[1.0, nan, 3.0], [2.0, 5.0, 1.0]], device, grad=True)
    getattr(x, name)(axis=1).sum().backward()
    close(x.grad, [[0, 1, 0], [0, 1, 0]] if name == "max" else [[0, 1, 0], [0, 0, 1]])
    x = T([nan, 1.0, nan], device, grad=True)
    g, = tg.grad(getattr(x, name)(), x, create_graph=True)
    close(g, [0.5, 0, 0.5])
    from tinygrad_rnn.study.forward_mode import jvp
    _, t = jvp(lambda x: getattr(x, name)(), [T([nan, 1.0, nan], device)], [np.array([[2.0, 7.0, 4.0]])])
    close(t, [3.0])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_with_nan_match_torch(device, name):
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 5.0, 1.0, 0.0], [4.0, 4.0, 6.0, np.nan]])
    x, t = T(a, device, grad=True), torch.tensor(a, requires_grad=True)
    getattr(x, name)().backward()
    getattr(t, name)().backward()
    close(x.grad, t.grad.numpy())
    x, t = T(a[:2, :3], device, grad=True), torch.tensor(a[:2, :3], requires_grad=True)
    (getattr(x, name)(axis=1) * T([2.0, 3.0], device)).sum().backward()      # one extreme per row
    (getattr(t, name)(dim=1).values * torch.tensor([2.0, 3.0], dtype=torch.float64)).sum().backward()
    close(x.grad, t.grad.numpy())


def test_var_correction(device):
    """Default var is unbiased (correction=1); correction=0 is NumPy's population variance."""
    a = distinct(np.random.default_rng(2), (3, 4))
    close(T(a, device).var(), np.var(a, ddof=1))
    close(T(a, device).var(axis=1, correction=0), np.var(a, axis=1))
    check_grads(lambda x: x.var(axis=0, correction=0), [a], device)
    with pytest.raises(ValueError, match="degrees of freedom"):
        T(a, device).var(axis=(0, 1), correction=12)
    with pytest.raises(ValueError, match="degrees of freedom"):
        T([1.0], device).var()


def test_mean_of_nothing_raises(device):
    with pytest.raises(ValueError, match="no elements"):
        T(np.ones((0, 3)), device).mean(axis=0)


# ----------------------------------------------------------------- shapes
@st.composite
def shape_and_reshape(draw):
    shape = draw(small_shapes())
    n = size_of(shape)
    target = draw(st.sampled_from([(n,), (-1,), (1, n), (n, 1), (-1, 1), (1, -1), shape[::-1], (1,) + shape,
                                   shape + (1,), ()] if n == 1 else
                                  [(n,), (-1,), (1, n), (n, 1), (-1, 1), (1, -1), shape[::-1], (1,) + shape,
                                   shape + (1,)]))
    return shape, target


@hyp()
@given(st_=shape_and_reshape(), seed=seeds)
def test_reshape(device, st_, seed):
    shape, target = st_
    a = np.random.default_rng(seed).standard_normal(shape)
    expected = a.reshape(target)
    close(T(a, device).reshape(target), expected)
    close(T(a, device).reshape(*target), expected)
    close(T(a, device).view(*target), expected)
    close(tg.reshape(T(a, device), target), expected)
    close(T(a, device).flatten(), a.ravel())
    check_grads(lambda x: x.reshape(target), [a], device)


@pytest.mark.parametrize("target,msg", [
    ((4,), r"cannot reshape \(2, 3\) \(6 elements\) to \(4,\)"),
    ((4, -1), "cannot reshape"),
    ((-1, -1), "cannot reshape"),
    ((2, -2), "cannot reshape"),
    ((7,), "cannot reshape"),
])
def test_reshape_wrong_size(device, target, msg):
    with pytest.raises(ValueError, match=msg):
        T(np.ones((2, 3)), device).reshape(target)


@st.composite
def shape_and_perm(draw):
    shape = draw(small_shapes())
    perm = tuple(draw(st.permutations(range(len(shape)))))
    return shape, perm


@hyp()
@given(sp=shape_and_perm(), seed=seeds)
def test_transpose_permute(device, sp, seed):
    shape, perm = sp
    a = np.random.default_rng(seed).standard_normal(shape)
    expected = a.transpose(perm)
    close(T(a, device).transpose(*perm), expected)
    close(T(a, device).transpose(perm), expected)
    close(T(a, device).permute(*perm), expected)
    close(tg.transpose(T(a, device), perm), expected)
    close(tg.permute(T(a, device), perm), expected)
    close(T(a, device).T, a.T)
    close(T(a, device).transpose(), a.transpose())
    check_grads(lambda x: x.permute(*perm), [a], device)
    check_grads(lambda x: x.T, [a], device)


@hyp()
@given(shape=small_shapes(min_dims=1), data=st.data(), seed=seeds)
def test_swapaxes(device, shape, data, seed):
    nd = len(shape)
    i, j = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    a = np.random.default_rng(seed).standard_normal(shape)
    close(T(a, device).swapaxes(i, j), np.swapaxes(a, i, j))
    check_grads(lambda x: x.swapaxes(i, j), [a], device)


@st.composite
def shape_and_target(draw):
    shape = draw(small_shapes(max_dims=2))
    other = draw(hnp.broadcastable_shapes(shape, max_dims=3, max_side=3))
    target = np.broadcast_shapes(shape, other)
    assume(size_of(target) <= MAX_SIZE)
    return shape, target


@hyp()
@given(st_=shape_and_target(), seed=seeds)
def test_broadcast_to(device, st_, seed):
    shape, target = st_
    a = np.random.default_rng(seed).standard_normal(shape)
    close(T(a, device).broadcast_to(target), np.broadcast_to(a, target))
    close(tg.broadcast_to(T(a, device), target), np.broadcast_to(a, target))
    check_grads(lambda x: x.broadcast_to(target), [a], device)


@pytest.mark.parametrize("shape,target", [((2, 3), (3, 2)), ((2, 3), (3,)), ((3,), (2, 2))])
def test_broadcast_to_bad_shape(device, shape, target):
    with pytest.raises(ValueError, match="broadcast_to: cannot broadcast"):
        T(np.ones(shape), device).broadcast_to(target)


@hyp()
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=2).filter(
    lambda s: size_of(s) <= 8), data=st.data(), seed=seeds)
def test_squeeze_unsqueeze(device, shape, data, seed):
    a = np.random.default_rng(seed).standard_normal(shape)
    nd = len(shape)
    close(T(a, device).squeeze(), np.squeeze(a))
    close(tg.squeeze(T(a, device)), np.squeeze(a))
    ones = [i for i, n in enumerate(shape) if n == 1]
    if ones:
        axis = data.draw(st.sampled_from(ones + [i - nd for i in ones]))
        close(T(a, device).squeeze(axis), np.squeeze(a, axis))
        close(T(a, device).squeeze(dim=axis), np.squeeze(a, axis))
        check_grads(lambda x: x.squeeze(axis), [a], device)
    axis = data.draw(st.integers(-nd - 1, nd))
    close(T(a, device).unsqueeze(axis), np.expand_dims(a, axis))
    close(tg.unsqueeze(T(a, device), axis), np.expand_dims(a, axis))
    check_grads(lambda x: x.unsqueeze(axis), [a], device)
    check_grads(lambda x: x.squeeze(), [a], device)


def test_squeeze_non_one_axis(device):
    with pytest.raises(ValueError, match=r"squeeze: axis 1 has size 3, expected 1"):
        T(np.ones((1, 3)), device).squeeze(1)
    with pytest.raises(ValueError, match=r"axis 1 has size 3"):
        T(np.ones((1, 3)), device).squeeze(-1)


# ----------------------------------------------------------------- indexing
@st.composite
def shape_and_basic_index(draw):
    shape = draw(small_shapes(min_dims=1))
    index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return shape, index


@hyp()
@given(si=shape_and_basic_index(), seed=seeds)
def test_getitem_basic(device, si, seed):
    """ints, slices (negative steps too), None and Ellipsis."""
    shape, index = si
    a = np.random.default_rng(seed).standard_normal(shape)
    close(T(a, device)[index], a[index])
    check_grads(lambda x: x[index], [a], device)


@st.composite
def shape_and_int_arrays(draw):
    shape = draw(small_shapes(min_dims=1))
    index = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=0, max_dims=2,
                                                                               max_side=4)))
    return shape, index


@hyp()
@given(si=shape_and_int_arrays(), seed=seeds)
def test_getitem_integer_arrays(device, si, seed):
    """Integer-array indices (repeats likely); repeated picks must add up in backward."""
    shape, index = si
    a = np.random.default_rng(seed).standard_normal(shape)
    tindex = tuple(tg.tensor(i, device=device) for i in index)
    close(T(a, device)[index], a[index])
    close(T(a, device)[tindex], a[index])
    check_grads(lambda x: x[index], [a], device)


@st.composite
def shape_and_mask(draw):
    shape = draw(small_shapes(min_dims=1))
    lead = draw(st.integers(1, len(shape)))
    mask = draw(hnp.arrays(np.bool_, shape[:lead]))
    return shape, mask


@hyp()
@given(sm=shape_and_mask(), seed=seeds)
def test_getitem_bool_mask(device, sm, seed):
    shape, mask = sm
    a = np.random.default_rng(seed).standard_normal(shape)
    close(T(a, device)[mask], a[mask])
    close(T(a, device)[tg.tensor(mask, device=device)], a[mask])
    check_grads(lambda x: x[mask], [a], device)


GETITEM_CASES = {
    "int": 1,
    "neg-int": -1,
    "int-int": (2, -3),
    "slice": slice(1, None),
    "step": (slice(None), slice(None, None, 2)),
    "neg-step": slice(None, None, -1),
    "neg-step-2": (slice(None), slice(3, 0, -2)),
    "none": (None, 1),
    "ellipsis-none": (Ellipsis, None, 0),
    "ellipsis": (0, Ellipsis),
    "list": [0, 0, 2],
    "2d-int-array": np.array([[0, 2], [2, 2]]),
    "pair-arrays": (np.array([0, 1, 0]), np.array([3, 3, 1])),
    "array-and-slice": (np.array([2, 2]), slice(1, 3)),
    "slice-and-array": (slice(None), [1, 1, -1]),
    "row-mask": np.array([True, False, True]),
    "full-mask": np.arange(12).reshape(3, 4) % 3 == 0,
}


@pytest.mark.parametrize("case", list(GETITEM_CASES))
def test_getitem_cases(device, case):
    index = GETITEM_CASES[case]
    a = np.arange(12.0).reshape(3, 4) / 7 - 0.5
    np_index = np.asarray(index) if isinstance(index, list) else index
    close(T(a, device)[index], a[np_index])
    check_grads(lambda x: x[index], [a], device)


def test_getitem_repeated_indices_accumulate(device):
    x = T([1.0, 2.0, 3.0, 4.0], device, grad=True)
    (x[[0, 0, 2, 0, -1]] * T([1.0, 2.0, 3.0, 4.0, 5.0], device)).sum().backward()
    close(x.grad, [7.0, 0.0, 3.0, 5.0])

    x = T(np.zeros((2, 3)), device, grad=True)
    x[tg.tensor([1, 1, 1], device=device), tg.tensor([0, 0, 2], device=device)].sum().backward()
    close(x.grad, [[0, 0, 0], [2, 0, 1]])

    # second order: d/dv of the accumulated gradient is the same count matrix
    x = T([1.0, 2.0, 3.0], device, grad=True)
    g, = tg.grad([(x[[1, 1, 1]] ** 2).sum()], [x], create_graph=True)
    close(g, [0.0, 12.0, 0.0])
    h, = tg.grad([g.sum()], [x])
    close(h, [0.0, 6.0, 0.0])


def test_getitem_bad_index_tensor(device):
    with pytest.raises(TypeError, match="integer or bool"):
        T([1.0, 2.0], device)[T([0.0], device)]


# ----------------------------------------------------------------- joins and splits
@st.composite
def cat_case(draw):
    nd = draw(st.integers(1, 3))
    base = list(draw(hnp.array_shapes(min_dims=nd, max_dims=nd, min_side=1, max_side=2)))
    axis = draw(st.integers(-nd, nd - 1))
    sizes = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    assume(sum(sizes) > 0)
    shapes = []
    for s in sizes:
        shape = list(base)
        shape[axis] = s
        shapes.append(tuple(shape))
    assume(sum(size_of(s) for s in shapes) <= MAX_SIZE)
    return shapes, axis


@hyp()
@given(case=cat_case(), seed=seeds)
def test_cat(device, case, seed):
    shapes, axis = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    expected = np.concatenate(arrays, axis)
    close(tg.cat([T(a, device) for a in arrays], axis), expected)
    close(tg.cat([T(a, device) for a in arrays], axis=axis), expected)
    check_grads(lambda *xs: tg.cat(list(xs), axis=axis), arrays, device)


@st.composite
def stack_case(draw):
    shape = draw(small_shapes(max_dims=2, max_side=2))
    n = draw(st.integers(1, 3))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return shape, n, axis


@hyp()
@given(case=stack_case(), seed=seeds)
def test_stack(device, case, seed):
    shape, n, axis = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) for _ in range(n)]
    close(tg.stack([T(a, device) for a in arrays], axis), np.stack(arrays, axis))
    check_grads(lambda *xs: tg.stack(xs, axis=axis), arrays, device)


@st.composite
def split_case(draw):
    shape = draw(small_shapes(min_dims=1))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    n = shape[axis]
    if draw(st.booleans()):
        sections = draw(st.integers(1, n + 1))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
        bounds = [0] + cuts + [n]
        sections = [b - a for a, b in zip(bounds, bounds[1:])]
    return shape, sections, axis


def _np_split(a, sections, axis):
    n = a.shape[axis]
    sizes = sections if isinstance(sections, list) else [sections] * (n // sections) + (
        [n % sections] if n % sections else [])
    return np.split(a, np.cumsum(sizes)[:-1], axis)


@hyp()
@given(case=split_case(), seed=seeds)
def test_split(device, case, seed):
    """A piece size (last piece may be smaller) or a list of sizes summing to the axis."""
    shape, sections, axis = case
    a = np.random.default_rng(seed).standard_normal(shape)
    pieces = tg.split(T(a, device), sections, axis)
    expected = _np_split(a, sections, axis)
    assert len(pieces) == len(expected)
    for p, e in zip(pieces, expected):
        close(p, e)
    check_grads(lambda x: tuple(tg.split(x, sections, axis=axis)), [a], device)


def test_split_grad_of_unused_pieces_is_zero(device):
    x = T(np.arange(6.0), device, grad=True)
    a, b, c = tg.split(x, [1, 2, 3])
    (b * 2).sum().backward()
    close(x.grad, [0, 2, 2, 0, 0, 0])


@pytest.mark.parametrize("n,chunks", [(6, 3), (6, 4), (5, 2), (1, 3), (4, 1)])
def test_chunk(device, n, chunks):
    """torch.chunk: pieces of ceil(n / chunks), the last may be smaller."""
    a = np.arange(2.0 * n).reshape(2, n) - 3
    pieces = tg.chunk(T(a, device), chunks, axis=1)
    size = -(-n // chunks)
    expected = [a[:, i:i + size] for i in range(0, n, size)]
    assert len(pieces) == len(expected) <= chunks
    for p, e in zip(pieces, expected):
        close(p, e)
    check_grads(lambda x: tuple(tg.chunk(x, chunks, axis=-1)), [a], device)


JOIN_DIM_CASES = {
    "cat": (lambda xs, **k: tg.cat(xs, **k), lambda arrs: np.concatenate(arrs, 1)),
    "stack": (lambda xs, **k: tg.stack(xs, **k), lambda arrs: np.stack(arrs, 1)),
    "split": (lambda xs, **k: tg.split(xs[0], 1, **k), lambda arrs: np.split(arrs[0], 3, 1)),
    "chunk": (lambda xs, **k: tg.chunk(xs[0], 3, **k), lambda arrs: np.split(arrs[0], 3, 1)),
    "unsqueeze": (lambda xs, **k: xs[0].unsqueeze(**k), lambda arrs: arrs[0][:, None]),
    "squeeze": (lambda xs, **k: xs[0][:, :1].squeeze(**k), lambda arrs: arrs[0][:, 0]),
}


@pytest.mark.parametrize("case", list(JOIN_DIM_CASES))
def test_joins_accept_dim_alias(device, case):
    """PyTorch's ``dim=`` works wherever NumPy's ``axis=`` does (here dim=1)."""
    fn, ref = JOIN_DIM_CASES[case]
    arrays = [np.arange(6.0).reshape(2, 3), -np.arange(6.0).reshape(2, 3)]
    got = fn([T(a, device) for a in arrays], dim=1)
    expected = ref(arrays)
    for g, e in zip(got if isinstance(got, list) else [got], expected if isinstance(expected, list) else [expected]):
        close(g, e)


def test_join_and_split_errors(device):
    x, y = T(np.ones((2, 3)), device), T(np.ones((3, 2)), device)
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(3, 2\), which does not match \(2, 3\)"):
        tg.cat([x, y])
    with pytest.raises(ValueError, match="does not match"):
        tg.cat([x, T(np.ones(3), device)])
    with pytest.raises(ValueError, match="non-empty"):
        tg.cat([])
    with pytest.raises(ValueError, match=r"stack: tensor 1 has shape \(3, 2\), expected \(2, 3\)"):
        tg.stack([x, y])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not sum to 3, the length of axis 1"):
        tg.split(x, [1, 1], axis=1)
    with pytest.raises(ValueError, match="do not sum to 2"):
        tg.split(x, [3, -1], axis=0)
    with pytest.raises(ValueError, match="piece size must be positive"):
        tg.split(x, 0)
    with pytest.raises(ValueError, match="chunks must be positive"):
        tg.chunk(x, 0)


# ----------------------------------------------------------------- dtype casts
def test_astype_double_float(device):
    a = np.array([[0.1, -1.5], [2.25, 3.0]])
    x32 = tg.tensor(a, dtype=tg.float32, device=device, requires_grad=True)
    y = x32.double()
    assert y.dtype == tg.float64
    close(y, a.astype(np.float32).astype(np.float64))
    (y * 2).sum().backward()
    assert x32.grad.dtype == tg.float32             # gradient comes back in the input's dtype
    close(x32.grad, np.full((2, 2), 2.0))

    x64 = T(a, device)
    assert x64.float().dtype == tg.float32
    assert x64.astype("float32").dtype == tg.float32
    assert x64.astype(tg.float64) is x64
    assert x64.to(dtype=tg.float32).dtype == tg.float32
    as_int = T(a, device, grad=True).astype(tg.int64)
    assert as_int.dtype == tg.int64 and not as_int.requires_grad
    np.testing.assert_array_equal(as_int.numpy(), a.astype(np.int64))

    # the float32 round trip limits finite differences: use a wider step
    check_grads(lambda x: x.float(), [a], device, eps=1e-3)
    check_grads(lambda x: x.float().double() * x, [a], device, eps=1e-3)
    check_grads(lambda x: x.astype(tg.float32), [a], device, eps=1e-3)


def test_astype_unsupported_dtype(device):
    with pytest.raises(TypeError, match="not supported"):
        T([1.0], device).astype(np.float16)


# ----------------------------------------------------------------- out-of-range axes
OUT_OF_RANGE = {
    "sum": lambda x: x.sum(axis=2),
    "sum-neg": lambda x: x.sum(axis=-3),
    "sum-tuple": lambda x: x.sum(axis=(0, 2)),
    "mean": lambda x: x.mean(axis=2),
    "max": lambda x: x.max(axis=2),
    "min": lambda x: x.min(axis=-3),
    "var": lambda x: x.var(axis=5),
    "squeeze": lambda x: x.squeeze(2),
    "unsqueeze": lambda x: x.unsqueeze(3),
    "unsqueeze-neg": lambda x: x.unsqueeze(-4),
    "cat": lambda x: tg.cat([x, x], axis=2),
    "stack": lambda x: tg.stack([x, x], axis=3),
    "split": lambda x: tg.split(x, 1, axis=2),
    "chunk": lambda x: tg.chunk(x, 2, axis=2),
    "transpose": lambda x: x.transpose(0, 2),
    "permute-neg": lambda x: x.permute(0, -3),
    "swapaxes": lambda x: x.swapaxes(0, 2),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_out_of_range_axis(device, case):
    """An axis beyond the tensor's dims is a ValueError naming the axis."""
    x = T(np.ones((2, 3)), device)
    with pytest.raises(ValueError, match=r"axis|axes"):
        OUT_OF_RANGE[case](x)


def test_repeated_axis(device):
    with pytest.raises(ValueError, match="repeats an axis"):
        T(np.ones((2, 3)), device).sum(axis=(1, -1))
