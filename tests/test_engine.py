"""The backward pass: accumulation, freeing the graph, errors, long chains, tg.grad,
higher-order gradients, hooks, grad mode, anomaly detection and dtypes."""
import gc
import sys
import threading
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

# The profile loaded by conftest sets the example budget; this only lets @given
# tests take the (stateless) device fixture.
with_device = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

f64 = tg.float64


def leaf(data, device, dtype=f64, requires_grad=True):
    return tg.tensor(np.asarray(data, dtype=np.float64), dtype=dtype, device=device, requires_grad=requires_grad)


def close(t, expected, rtol=1e-10, atol=1e-12):
    actual = t.numpy() if isinstance(t, tg.Tensor) else np.asarray(t)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def vectors(min_size=1, max_size=6, lo=-3.0, hi=3.0):
    return hnp.arrays(np.float64, st.integers(min_size, max_size),
                      elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False))


@st.composite
def vector_pairs(draw, lo=-3.0, hi=3.0):
    n = draw(st.integers(1, 6))
    elems = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(np.float64, n, elements=elems)), draw(hnp.arrays(np.float64, n, elements=elems))


# ----- accumulation -----
@with_device
@given(vectors())
def test_tensor_used_many_times_accumulates(device, a):
    x = leaf(a, device)
    (x * x + x * 3).sum().backward()
    close(x.grad, 2 * a + 3)


def test_grad_accumulates_across_backward_calls(device):
    a = np.array([0.5, -1.5, 2.0])
    x = leaf(a, device)
    (x * x).sum().backward()
    close(x.grad, 2 * a)
    (x * x * x).sum().backward()
    close(x.grad, 2 * a + 3 * a * a)


def test_diamond_graph(device):
    a = np.array([-1.2, 0.3, 0.9])
    x = leaf(a, device)
    t = x.tanh()            # shared node with two consumers of different depth
    left = t * x * 2
    right = t.exp()
    (left + right + t).sum().backward()
    th = np.tanh(a)
    dt = 2 * a + np.exp(th) + 1
    close(x.grad, dt * (1 - th ** 2) + 2 * th)


def test_shared_node_runs_its_backward_once_with_the_full_gradient(device):
    calls = []

    class Double(tg.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            calls.append(g.copy())
            return g * 2

    a = np.array([1.0, -2.0])
    x = leaf(a, device)
    d = Double.apply(x)
    # d feeds a short branch and a long branch; the long one is several generations deeper
    long_branch = ((d * 1.5).tanh() * 3).exp()
    (d + long_branch).sum().backward()
    assert len(calls) == 1
    u = np.tanh(2 * a * 1.5)
    expected_gd = 1 + np.exp(3 * u) * 3 * (1 - u ** 2) * 1.5
    close(tg.tensor(calls[0]), expected_gd)
    close(x.grad, 2 * expected_gd)


# ----- freeing and retaining the graph -----
def test_second_backward_through_freed_graph_raises(device):
    x = leaf([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_through_a_partly_freed_graph_raises(device):
    x = leaf([1.0, 2.0], device)
    h = x * 2
    (h * 3).sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 4).sum().backward()


def test_retain_graph_allows_a_second_backward_that_doubles_grad(device):
    a = np.array([1.0, -2.0, 0.5])
    x = leaf(a, device)
    y = (x.tanh() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    close(first, np.tanh(a) + a * (1 - np.tanh(a) ** 2))
    y.backward()
    close(x.grad, 2 * first)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_intermediates_are_freed_after_backward(device):
    rng = np.random.default_rng(1)
    x = leaf(rng.standard_normal((4, 3)), device)
    w = leaf(rng.standard_normal((3, 5)), device)
    h1 = x @ w
    h2 = h1.tanh()
    h3 = h2 * h2
    loss = h3.sum()
    refs = [weakref.ref(t) for t in (h1, h2, h3)]
    refs += [weakref.ref(t.grad_fn) for t in (h1, h2, h3)]
    refs += [weakref.ref(t.data) for t in (h1, h2, h3)] if device == "cpu" else []
    del h1, h2, h3
    loss.backward()
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)
    assert loss.grad_fn is not None           # the root itself stays usable
    assert x.grad.shape == (4, 3) and w.grad.shape == (3, 5)


def test_training_loop_memory_does_not_grow(device):
    rng = np.random.default_rng(0)
    w1 = leaf(rng.standard_normal((8, 32)) * 0.3, device)
    b1 = leaf(np.zeros(32), device)
    w2 = leaf(rng.standard_normal((32, 4)) * 0.3, device)
    params = [w1, b1, w2]
    xs = leaf(rng.standard_normal((64, 8)), device, requires_grad=False)
    ys = leaf(rng.standard_normal((64, 4)), device, requires_grad=False)
    lr = 0.05
    traced = [0] * 51
    losses = [0.0] * 51
    tracemalloc.start()
    try:
        for it in range(1, 51):
            h = (xs @ w1 + b1).tanh()
            out = h @ w2
            loss = ((out - ys) * (out - ys)).mean()
            loss.backward()
            for p in params:
                p.data -= lr * p.grad.data
                p.grad = None
            losses[it] = loss.item()
            del h, out, loss
            if it in (10, 50):
                gc.collect()
                traced[it] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert losses[50] < losses[1]                        # the loop really trains
    # one leaked graph per step would be tens of KiB per step (64x32 float64 arrays are 16 KiB each)
    assert traced[50] - traced[10] < 16 * 1024, (traced[10], traced[50])


# ----- errors -----
def test_implicit_gradient_needs_a_one_element_output(device):
    x = leaf(np.ones((2, 3)), device)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        y.backward()
    assert x.grad is None


def test_explicit_gradient_of_wrong_shape_raises(device):
    x = leaf(np.ones((2, 3)), device)
    y = x * 2
    with pytest.raises(ValueError, match="shape"):
        y.backward(tg.ones(3, dtype=f64, device=device))
    with pytest.raises(ValueError, match="shape"):
        y.backward(tg.ones(3, 2, dtype=f64, device=device))
    v = np.arange(6.0).reshape(2, 3)
    y.backward(tg.tensor(v, device=device))
    close(x.grad, 2 * v)


def test_backward_on_tensor_that_does_not_require_grad_raises(device):
    x = leaf([1.0, 2.0], device, requires_grad=False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2).sum().backward()
    w = leaf([1.0, 2.0], device)
    with tg.no_grad():
        y = (w * 2).sum()
    with pytest.raises(RuntimeError):
        y.backward()
    assert w.grad is None


# ----- long chains -----
def test_100k_step_chain_backprops_without_recursion(device):
    n, a = 100_000, 0.99999
    x = leaf([0.5, -0.25], device)
    h0 = leaf([1.0, 2.0], device)
    h = h0
    for _ in range(n):
        h = h * a + x
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        (h * tg.tensor([1.0, 3.0], dtype=f64, device=device)).sum().backward()
    finally:
        sys.setrecursionlimit(limit)
    geometric = (1 - a ** n) / (1 - a)
    close(x.grad, np.array([1.0, 3.0]) * geometric, rtol=1e-8)
    close(h0.grad, np.array([1.0, 3.0]) * a ** n, rtol=1e-8)


# ----- tg.grad -----
def test_grad_does_not_touch_dot_grad(device):
    a = np.array([1.0, 2.0, -1.0])
    x = leaf(a, device)
    w = leaf([0.5, 0.5, 0.5], device)
    x.grad = tg.tensor([7.0, 7.0, 7.0], dtype=f64, device=device)
    gx, = tg.grad((x * x * w).sum(), x)
    close(gx, 2 * a * 0.5)
    close(x.grad, [7.0, 7.0, 7.0])
    assert w.grad is None
    assert gx.grad_fn is None and not gx.requires_grad


def test_grad_unused_input(device):
    x = leaf([1.0, 2.0], device)
    unused = leaf([3.0], device)
    y = (x * x).sum()
    with pytest.raises(ValueError, match="allow_unused"):
        tg.grad(y, [x, unused], retain_graph=True)
    gx, gu = tg.grad(y, [x, unused], allow_unused=True)
    close(gx, [2.0, 4.0])
    assert gu is None


def test_grad_with_respect_to_non_leaf_inputs(device):
    a = np.array([0.5, -1.0])
    x = leaf(a, device)
    h = x * 3
    out = (h * h).sum() + x.sum()
    gh, gx = tg.grad(out, [h, x])
    close(gh, 2 * 3 * a)
    close(gx, 18 * a + 1)
    assert x.grad is None and h.grad is None


def test_grad_for_a_non_leaf_input_stops_at_that_input(device):
    a = np.array([0.5, -1.0])
    x = leaf(a, device)
    below = []
    x.register_hook(lambda g: below.append(g))
    h = x * 3
    gh, = tg.grad((h * h).sum(), h)
    close(gh, 6 * a)
    assert below == []                     # nothing beneath h was run ...
    (h * 2).sum().backward()               # ... or freed: h's own graph still backprops
    close(x.grad, [6.0, 6.0])


def test_grad_of_several_outputs_with_grad_outputs(device):
    a = np.array([1.0, -2.0, 0.5])
    u = np.array([1.0, 0.5, -1.0])
    v = np.array([2.0, 1.0, 3.0])
    x = leaf(a, device)
    y1, y2 = x * 2, x * x
    gx, = tg.grad([y1, y2], [x], grad_outputs=[tg.tensor(u, device=device), tg.tensor(v, device=device)])
    close(gx, 2 * u + 2 * a * v)
    single = tg.grad(x * x, x, grad_outputs=tg.tensor(v, device=device))
    assert isinstance(single, tuple) and len(single) == 1
    close(single[0], 2 * a * v)


def test_grad_gives_a_repeated_input_its_gradient_at_every_position(device):
    """As torch.autograd.grad: asking twice for a leaf or a non-leaf gives its gradient twice."""
    a = np.array([1.0, -2.0])
    x = leaf(a, device)
    h = x * 2
    out = (h * 3).sum() + (x * x).sum()
    gx1, gx2 = tg.grad(out, [x, x], retain_graph=True)
    close(gx1, 6 + 2 * a)
    close(gx2, 6 + 2 * a)
    gh1, gx, gh2 = tg.grad(out, [h, x, h], retain_graph=True, allow_unused=True)
    close(gh1, [3.0, 3.0])
    close(gh2, [3.0, 3.0])
    close(gx, 6 + 2 * a)
    gx1, gx2 = tg.grad(out, [x, x], create_graph=True)
    assert gx1.requires_grad and gx2.requires_grad
    close(gx2, 6 + 2 * a)


@st.composite
def grad_queries(draw):
    """A small graph's data and the positions asked for (0, 1: leaves; 2, 3: non-leaves; 4: an
    unused leaf), repeats allowed."""
    data = draw(hnp.arrays(np.float64, (2, 3), elements=st.floats(-2, 2, allow_nan=False)))
    return data, draw(st.lists(st.integers(0, 4), min_size=1, max_size=5)), draw(st.booleans())


def _graph(data, device):
    x, y, unused = leaf(data[0], device), leaf(data[1], device), leaf([1.0], device)
    u = x * y
    v = u.tanh() + x
    return (v * u + y * v).sum(), [x, y, u, v, unused]


@with_device
@given(grad_queries())
def test_grad_of_several_inputs_equals_asking_for_each_alone(device, query):
    """tg.grad(out, inputs) equals, position by position, tg.grad(out, [input]), repeats included."""
    data, picks, create_graph = query
    out, tensors = _graph(data, device)
    together = tg.grad(out, [tensors[k] for k in picks], allow_unused=True, create_graph=create_graph)
    for k, got in zip(picks, together):
        out, tensors = _graph(data, device)
        alone, = tg.grad(out, [tensors[k]], allow_unused=True)
        if alone is None:
            assert got is None
        else:
            close(got, alone.numpy())


# ----- higher order -----
@with_device
@given(vector_pairs())
def test_hessian_vector_product_of_sum_cubes(device, xv):
    a, v = xv
    x = leaf(a, device)
    g, = tg.grad((x ** 3).sum(), x, create_graph=True)
    assert g.requires_grad
    close(g, 3 * a * a)
    hv, = tg.grad((g * tg.tensor(v, device=device)).sum(), x)
    close(hv, 6 * a * v)
    assert x.grad is None


def test_double_backward_through_dot_grad(device):
    a = np.array([1.0, -2.0, 0.5])
    x = leaf(a, device)
    (x ** 3).sum().backward(create_graph=True)
    first = x.grad
    assert first.grad_fn is not None
    close(first, 3 * a * a)
    second, = tg.grad(first.sum(), x, retain_graph=True)
    close(second, 6 * a)
    x.grad = None
    first.sum().backward()
    close(x.grad, 6 * a)


@with_device
@given(vectors(lo=-2.0, hi=2.0))
def test_third_derivative_of_tanh(device, a):
    x = leaf(a, device)
    g1, = tg.grad(x.tanh().sum(), x, create_graph=True)
    g2, = tg.grad(g1.sum(), x, create_graph=True)
    g3, = tg.grad(g2.sum(), x)
    t = np.tanh(a)
    s = 1 - t * t
    close(g1, s, rtol=1e-9)
    close(g2, -2 * t * s, rtol=1e-9, atol=1e-11)
    close(g3, -2 * s * (1 - 3 * t * t), rtol=1e-9, atol=1e-11)


def _rnn(w, u, xs, h0):
    h = h0
    for x_t in xs:
        h = (h @ w + x_t @ u).tanh()
    return h


def test_double_backward_through_20_step_tanh_rnn(device):
    rng = np.random.default_rng(3)
    hidden, inp, batch, steps = 3, 2, 2, 20
    w = leaf(rng.standard_normal((hidden, hidden)) * 0.5, device)
    u = leaf(rng.standard_normal((inp, hidden)) * 0.5, device)
    xs = [leaf(rng.standard_normal((batch, inp)), device, requires_grad=False) for _ in range(steps)]
    h0 = leaf(rng.standard_normal((batch, hidden)) * 0.1, device, requires_grad=False)

    assert tg.gradgradcheck(lambda w, u: _rnn(w, u, xs, h0), (w, u))

    # Hessian-vector product of a scalar loss against central differences of the gradient
    def loss(w, u):
        return (_rnn(w, u, xs, h0) ** 2).sum()

    vw, vu = rng.standard_normal(w.shape), rng.standard_normal(u.shape)
    gw, gu = tg.grad(loss(w, u), [w, u], create_graph=True)
    dot = (gw * tg.tensor(vw, device=device)).sum() + (gu * tg.tensor(vu, device=device)).sum()
    hvw, hvu = tg.grad(dot, [w, u])
    eps = 1e-6
    w0, u0 = w.numpy().copy(), u.numpy().copy()

    def grads_at(s):
        wp = leaf(w0 + s * vw, device)
        up = leaf(u0 + s * vu, device)
        return [g.numpy() for g in tg.grad(loss(wp, up), [wp, up])]

    plus, minus = grads_at(eps), grads_at(-eps)
    close(hvw, (plus[0] - minus[0]) / (2 * eps), rtol=1e-5, atol=1e-7)
    close(hvu, (plus[1] - minus[1]) / (2 * eps), rtol=1e-5, atol=1e-7)


# ----- hooks and retain_grad -----
def test_leaf_hook_sees_replaces_and_is_removed(device):
    a = np.array([1.0, -3.0])
    x = leaf(a, device)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x.tanh() * 2).sum().backward()
    assert len(seen) == 1
    close(seen[0], 2 * (1 - np.tanh(a) ** 2))
    close(x.grad, seen[0])
    handle.remove()

    x.grad = None
    handle = x.register_hook(lambda g: g * 10)
    (x * 2).sum().backward()
    close(x.grad, [20.0, 20.0])
    handle.remove()

    x.grad = None
    (x * 2).sum().backward()
    assert len(seen) == 1
    close(x.grad, [2.0, 2.0])


def test_leaf_hook_runs_once_on_the_total_gradient(device):
    a = np.array([1.0, -3.0])
    x = leaf(a, device)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * x + x).sum().backward()           # three uses of x, one gradient 2x + 1
    assert len(seen) == 1
    close(seen[0], 2 * a + 1)

    y = leaf(a, device)
    y.register_hook(lambda g: g * 0 + 1)   # a replacement must replace the total, not each part
    (y * y + y).sum().backward()
    close(y.grad, [1.0, 1.0])


def test_non_leaf_hook_sees_replaces_and_is_removed(device):
    a = np.array([0.5, 2.0])
    x = leaf(a, device)
    seen = []

    def record(g):
        seen.append(g.numpy().copy())

    h = x * 3
    handle = h.register_hook(record)
    (h * h + h).sum().backward()          # h is used twice: one call with the summed gradient
    assert len(seen) == 1
    close(seen[0], 2 * 3 * a + 1)
    close(x.grad, 3 * (6 * a + 1))
    handle.remove()

    x.grad = None
    h = x * 3
    handle = h.register_hook(lambda g: g * 0 + 1)
    (h * h).sum().backward()
    close(x.grad, [3.0, 3.0])              # the replaced gradient flows on to x
    handle.remove()

    x.grad = None
    h = x * 3
    handle = h.register_hook(record)
    handle.remove()
    (h * h).sum().backward()
    assert len(seen) == 1
    close(x.grad, 18 * a)


def test_a_hook_returning_an_array_is_told_to_return_a_tensor(device):
    x = leaf([1.0, 2.0, 3.0], device)
    x.register_hook(lambda g: g.numpy() * 2)
    with pytest.raises(TypeError, match=r"hook <lambda>: the value returned must be None or a Tensor of "
                                        r"shape \(3,\), got a numpy.ndarray; convert it with tg.tensor"):
        (x * 2).sum().backward()
    y = leaf([1.0, 2.0, 3.0], device)
    y.register_hook(lambda g: g[:2])
    with pytest.raises(RuntimeError, match=r"shape \(3,\), dtype float64 on \w+ \(the gradient's\), got one of "
                                           r"shape \(2,\)"):
        (y * 2).sum().backward()


def test_a_gradient_of_another_shape_dtype_or_device_is_refused_where_it_is_made(device):
    """A hook returning g.float() for a float64 leaf, or a hand-set .grad of another shape or dtype,
    would later make an optimizer reshape or retype the parameter: refused at once, as in PyTorch."""
    x = leaf([1.0, 2.0, 3.0], device)
    x.register_hook(lambda g: g.float())
    with pytest.raises(RuntimeError, match=r"dtype float64 on \w+ \(the gradient's\), got one of shape \(3,\), "
                                           r"dtype float32"):
        (x * 2).sum().backward()
    y = leaf([1.0, 2.0], device)
    for bad, message in ((tg.zeros(3, 1, dtype=tg.float64, device=device), r"shape \(3, 1\)"),
                         (tg.zeros(2, dtype=tg.float32, device=device), "dtype float32"),
                         (np.zeros(2), "got a numpy.ndarray")):
        with pytest.raises((ValueError, TypeError), match=message):
            y.grad = bad
        assert y.grad is None
    y.grad = tg.ones(2, dtype=tg.float64, device=device)
    (y * 3).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [4.0, 4.0])


def test_retain_grad_keeps_a_non_leaf_gradient(device):
    a = np.array([1.0, -0.5])
    x = leaf(a, device)
    h = x * 3
    kept = h * 2
    kept.retain_grad()
    (kept * kept).sum().backward()
    close(kept.grad, 2 * 6 * a)
    assert h.grad is None
    close(x.grad, 72 * a)


def test_retained_grad_accumulates_across_backward_calls(device):
    a = np.array([1.0, -0.5])
    x = leaf(a, device)
    h = x * 2
    h.retain_grad()
    y = (h * h).sum()
    y.backward(retain_graph=True)
    close(h.grad, 4 * a)
    y.backward()
    close(h.grad, 8 * a)                   # like a leaf's .grad (and PyTorch's retain_grad)
    close(x.grad, 16 * a)


# ----- grad mode -----
def test_no_grad_records_no_graph(device):
    x = leaf([1.0, 2.0], device)
    w = leaf(np.ones((2, 2)), device)
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        for y in (x * 2, x.tanh(), x @ w, (x + x).sum()):
            assert y.grad_fn is None and not y.requires_grad
    assert tg.is_grad_enabled()
    y = x * 2
    assert y.grad_fn is not None and y.requires_grad


def test_no_grad_as_decorator(device):
    x = leaf([1.0, 2.0], device)

    @tg.no_grad()
    def scaled(t):
        """Docstring kept."""
        return t * 2, tg.is_grad_enabled()

    y, mode = scaled(x)
    assert mode is False
    assert y.grad_fn is None and not y.requires_grad
    assert tg.is_grad_enabled()
    assert scaled.__name__ == "scaled" and scaled.__doc__ == "Docstring kept."
    close(y, [2.0, 4.0])


def test_no_grad_and_enable_grad_as_bare_decorators(device):
    """As PyTorch: @tg.no_grad and @tg.enable_grad work without parentheses too."""
    x = leaf([1.0, 2.0], device)

    @tg.no_grad
    def scaled(t):
        """Docstring kept."""
        return t * 2, tg.is_grad_enabled()

    @tg.enable_grad
    def squared(t):
        return t * t

    y, mode = scaled(x)
    assert mode is False and y.grad_fn is None
    assert scaled.__name__ == "scaled" and scaled.__doc__ == "Docstring kept."
    with tg.no_grad():
        z = squared(x)
        assert not tg.is_grad_enabled()
    assert z.grad_fn is not None
    z.sum().backward()
    close(x.grad, [2.0, 4.0])
    with pytest.raises(TypeError, match="no_grad: takes no arguments, or a function to decorate; got 3"):
        tg.no_grad(3)


def test_enable_grad_inside_no_grad(device):
    x = leaf([1.0, 2.0], device)
    with tg.no_grad():
        with tg.enable_grad():
            y = x * x
        z = x * x
    assert y.grad_fn is not None and z.grad_fn is None
    y.sum().backward()
    close(x.grad, [2.0, 4.0])


def test_grad_mode_is_thread_local(device):
    x = leaf([1.0, 2.0], device)
    entered, checked = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with tg.no_grad():
            seen["inside"] = tg.is_grad_enabled()
            seen["records"] = (x * 2).grad_fn is not None
            entered.set()
            checked.wait(10)
        seen["after"] = tg.is_grad_enabled()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert entered.wait(10)
        main_mode = tg.is_grad_enabled()       # the worker is inside no_grad right now
        y = x * 2
    finally:
        checked.set()
        thread.join(10)
    assert main_mode is True and y.grad_fn is not None
    assert seen == {"inside": False, "records": False, "after": True}

    # and a thread started from inside no_grad has grad mode on
    result = {}
    with tg.no_grad():
        t = threading.Thread(target=lambda: result.update(mode=tg.is_grad_enabled(),
                                                          records=(x * 2).grad_fn is not None))
        t.start()
        t.join(10)
    assert result == {"mode": True, "records": True}


def test_grad_mode_restored_after_exception(device):
    with pytest.raises(KeyError):
        with tg.no_grad():
            raise KeyError("boom")
    assert tg.is_grad_enabled()

    @tg.no_grad()
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert tg.is_grad_enabled()

    with tg.no_grad():
        with pytest.raises(KeyError):
            with tg.enable_grad():
                raise KeyError("boom")
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


# ----- anomaly detection -----
def test_detect_anomaly_in_forward(device):
    with tg.detect_anomaly(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert tg.is_anomaly_enabled()
        with pytest.raises(FloatingPointError) as info:
            tg.log(tg.tensor([-1.0], device=device))
    assert "Log" in str(info.value) and "forward" in str(info.value)
    assert not tg.is_anomaly_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = tg.log(tg.tensor([-1.0], device=device))
    assert np.isnan(y.numpy()).all()


def test_detect_anomaly_in_a_user_backward(device):
    class NanGradient(tg.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = leaf([1.0, 2.0], device)
    with tg.detect_anomaly():
        y = NanGradient.apply(x).sum()
        with pytest.raises(FloatingPointError) as info:
            y.backward()
    assert "NanGradient" in str(info.value) and "backward" in str(info.value)
    assert not tg.is_anomaly_enabled()
    x.grad = None
    NanGradient.apply(x).sum().backward()       # outside the block: NaN passes silently
    assert np.isnan(x.grad.numpy()).all()


def test_detect_anomaly_restored_after_exception(device):
    with pytest.raises(KeyError):
        with tg.detect_anomaly():
            raise KeyError("boom")
    assert not tg.is_anomaly_enabled()


def test_detect_anomaly_lets_finite_work_through(device):
    a = np.array([-1.5, 0.5, 2.0])
    x = leaf(a, device)
    with tg.detect_anomaly():
        g, = tg.grad((x ** 3).sum() + x.tanh().sum(), x, create_graph=True)
        hv, = tg.grad(g.sum(), x)
    close(hv, 6 * a - 2 * np.tanh(a) * (1 - np.tanh(a) ** 2))


# ----- dtypes -----
def test_mixed_float_dtypes_promote_and_grads_keep_their_dtype(device):
    a = tg.tensor([1.0, 2.0], dtype=tg.float32, device=device, requires_grad=True)
    b = tg.tensor([3.0, -1.0], dtype=tg.float64, device=device, requires_grad=True)
    for y in (a * b, a + b, b - a):
        assert y.dtype == tg.float64
    (a * b + a).sum().backward()
    assert a.grad.dtype == tg.float32 and b.grad.dtype == tg.float64
    close(a.grad, [4.0, 0.0])
    close(b.grad, [1.0, 2.0])


def test_int_tensors_cannot_require_grad(device):
    with pytest.raises(TypeError):
        tg.tensor([1, 2], device=device, requires_grad=True)
    with pytest.raises(TypeError):
        tg.zeros(2, dtype=tg.int64, device=device).requires_grad_()
    with pytest.raises(TypeError):
        tg.tensor([True, False], device=device, requires_grad=True)
    t = tg.arange(3, device=device)
    with pytest.raises(TypeError):
        t.requires_grad = True
    assert not t.requires_grad


def _tracked_per_step(step, steps=300):
    """How many more objects the cyclic garbage collector tracks per call of ``step`` while the
    graph of all the calls is alive (the collector walks each of them at every full collection)."""
    gc.collect()
    gc.disable()
    try:
        state = step(None)
        before = len(gc.get_objects())
        for _ in range(steps):
            state = step(state)
        gc.collect()
        return (len(gc.get_objects()) - before) / steps
    finally:
        gc.enable()


def test_a_long_graph_leaves_few_objects_for_the_garbage_collector():
    """A recorded op keeps one tracked object (its node: intermediate Tensors die with their last
    user reference), and a step of a cell with a kernel about three, so the collector's full
    collections over a 100,000-step unroll stay cheap."""
    w = tg.tensor(np.full((2, 2), 0.5), requires_grad=True)
    assert _tracked_per_step(lambda h: (tg.ones(2, 2) if h is None else h) * w) <= 1.05
    x = tg.randn(2, 4)
    for cell in (tg.nn.RNNCell(4, 4), tg.nn.LSTMCell(4, 4), tg.nn.GRUCell(4, 4)):
        assert _tracked_per_step(lambda state: cell(x, state)) <= 3.5, type(cell).__name__
