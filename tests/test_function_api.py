"""tg.Function, the public way to write an op: forward on arrays, backward on
gradients, ctx.save_for_backward / saved_tensors / needs_input_grad / xp,
constants among the arguments, several outputs, and the errors a user meets."""
import gc
import itertools
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

with_device = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

f64 = tg.float64


def leaf(data, device, requires_grad=True):
    return tg.tensor(np.asarray(data, dtype=np.float64), dtype=f64, device=device, requires_grad=requires_grad)


def close(t, expected, rtol=1e-10, atol=1e-12):
    actual = t.numpy() if isinstance(t, tg.Tensor) else tg.tensor(t).numpy()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ----- user ops -----
class PowN(tg.Function):
    """x ** n for an int n given as a plain argument of apply."""
    seen_needs = []

    @staticmethod
    def forward(ctx, x, n):
        ctx.save_for_backward(x)
        ctx.n = n
        return x ** n

    @staticmethod
    def backward(ctx, g):
        PowN.seen_needs.append(ctx.needs_input_grad)
        x, = ctx.saved_tensors
        return g * ctx.n * x ** (ctx.n - 1), None


class MulAdd(tg.Function):
    """Fused x * y + z."""
    seen_needs = []

    @staticmethod
    def forward(ctx, x, y, z):
        ctx.save_for_backward(x, y)
        return x * y + z

    @staticmethod
    def backward(ctx, g):
        MulAdd.seen_needs.append(ctx.needs_input_grad)
        x, y = ctx.saved_tensors
        nx, ny, nz = ctx.needs_input_grad
        return g * y if nx else None, g * x if ny else None, g if nz else None


class LogCosh(tg.Function):
    """log(cosh(x)); the backward uses ctx.xp, so it is differentiable again."""
    seen = []

    @staticmethod
    def forward(ctx, x):
        xp = tg.backend.get_array_module(x)
        ctx.save_for_backward(x)
        return xp.log(xp.cosh(x))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        LogCosh.seen.append((ctx.xp, type(g), type(x)))
        return g * ctx.xp.tanh(x)


class ExpSavingOutput(tg.Function):
    @staticmethod
    def forward(ctx, x):
        out = tg.backend.get_array_module(x).exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        out, = ctx.saved_tensors
        return g * out


class Halves(tg.Function):
    """Two outputs: 2x and 3x."""
    seen = []

    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, g_two, g_three):
        Halves.seen.append((g_two, g_three))
        return g_two * 2 + g_three * 3


finite = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)
small_arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=3), elements=finite)


@with_device
@given(small_arrays, st.integers(1, 4))
def test_user_op_with_constant_argument(device, a, n):
    PowN.seen_needs.clear()
    x = leaf(a, device)
    y = PowN.apply(x, n)
    close(y, a ** n)
    y.sum().backward()
    close(x.grad, n * a ** (n - 1), rtol=1e-9)
    assert PowN.seen_needs == [(True, False)]     # the int gets needs False and None as gradient


@with_device
@given(small_arrays, st.integers(2, 4))
def test_user_op_passes_gradcheck_and_gradgradcheck(device, a, n):
    x = leaf(a, device)
    assert tg.gradcheck(lambda t: PowN.apply(t, n), (x,))
    assert tg.gradgradcheck(lambda t: PowN.apply(t, n), (x,))


def test_user_op_whose_backward_has_x_to_the_zero_differentiates_at_zero(device):
    # PowN with n = 1 computes g * 1 * x ** 0 in backward: a constant, derivative 0 everywhere, x = 0 included
    x = leaf([0.0, 1.5, -2.0], device)
    assert tg.gradcheck(lambda t: PowN.apply(t, 1), (x,))
    g, = tg.grad(PowN.apply(x, 1).sum(), x, create_graph=True)
    close(g, [1.0, 1.0, 1.0])
    h, = tg.grad(g.sum(), x)
    close(h, [0.0, 0.0, 0.0])
    assert tg.gradgradcheck(lambda t: PowN.apply(t, 1), (x,))


@pytest.mark.parametrize("flags", [f for f in itertools.product([True, False], repeat=3) if any(f)])
def test_backward_sees_needs_input_grad(device, flags):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    x, y, z = (leaf(a, device, requires_grad=f) for a, f in zip(arrays, flags))
    MulAdd.seen_needs.clear()
    out = MulAdd.apply(x, y, z)
    close(out, arrays[0] * arrays[1] + arrays[2])
    assert out.requires_grad
    (out * out).sum().backward()
    assert MulAdd.seen_needs == [flags]
    g = 2 * (arrays[0] * arrays[1] + arrays[2])
    expected = [g * arrays[1], g * arrays[0], g]
    for t, flag, e in zip((x, y, z), flags, expected):
        if flag:
            close(t.grad, e)
        else:
            assert t.grad is None


def test_fused_user_op_gradcheck(device):
    rng = np.random.default_rng(1)
    x, y, z = (leaf(rng.standard_normal((2, 3)), device) for _ in range(3))
    assert tg.gradcheck(MulAdd.apply, (x, y, z))
    assert tg.gradgradcheck(MulAdd.apply, (x, y, z))


def test_constant_array_argument_gets_no_gradient(device):
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal(3) for _ in range(3))
    x, z = leaf(a, device), leaf(c, device)
    constant = tg.tensor(b, dtype=f64, device=device).data        # a raw array beside the tensors
    MulAdd.seen_needs.clear()
    MulAdd.apply(x, constant, z).sum().backward()
    assert MulAdd.seen_needs == [(True, False, True)]
    close(x.grad, b)
    close(z.grad, np.ones(3))


# ----- higher order through a user op -----
@with_device
@given(hnp.arrays(np.float64, st.integers(1, 5), elements=finite))
def test_user_op_written_with_ctx_xp_differentiates_twice(device, a):
    LogCosh.seen.clear()
    x = leaf(a, device)
    g, = tg.grad(LogCosh.apply(x).sum(), x, create_graph=True)
    xp_graph, g_type, saved_type = LogCosh.seen[-1]
    assert xp_graph is tg.xp and g_type is tg.Tensor and saved_type is tg.Tensor
    close(g, np.tanh(a))
    h, = tg.grad(g.sum(), x)
    close(h, 1 - np.tanh(a) ** 2, rtol=1e-9)

    LogCosh.seen.clear()
    LogCosh.apply(x).sum().backward()                  # a plain backward gets arrays and numpy/cupy
    xp_plain, g_type, saved_type = LogCosh.seen[-1]
    assert xp_plain is tg.backend.array_module(device)
    assert g_type is not tg.Tensor and saved_type is not tg.Tensor
    close(x.grad, np.tanh(a))


def test_user_op_gradgradcheck(device):
    rng = np.random.default_rng(3)
    x = leaf(rng.standard_normal((2, 3)), device)
    assert tg.gradgradcheck(LogCosh.apply, (x,))
    assert tg.gradgradcheck(ExpSavingOutput.apply, (x,))


def test_saved_output_comes_back_as_the_output_under_create_graph(device):
    a = np.array([-0.5, 0.25, 1.0])
    x = leaf(a, device)
    g1, = tg.grad(ExpSavingOutput.apply(x).sum(), x, create_graph=True)
    g2, = tg.grad(g1.sum(), x, create_graph=True)
    g3, = tg.grad(g2.sum(), x)
    for g in (g1, g2, g3):
        close(g, np.exp(a))


def test_saving_an_intermediate_under_create_graph_raises(device):
    class SavesTemp(tg.Function):
        @staticmethod
        def forward(ctx, x):
            temp = x * 2
            ctx.save_for_backward(temp)
            return temp * x

        @staticmethod
        def backward(ctx, g):
            temp, = ctx.saved_tensors
            return g * 2 * temp

    x = leaf([1.0, 2.0], device)
    SavesTemp.apply(x).sum().backward()                 # fine in a plain backward: d(2x^2)/dx
    close(x.grad, [4.0, 8.0])
    with pytest.raises(RuntimeError, match="SavesTemp"):
        tg.grad(SavesTemp.apply(x).sum(), x, create_graph=True)


# ----- several outputs -----
def test_unused_output_gets_a_zero_gradient(device):
    a = np.array([1.0, -2.0, 0.5])
    x = leaf(a, device)
    Halves.seen.clear()
    two, three = Halves.apply(x)
    close(two, 2 * a)
    close(three, 3 * a)
    three.sum().backward()
    g_two, g_three = Halves.seen[-1]
    close(g_two, np.zeros(3))
    close(g_three, np.ones(3))
    assert g_two.shape == (3,) and g_two.dtype == np.float64
    close(x.grad, [3.0, 3.0, 3.0])

    x.grad = None
    two, three = Halves.apply(x)
    (two * 5).sum().backward()
    g_two, g_three = Halves.seen[-1]
    close(g_three, np.zeros(3))
    close(x.grad, [10.0, 10.0, 10.0])

    two, three = Halves.apply(x)
    g, = tg.grad(three.sum(), x, create_graph=True)     # and as a Tensor under create_graph
    g_two, _ = Halves.seen[-1]
    assert isinstance(g_two, tg.Tensor)
    close(g_two, np.zeros(3))
    close(g, [3.0, 3.0, 3.0])


def test_both_outputs_used(device):
    x = leaf([1.0, 2.0], device)
    two, three = Halves.apply(x)
    (two * three).sum().backward()                     # d(6 x^2)/dx = 12 x
    close(x.grad, [12.0, 24.0])


# ----- errors -----
class TooFewGrads(tg.Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * y

    @staticmethod
    def backward(ctx, g):
        return g


class TooManyGrads(tg.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2, g


class WrongShapeGrad(tg.Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum(axis=1)

    @staticmethod
    def backward(ctx, g):
        return g                                       # should be broadcast back to x's shape


@pytest.mark.parametrize("fn, nargs", [(TooFewGrads, 2), (TooManyGrads, 1)])
def test_wrong_number_of_gradients_raises(device, fn, nargs):
    args = [leaf([1.0, 2.0], device) for _ in range(nargs)]
    y = fn.apply(*args).sum()
    with pytest.raises(RuntimeError, match=fn.__name__):
        y.backward()
    assert tg.is_grad_enabled()


def test_wrong_gradient_shape_raises(device):
    x = leaf(np.ones((2, 3)), device)
    y = WrongShapeGrad.apply(x).sum()
    with pytest.raises(RuntimeError, match=r"WrongShapeGrad.*\(2,\).*\(2, 3\)"):
        y.backward()
    assert tg.is_grad_enabled()
    assert x.grad is None


@pytest.mark.parametrize("bad", [3.0, [1.0, 2.0], None, "tensor", "tuple"])
def test_forward_returning_a_non_array_raises(device, bad):
    class ReturnsJunk(tg.Function):
        @staticmethod
        def forward(ctx, x):
            if bad == "tensor":
                return tg.Tensor(x)
            if bad == "tuple":
                return x * 2, 1.5
            return bad

        @staticmethod
        def backward(ctx, g):
            return g

    x = leaf([1.0, 2.0], device)
    with pytest.raises(TypeError, match="ReturnsJunk"):
        ReturnsJunk.apply(x)


def test_apply_under_no_grad_records_nothing(device):
    contexts = []

    class Recorded(tg.Function):
        @staticmethod
        def forward(ctx, x):
            contexts.append(weakref.ref(ctx))
            ctx.save_for_backward(x)
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * 3

    a = np.array([1.0, 2.0])
    x = leaf(a, device)
    with tg.no_grad():
        y = Recorded.apply(x)
    close(y, 3 * a)
    assert y.grad_fn is None and not y.requires_grad
    gc.collect()
    assert contexts[-1]() is None                      # nothing holds the node (or its saved arrays)
    with pytest.raises(RuntimeError):
        y.sum().backward()
    z = Recorded.apply(x)
    assert isinstance(z.grad_fn, Recorded) and z.requires_grad


def test_apply_with_no_input_requiring_grad_records_nothing(device):
    x = leaf([1.0, 2.0], device, requires_grad=False)
    y = PowN.apply(x, 2)
    assert y.grad_fn is None and not y.requires_grad
    close(y, [1.0, 4.0])


def test_raw_array_backward_under_create_graph_raises(device):
    class RawBackward(tg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            raw = lambda v: v.data if isinstance(v, tg.Tensor) else v     # noqa: E731
            return raw(g) * 2 * raw(x)

    a = np.array([1.0, -2.0])
    x = leaf(a, device)
    RawBackward.apply(x).sum().backward()              # a plain backward accepts arrays
    close(x.grad, 2 * a)
    with pytest.raises(RuntimeError, match="RawBackward.*create_graph"):
        tg.grad(RawBackward.apply(x).sum(), x, create_graph=True)
    assert tg.is_grad_enabled()


class TwoOutputs(tg.Function):
    """(2a, 3a); backward records what it was given."""
    seen = []

    @staticmethod
    def forward(ctx, a):
        return 2 * a, 3 * a

    @staticmethod
    def backward(ctx, g1, g2):
        TwoOutputs.seen.append((g1, g2))
        return (0 if g1 is None else 2 * g1) + (0 if g2 is None else 3 * g2)


class LazyTwoOutputs(TwoOutputs):
    materialize_grads = False


@pytest.mark.parametrize("cls, materialized", [(TwoOutputs, True), (LazyTwoOutputs, False)])
def test_unused_outputs_get_zeros_or_none_as_the_op_asks(cls, materialized):
    """An output no gradient reached comes to backward as zeros, or as None for an op with
    materialize_grads = False (a whole-sequence layer whose outputs nobody reads)."""
    a = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    TwoOutputs.seen.clear()
    _, second = cls.apply(a)
    second.sum().backward()
    (g1, g2), = TwoOutputs.seen
    assert (g1 is None) != materialized
    if materialized:
        np.testing.assert_array_equal(g1, [0.0, 0.0])
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 3.0])
    TwoOutputs.seen.clear()
    first, second = cls.apply(a)
    first.retain_grad()                        # a retained output is given zeros all the same
    second.sum().backward()
    np.testing.assert_array_equal(TwoOutputs.seen[0][0], [0.0, 0.0])
