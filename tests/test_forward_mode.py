"""Forward mode: every op's ``jvp`` rule, and the ``jvp`` walk over the recorded graph.

For each op with a rule, K tangent directions at once (some inputs without a
tangent) are checked two independent ways in float64:
* against central finite differences (f(x + e v) - f(x - e v)) / 2e, and
* against reverse mode: for a random cotangent u, <u, J v> = <J^T u, v> with J^T u from tg.grad.
Hypothesis draws the shapes, including size-1 dims, broadcasting and 0-d tensors.
Where an op is not differentiable (ties of max/min, |a| at 0, clip on its bounds)
finite differences do not apply; there the rule must be the one the backward
implies, which the reverse-mode relation checks on its own (TIE_CASES).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
from tinygrad_rnn import backend, ops
from tinygrad_rnn.nn import trace_scan
from tinygrad_rnn.study.forward_mode import jvp
from helpers import Cube, hyp


# ----------------------------------------------------------------- the check
def as_list(out):
    return [out] if isinstance(out, tg.Tensor) else list(out)


def check_jvp(data, device, fn, arrays, fd_rtol=1e-6, finite_differences=True):
    """fn's jvp at ``arrays`` against finite differences and against <J^T u, v> from reverse mode
    (only the latter with ``finite_differences=False``, for points where fn has no derivative)."""
    k = data.draw(st.integers(1, 3), label="K")
    has = data.draw(st.lists(st.booleans(), min_size=len(arrays), max_size=len(arrays)).filter(any), label="seeded")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    directions = [rng.standard_normal((k,) + a.shape) if h else None for a, h in zip(arrays, has)]

    def run(values):
        return as_list(fn(*[tg.tensor(v, dtype=tg.float64, device=device) for v in values]))

    out, tangents = jvp(fn, [tg.tensor(a, dtype=tg.float64, device=device) for a in arrays], directions)
    out, tangents = as_list(out), as_list(tangents)
    expected = run(arrays)
    assert len(out) == len(tangents) == len(expected)
    for o, t, e in zip(out, tangents, expected):
        np.testing.assert_array_equal(o.numpy(), e.numpy())
        assert t.shape == (k,) + o.shape and t.dtype == tg.float64 and t.device == o.device

    eps = 1e-6
    for j in range(k if finite_differences else 0):
        plus = run([a if d is None else a + eps * d[j] for a, d in zip(arrays, directions)])
        minus = run([a if d is None else a - eps * d[j] for a, d in zip(arrays, directions)])
        for i, (p, m, t) in enumerate(zip(plus, minus, tangents)):
            fd = (p.numpy() - m.numpy()) / (2 * eps)
            np.testing.assert_allclose(t.numpy()[j], fd, rtol=fd_rtol, atol=1e-7, err_msg=f"output {i}, K={j}")

    leaves = [tg.tensor(a, dtype=tg.float64, device=device, requires_grad=True) for a in arrays]
    outs = as_list(fn(*leaves))
    us = [rng.standard_normal(o.shape) for o in outs]
    total = None
    for o, u in zip(outs, us):
        term = (o * tg.tensor(u, dtype=tg.float64, device=o.device)).sum()
        total = term if total is None else total + term
    seeded = [(leaf, d) for leaf, d in zip(leaves, directions) if d is not None]
    grads = tg.grad(total, [leaf for leaf, _ in seeded], allow_unused=True)
    for j in range(k):
        forward = [float(np.sum(u * t.numpy()[j])) for u, t in zip(us, tangents)]
        reverse = [0.0 if g is None else float(np.sum(g.numpy() * d[j])) for g, (_, d) in zip(grads, seeded)]
        scale = sum(abs(x) for x in forward + reverse) + 1e-300
        assert abs(sum(forward) - sum(reverse)) <= 1e-10 * scale, (j, forward, reverse)


# ----------------------------------------------------------------- drawing inputs
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)
triples = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=1, max_side=3)


def normal(data, shape):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="values"))
    return rng.standard_normal(shape)


def positive(data, shape):
    return np.abs(normal(data, shape)) + 0.5


def with_zeros(data, shape):
    x = normal(data, shape)
    return np.where(x < 0, 0.0, x)


def away_from_zero(data, shape, gap=0.5):
    x = normal(data, shape)
    return np.where(x < 0, x - gap, x + gap)


def wide(data, shape):
    """Normal values spread to +-20, so softplus is tried where it saturates."""
    return 8 * normal(data, shape)


def shifted(data, shape):
    """Normal values moved off ``normal``'s: a second operand drawn with the same seed never ties."""
    return normal(data, shape) + 0.25


def few_values(data, shape):
    """Values from {-1, 0, 1}: ties, and zeros, almost everywhere."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="values"))
    return rng.integers(-1, 2, shape).astype(np.float64)


def on_bounds(data, shape):
    """Values on the clip bounds of BOUNDS, and between and beyond them."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="values"))
    return rng.choice([-1.0, -0.5, 0.0, 0.2, 0.5, 1.0], shape)


def broadcast_source(data, target):
    """A shape that broadcasts to ``target``: some leading dims dropped, some dims set to 1."""
    drop = data.draw(st.integers(0, len(target)), label="dims dropped")
    ones = data.draw(st.lists(st.booleans(), min_size=len(target) - drop, max_size=len(target) - drop))
    return tuple(1 if o else n for o, n in zip(ones, target[drop:]))


def binary(fn, left=normal, right=normal):
    def make(data):
        sa, sb = data.draw(pairs, label="shapes").input_shapes
        return fn, [left(data, sa), right(data, sb)]
    return make


def unary(fn, values=normal):
    def make(data):
        return fn, [values(data, data.draw(shapes, label="shape"))]
    return make


def matmul_case(data):
    n, k, m = (data.draw(st.integers(1, 3)) for _ in range(3))
    batch_a, batch_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3),
                                 label="batch dims").input_shapes
    form = data.draw(st.sampled_from(["vv", "vm", "mv", "mm", "batched"]), label="form")
    sa = {"vv": (k,), "vm": (k,), "mv": (n, k), "mm": (n, k)}.get(form, batch_a + (n, k))
    sb = {"vv": (k,), "vm": (k, m), "mv": (k,), "mm": (k, m)}.get(form, batch_b + (k, m))
    if form == "batched" and data.draw(st.booleans(), label="one operand 1-D"):
        sa, sb = ((k,), sb) if data.draw(st.booleans()) else (sa, (k,))
    return (lambda a, b: a @ b), [normal(data, sa), normal(data, sb)]


def sum_case(data):
    shape = data.draw(shapes, label="shape")
    axes = data.draw(st.none() | st.lists(st.integers(0, max(len(shape) - 1, 0)), unique=True, max_size=len(shape))
                     .map(tuple), label="axes")
    keepdims = data.draw(st.booleans(), label="keepdims")
    return (lambda a: a.sum(axis=axes, keepdims=keepdims)), [normal(data, shape)]


def reshape_case(data):
    shape = data.draw(shapes, label="shape")
    size = int(np.prod(shape))
    target = data.draw(st.sampled_from([(size,), (1, size), (size, 1), shape[::-1], (-1,)]), label="target")
    return (lambda a: a.reshape(target)), [normal(data, shape)]


def transpose_case(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), label="shape")
    axes = tuple(data.draw(st.permutations(range(len(shape))), label="axes"))
    return (lambda a: a.transpose(axes)), [normal(data, shape)]


def broadcast_to_case(data):
    target = data.draw(shapes, label="target")
    return (lambda a: a.broadcast_to(target)), [normal(data, broadcast_source(data, target))]


BOUNDS = [(-0.5, None), (None, 0.5), (-0.5, 0.5), (0.2, 0.2)]


def clip_case(values):
    def make(data):
        lo, hi = data.draw(st.sampled_from(BOUNDS), label="bounds")
        return (lambda a: a.clip(lo, hi)), [values(data, data.draw(shapes, label="shape"))]
    return make


def extreme_case(reduce, values=normal):
    def make(data):
        shape = data.draw(shapes, label="shape")
        axes = data.draw(st.none() | st.lists(st.integers(0, max(len(shape) - 1, 0)), unique=True,
                                              max_size=len(shape)).map(tuple), label="axes")
        keepdims = data.draw(st.booleans(), label="keepdims")
        return (lambda a: getattr(a, reduce)(axis=axes, keepdims=keepdims)), [values(data, shape)]
    return make


def basic_index(data, shape):
    parts = []
    for n in shape[:data.draw(st.integers(0, len(shape)), label="dims indexed")]:
        start = data.draw(st.integers(-n, n - 1))
        parts.append(data.draw(st.sampled_from([start, slice(None), slice(start, None), slice(None, None, -1),
                                                slice(None, None, 2)])))
        if data.draw(st.booleans()):
            parts.insert(data.draw(st.integers(0, len(parts))), None)
    if data.draw(st.booleans(), label="ellipsis"):
        parts.insert(data.draw(st.integers(0, len(parts))), Ellipsis)
    return tuple(parts)


def getitem_basic_case(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    index = basic_index(data, shape)
    return (lambda a: a[index]), [normal(data, shape)]


ADVANCED = [lambda x: x[[0, 2, 0]], lambda x: x[:, [1, 1, 0]], lambda x: x[[0, 1], :, [1, 0]],
            lambda x: x[..., [1, 0]], lambda x: x[np.array([[True, False, True, False]] * 3)],
            lambda x: x[None, [2, 0], 1:]]


def getitem_advanced_case(data):
    fn = data.draw(st.sampled_from(ADVANCED), label="index")
    return fn, [normal(data, (3, 4, 2))]


def on_device(index, like):
    """``index`` with its lists and arrays on ``like``'s device, as Tensor indexing does."""
    return tuple(backend.to_device(np.asarray(p), like.device) if isinstance(p, (list, np.ndarray)) else p
                 for p in index)


def index_add(index, shape):
    """``zeros(shape)`` with its argument added at ``index``, and an argument of the matching shape."""
    def fn(g):
        return ops.IndexAdd.apply(g, on_device(index, g), shape)
    return fn, np.zeros(shape)[index].shape


def index_add_basic_case(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    fn, source = index_add(basic_index(data, shape), shape)
    return fn, [normal(data, source)]


ADVANCED_INDEX_ADD = [                     # (index, shape); most repeat a position, whose values add up
    (([0, 2, 0],), (3, 4, 2)), ((slice(None), [1, 1, 0]), (3, 4, 2)), (([0, 1], slice(None), [1, 0]), (3, 4, 2)),
    ((Ellipsis, [1, 1, 0]), (3, 4, 2)), ((np.array([[True, False, True, False]] * 3),), (3, 4, 2)),
    ((None, [2, 0, 2], slice(1, None)), (3, 4, 2)), (([[0, 0], [2, 0]], [1, 1]), (3, 4, 2)),
    (([4, 4, 4, 1],), (5,)), ((np.array([2, 0, 2]), Ellipsis, 1), (3, 4, 2))]


def index_add_advanced_case(data):
    index, shape = data.draw(st.sampled_from(ADVANCED_INDEX_ADD), label="index")
    fn, source = index_add(index, shape)
    return fn, [normal(data, source)]


def join_shapes(data, same):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    count = data.draw(st.integers(1, 3), label="count")
    sizes = [shape[axis] if same else data.draw(st.integers(1, 3)) for _ in range(count)]
    return [shape[:axis % len(shape)] + (n,) + shape[axis % len(shape) + 1:] for n in sizes], axis


def concatenate_case(data):
    shapes_, axis = join_shapes(data, same=False)
    return (lambda *xs: tg.cat(xs, axis=axis)), [normal(data, s) for s in shapes_]


def stack_case(data):
    shapes_, _ = join_shapes(data, same=True)
    axis = data.draw(st.integers(-len(shapes_[0]) - 1, len(shapes_[0])), label="new axis")
    return (lambda *xs: tg.stack(xs, axis=axis)), [normal(data, s) for s in shapes_]


def split_case(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4), label="shape")
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    cut = data.draw(st.integers(1, shape[axis] - 1), label="cut")
    return (lambda a: tg.split(a, [cut, shape[axis] - cut], axis=axis)), [normal(data, shape)]


def unbind_case(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=3), label="shape")
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    return (lambda a: tg.unbind(a, axis=axis)), [normal(data, shape)]


def where_case(data):
    sc, sa, sb = data.draw(triples, label="shapes").input_shapes
    cond = normal(data, sc) > 0
    if data.draw(st.booleans(), label="scalar b"):
        return (lambda a: tg.where(tg.tensor(cond, device=a.device), a, 0.5)), [normal(data, sa)]
    return (lambda a, b: tg.where(tg.tensor(cond, device=a.device), a, b)), [normal(data, sa), normal(data, sb)]


def scan_case(data):
    """A whole-sequence node (hand-tuned kernel or traced step) as a function of x, h0 and W_hh,
    with variable lengths and either direction."""
    kind = data.draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru", "peephole"]), label="cell")
    fused = data.draw(st.booleans(), label="kernel")
    steps, batch, hidden = (data.draw(st.integers(1, 3), label=n) for n in ("T", "B", "H"))
    lengths = data.draw(st.none() | st.lists(st.integers(0, steps), min_size=batch, max_size=batch), label="lengths")
    reverse = data.draw(st.booleans(), label="reverse")
    if kind.startswith("rnn"):
        cell = tg.nn.RNNCell(2, hidden, nonlinearity=kind[4:], fused=fused, dtype=tg.float64)
    elif kind == "peephole":
        cell = tg.nn.PeepholeLSTMCell(2, hidden, dtype=tg.float64)
    else:
        cell = {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](2, hidden, fused=fused, dtype=tg.float64)
    rows = cell.weight_hh.shape[0]
    parts = 2 if kind in ("lstm", "peephole") else 1

    def fn(x, w, *state):
        cell.to(x.device)
        cell.weight_hh = w if w.requires_grad else tg.nn.Parameter(w)
        out, final = tg.nn.unroll(cell, x, state if parts == 2 else state[0], lengths, reverse=reverse)
        return [out] + list(final if parts == 2 else [final])

    x = away_from_zero(data, (steps, batch, 2), 0.3) if kind == "rnn_relu" else normal(data, (steps, batch, 2))
    return fn, [x, 0.3 * normal(data, (rows, hidden))] + [normal(data, (batch, hidden)) for _ in range(parts)]


CASES = {
    "add": (binary(lambda a, b: a + b), {"Add"}),
    "sub": (binary(lambda a, b: a - b), {"Sub"}),
    "mul": (binary(lambda a, b: a * b), {"Mul"}),
    "div": (binary(lambda a, b: a / b, right=away_from_zero), {"Div"}),
    "scalars": (unary(lambda a: (2.0 - a) * 1.5 + 0.5 - 3.0 / (a * a + 1.0)), {"Add", "Sub", "Mul", "Div"}),
    "neg": (unary(lambda a: -a), {"Neg"}),
    "pow_scalar_exponent": (unary(lambda a: a ** 2.5, positive), {"Pow"}),
    "pow_zero_exponent": (unary(lambda a: a ** 0, with_zeros), {"Pow"}),     # d/da a^0 = 0, also at a = 0
    "pow_tensor_exponent": (binary(lambda a, b: a ** b, left=positive), {"Pow"}),
    "pow_scalar_base": (unary(lambda a: 2.0 ** a), {"Pow"}),
    "exp": (unary(lambda a: a.exp()), {"Exp"}),
    "log": (unary(lambda a: a.log(), positive), {"Log"}),
    "tanh": (unary(lambda a: a.tanh()), {"Tanh"}),
    "sigmoid": (unary(lambda a: a.sigmoid()), {"Sigmoid"}),
    "relu": (unary(lambda a: a.relu(), away_from_zero), {"Relu"}),
    "matmul": (matmul_case, {"MatMul"}),
    "sum": (sum_case, {"Sum"}),
    "reshape": (reshape_case, {"Reshape"}),
    "transpose": (transpose_case, {"Transpose"}),
    "broadcast_to": (broadcast_to_case, {"BroadcastTo"}),
    "getitem_basic": (getitem_basic_case, {"GetItem"}),
    "getitem_advanced": (getitem_advanced_case, {"GetItem"}),
    "concatenate": (concatenate_case, {"Concatenate"}),
    "stack": (stack_case, {"Stack"}),
    "split": (split_case, {"Split"}),
    "unbind": (unbind_case, {"Unbind"}),
    "where": (where_case, {"Where"}),
    "sqrt": (unary(lambda a: a.sqrt(), positive), {"Sqrt"}),
    "abs": (unary(lambda a: a.abs(), away_from_zero), {"Abs"}),
    "softplus": (unary(tg.softplus, wide), {"Softplus"}),
    "maximum": (binary(tg.maximum, right=shifted), {"Maximum"}),
    "minimum": (binary(tg.minimum, right=shifted), {"Minimum"}),
    "maximum_scalar": (unary(lambda a: tg.maximum(a, 0.25)), {"Maximum"}),
    "minimum_scalar": (unary(lambda a: tg.minimum(0.25, a)), {"Minimum"}),
    "clip": (clip_case(away_from_zero), {"Clip"}),
    "max": (extreme_case("max"), {"Max"}),
    "min": (extreme_case("min"), {"Min"}),
    "index_add_basic": (index_add_basic_case, {"IndexAdd"}),
    "index_add_advanced": (index_add_advanced_case, {"IndexAdd"}),
    "to_cpu": (unary(lambda a: ops.ToDevice.apply(a, "cpu")), {"ToDevice"}),
    "scan": (scan_case, {"Scan"}),
    "remainder": (binary(lambda a, b: a % b, right=away_from_zero), {"Remainder"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
@hyp(16)
@given(data=st.data())
def test_jvp_rule_matches_finite_differences_and_reverse_mode(device, name, data):
    fn, arrays = CASES[name][0](data)
    check_jvp(data, device, fn, arrays)


# Points where the op has no derivative: the jvp must be the linear map whose adjoint is the
# backward (at ties both operands or all tied positions share equally, |a| and clip pass 0 / the
# whole tangent as their gradients do), which only the reverse-mode relation can check.
TIE_CASES = {
    "maximum_ties": (binary(tg.maximum, few_values, few_values), {"Maximum"}),
    "minimum_ties": (binary(tg.minimum, few_values, few_values), {"Minimum"}),
    "maximum_scalar_ties": (unary(lambda a: tg.maximum(a, 0.0), few_values), {"Maximum"}),
    "minimum_scalar_ties": (unary(lambda a: tg.minimum(0.0, a), few_values), {"Minimum"}),
    "abs_at_zero": (unary(lambda a: a.abs(), few_values), {"Abs"}),
    "clip_on_bounds": (clip_case(on_bounds), {"Clip"}),
    "max_ties": (extreme_case("max", few_values), {"Max"}),
    "min_ties": (extreme_case("min", few_values), {"Min"}),
}


@pytest.mark.parametrize("name", sorted(TIE_CASES))
@hyp(16)
@given(data=st.data())
def test_jvp_rule_at_ties_is_the_adjoint_of_backward(device, name, data):
    fn, arrays = TIE_CASES[name][0](data)
    check_jvp(data, device, fn, arrays, finite_differences=False)


def test_tie_conventions(device):
    """The values at ties, written out: the mean of the tied tangents; |a| at 0 and clip on a bound as documented."""
    x = tg.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], dtype=tg.float64, device=device)
    v = np.arange(12.0).reshape(2, 2, 3)
    _, t = jvp(lambda x: x.max(axis=1), [x], [v])
    np.testing.assert_allclose(t.numpy(), [[1.5, 4.0], [7.5, 10.0]])
    _, t = jvp(lambda x: x.min(), [x], [v])
    np.testing.assert_allclose(t.numpy(), [4.0, 10.0])
    a, b = (tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, device=device) for _ in range(2))
    ta, tb = np.array([[2.0, 4.0, 6.0]]), np.array([[10.0, 20.0, 30.0]])
    for op in (tg.maximum, tg.minimum):
        _, t = jvp(op, [a, b], [ta, tb])
        np.testing.assert_allclose(t.numpy(), [[6.0, 12.0, 18.0]])
    _, t = jvp(lambda a: tg.maximum(a, 2.0), [a], [ta])
    np.testing.assert_allclose(t.numpy(), [[0.0, 2.0, 6.0]])
    z = tg.tensor([-1.0, 0.0, 0.5, 2.0], dtype=tg.float64, device=device)
    _, t = jvp(lambda z: z.abs(), [z], [np.ones((1, 4))])
    np.testing.assert_array_equal(t.numpy(), [[-1.0, 0.0, 1.0, 1.0]])
    _, t = jvp(lambda z: z.clip(0.0, 0.5), [z], [np.ones((1, 4))])
    np.testing.assert_array_equal(t.numpy(), [[0.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("source, target", [(tg.float64, tg.float32), (tg.float32, tg.float64)])
@hyp(8)
@given(data=st.data())
def test_cast_jvp_is_the_tangent_in_the_new_dtype(device, source, target, data):
    """Cast is linear: its tangent is v in the output's dtype, checked as check_jvp does but at the
    float32 precision on one side (finite differences with a large step, exact for a linear map)."""
    shape = data.draw(shapes, label="shape")
    k = data.draw(st.integers(1, 3), label="K")
    x = normal(data, shape).astype(source)
    v = normal(data, (k,) + shape).astype(source)

    def fn(x):
        return x.astype(target) * 2.0

    out, t = jvp(fn, [tg.tensor(x, device=device)], [v])
    assert t.dtype == target and out.dtype == target and t.shape == (k,) + shape
    np.testing.assert_array_equal(t.numpy(), 2.0 * v.astype(target))
    for j in range(k):
        plus, minus = (fn(tg.tensor(x + s * v[j], device=device)).numpy() for s in (0.5, -0.5))
        np.testing.assert_allclose(t.numpy()[j], plus - minus, rtol=1e-5, atol=1e-5)
    leaf = tg.tensor(x, device=device, requires_grad=True)
    u = normal(data, shape).astype(target)
    grad, = tg.grad((fn(leaf) * tg.tensor(u, device=device)).sum(), [leaf])
    assert grad.dtype == source
    for j in range(k):
        forward, reverse = float(np.sum(u * t.numpy()[j], dtype=np.float64)), float(np.sum(grad.numpy() * v[j]))
        assert abs(forward - reverse) <= 1e-5 * (np.sum(np.abs(u * t.numpy()[j])) + 1e-30)


@hyp(8)
@given(data=st.data())
def test_to_device_jvp_moves_the_tangent(device, data):
    """Both ways between cpu and ``device``; the tangent lands on the output's device."""
    fn, arrays = unary(lambda a: ops.ToDevice.apply(a, device))(data)
    check_jvp(data, "cpu", fn, arrays)
    fn, arrays = unary(lambda a: ops.ToDevice.apply(a, "cpu"))(data)
    check_jvp(data, device, fn, arrays)


def test_every_rule_is_tested():
    """Each Function class defining jvp is exercised by a case above, and no case names a class without one."""
    classes = [c for module in (ops, trace_scan) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, tg.Function)]
    with_rule = {c.__name__ for c in classes if hasattr(c, "jvp")}        # as the walk looks it up (inherited too)
    tested = set().union(*(names for _, names in CASES.values()), *(names for _, names in TIE_CASES.values()))
    assert with_rule == tested | {"Cast"}           # Cast: test_cast_jvp_is_the_tangent_in_the_new_dtype


# ----------------------------------------------------------------- the walk
def test_op_without_rule_on_the_tangent_path_raises_naming_it(device):
    x = tg.randn(3, dtype=tg.float64, device=device)
    with pytest.raises(NotImplementedError, match="Cube has no forward-mode rule"):
        jvp(lambda x: Cube.apply(x).tanh(), [x], [np.ones((1, 3))])


def test_op_without_rule_off_the_tangent_path_is_a_constant(device):
    """Only ops that a tangent reaches need a rule: Cube of an unseeded input is a constant."""
    rng = np.random.default_rng(0)
    x, y = (tg.tensor(rng.standard_normal(3), dtype=tg.float64, device=device) for _ in range(2))
    v = rng.standard_normal((2, 3))
    _, t = jvp(lambda x, y: x * Cube.apply(y.requires_grad_()), [x, y], [v, None])
    np.testing.assert_allclose(t.numpy(), v * y.numpy() ** 3, rtol=1e-14)


def test_parameters_reached_through_a_module_get_their_tangent(device):
    """A Parameter passed as a primal is the tensor the module uses: d/dW of W x + b is x per direction."""
    layer = tg.nn.Linear(3, 2, device=device, dtype=tg.float64)
    x = tg.randn(4, 3, dtype=tg.float64, device=device)
    v = np.random.default_rng(1).standard_normal((5, 2, 3))
    out, t = jvp(lambda x, w: layer(x), [x, layer.weight], [None, v])
    np.testing.assert_allclose(t.numpy(), np.einsum("bi,koi->kbo", x.numpy(), v), rtol=1e-13)
    np.testing.assert_allclose(out.numpy(), layer(x).numpy(), rtol=1e-15)
    assert layer.weight.grad is None and not out.requires_grad


def test_zero_tangents_and_outputs_without_dependence(device):
    x = tg.randn(2, 3, dtype=tg.float64, device=device)
    c = tg.randn(2, dtype=tg.float64, device=device)
    out, t = jvp(lambda x: x.tanh(), [x], [None])
    assert t is None
    (a, b), (ta, tb) = jvp(lambda x: (x.sum(axis=1), c * 2), [x], [np.ones((4, 2, 3))])
    np.testing.assert_allclose(ta.numpy(), np.full((4, 2), 3.0))
    np.testing.assert_array_equal(tb.numpy(), np.zeros((4, 2)))


def test_jvp_accepts_a_single_tensor_and_tensor_tangents(device):
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, device=device)
    _, t = jvp(lambda x: (x * x).sum(), x, tg.eye(2, dtype=tg.float64, device=device))
    np.testing.assert_allclose(t.numpy(), [2.0, 4.0])


def test_a_non_leaf_primal_is_cut_from_its_history(device):
    """The tangent of a computed primal is the one given, not one carried through its history."""
    w = tg.randn(3, dtype=tg.float64, device=device, requires_grad=True)
    h = w.exp()
    v = np.ones((1, 3))
    _, t = jvp(lambda h: h * 2, [h], [v])
    np.testing.assert_allclose(t.numpy(), 2 * v)


def test_bad_tangents_raise(device):
    x = tg.randn(2, 3, dtype=tg.float64, device=device)
    y = tg.randn(3, dtype=tg.float64, device=device)
    with pytest.raises(ValueError, match=r"tangents\[0\] has shape \(2, 3\), expected \(K,\) \+ \(2, 3\)"):
        jvp(lambda x: x * 2, [x], [np.ones((2, 3))])
    with pytest.raises(ValueError, match="same K"):
        jvp(lambda x, y: x * y, [x, y], [np.ones((2, 2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="expected a sequence of 2 tangents"):
        jvp(lambda x, y: x * y, [x, y], [np.ones((2, 2, 3))])
    with pytest.raises(ValueError, match="same tensor"):
        p = tg.randn(3, dtype=tg.float64, device=device, requires_grad=True)
        jvp(lambda a, b: a * b, [p, p], [np.ones((1, 3)), np.ones((1, 3))])
    with pytest.raises(TypeError, match="only float tensors take a tangent"):
        jvp(lambda i: i * 2, [tg.tensor([1, 2], device=device)], [np.ones((1, 2))])
    with pytest.raises(TypeError, match="must return a Tensor"):
        jvp(lambda x: 3.0, [x], [np.ones((1, 2, 3))])


def test_a_freed_graph_read_from_outside_raises(device):
    w = tg.randn(3, dtype=tg.float64, device=device, requires_grad=True)
    h = w.tanh()
    h.sum().backward()
    x = tg.randn(3, dtype=tg.float64, device=device)
    with pytest.raises(RuntimeError, match="Tanh whose graph was freed"):
        jvp(lambda x: x * h, [x], [np.ones((1, 3))])


def test_a_long_chain_does_not_recurse(device):
    """The walk is iterative: 5,000 nodes in a chain run without RecursionError."""
    x = tg.tensor([0.5], dtype=tg.float64, device=device)

    def chain(x):
        for _ in range(5000):
            x = x * 1.0001
        return x

    _, t = jvp(chain, [x], [np.ones((1, 1))])
    np.testing.assert_allclose(t.numpy(), [[1.0001 ** 5000]], rtol=1e-10)
