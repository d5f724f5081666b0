"""gradcheck and gradgradcheck themselves: they pass right gradients and catch wrong ones."""
import numpy as np
import pytest

import tinygrad_rnn as tg


class WrongSquare(tg.Function):
    """x**2 with a deliberately wrong derivative (3x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x


class WrongSecondDerivative(tg.Function):
    """x**3 whose first derivative is right at the point but built from a constant,
    so its second derivative is wrong: backward treats x**2 as a constant."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.square = x * x
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        square = ctx.square if not isinstance(g, tg.Tensor) else tg.tensor(ctx.square, dtype=g.dtype)
        return g * 3 * square


def test_gradcheck_passes_right_gradients(device):
    x = tg.randn(3, 2, dtype=tg.float64, requires_grad=True, device=device)
    w = tg.randn(2, 4, dtype=tg.float64, requires_grad=True, device=device)
    assert tg.gradcheck(lambda a, b: (a @ b).tanh(), (x, w))
    assert tg.gradgradcheck(lambda a, b: (a @ b).tanh(), (x, w))


def test_gradcheck_reports_input_element_and_values(device):
    x = tg.tensor([[1.0, 2.0]], dtype=tg.float64, requires_grad=True, device=device)
    with pytest.raises(tg.GradcheckError, match=r"input 0 at input element \(0, 0\).*analytic 3, numeric 2"):
        tg.gradcheck(WrongSquare.apply, (x,))
    assert tg.gradcheck(WrongSquare.apply, (x,), raise_exception=False) is False


def test_gradgradcheck_catches_a_wrong_second_derivative():
    x = tg.tensor([0.5, -1.5], dtype=tg.float64, requires_grad=True)
    assert tg.gradcheck(WrongSecondDerivative.apply, (x,))
    with pytest.raises(tg.GradcheckError, match="mismatch"):
        tg.gradgradcheck(WrongSecondDerivative.apply, (x,))


def test_gradcheck_fails_on_nan():
    x = tg.tensor([-1.0, 2.0], dtype=tg.float64, requires_grad=True)
    with np.errstate(invalid="ignore"):
        with pytest.raises(tg.GradcheckError):
            tg.gradcheck(lambda a: a.sqrt(), (x,))


def test_gradcheck_warns_for_float32():
    x = tg.randn(2, requires_grad=True)
    with pytest.warns(UserWarning, match="float64"):
        tg.gradcheck(lambda a: a * 2, (x,), atol=1e-2, rtol=1e-2, eps=1e-2)


def test_gradcheck_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="nothing to check"):
        tg.gradcheck(lambda a: a * 2, (tg.ones(2, dtype=tg.float64),))


def test_gradcheck_leaves_inputs_unchanged():
    x = tg.randn(2, 3, dtype=tg.float64, requires_grad=True)
    before = x.numpy().copy()
    tg.gradgradcheck(lambda a: (a * a).sum(axis=0), (x,))
    assert np.array_equal(before, x.numpy()) and x.grad is None


class SavesIntermediate(tg.Function):
    """tanh(2x) that saves the tanh (an intermediate), which create_graph cannot see through."""

    @staticmethod
    def forward(ctx, x):
        t = ctx.xp.tanh(2 * x)
        ctx.save_for_backward(t)
        return t * 1.0

    @staticmethod
    def backward(ctx, g):
        t, = ctx.saved_tensors
        return g * 2 * (1 - t * t)


def test_saved_intermediate_is_refused_under_create_graph_not_silently_constant():
    x = tg.tensor([0.3, -0.2], dtype=tg.float64, requires_grad=True)
    assert tg.gradcheck(SavesIntermediate.apply, (x,))      # first order is fine
    with pytest.raises(RuntimeError, match="neither an input nor an output"):
        tg.grad(SavesIntermediate.apply(x).sum(), x, create_graph=True)
