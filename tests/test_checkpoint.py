"""tg.checkpoint's contract at its edges: what fn may return, and tg.grad, which cannot see
the parameters a checkpointed fn uses (their gradients go to .grad in the recomputation)."""
import numpy as np
import pytest

import tinygrad_rnn as tg


def _setup(device):
    w = tg.tensor([2.0, 3.0], dtype=tg.float64, device=device, requires_grad=True)
    x = tg.tensor([0.5, -1.0], dtype=tg.float64, device=device, requires_grad=True)
    return w, x


@pytest.mark.parametrize("result, error, message", [
    (lambda a: a.numpy(), TypeError, "fn's result must be a Tensor or a tuple of Tensors, got a numpy.ndarray"),
    (lambda a: (a, 3.0), TypeError, "item 1 of fn's result must be a tinygrad_rnn Tensor, got a float"),
    (lambda a: [], ValueError, "fn returned an empty list, expected a Tensor or a tuple of Tensors"),
])
def test_fn_must_return_tensors(device, result, error, message):
    _, x = _setup(device)
    with pytest.raises(error, match=f"^checkpoint: {message}"):
        tg.checkpoint(result, x)


def test_fn_may_return_a_list_of_tensors(device):
    _, x = _setup(device)
    a, b = tg.checkpoint(lambda t: [t * 2, t * 3], x)
    (a + b).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


@pytest.mark.parametrize("allow_unused", [False, True])
def test_grad_refuses_a_parameter_hidden_inside(device, allow_unused):
    """None (allow_unused) or only the part outside the checkpoint would be wrong: it raises."""
    w, x = _setup(device)
    inside = tg.checkpoint(lambda a: (a * w).tanh(), x).sum()
    both = inside + (w * w).sum()
    for out, inputs, slot in ((inside, [w], 0), (both, [w], 0), (inside, [x, w], 1)):
        with pytest.raises(ValueError, match=rf"grad: inputs\[{slot}\] is used inside checkpoint\(fn, \.\.\.\), "
                                             "which hides it from tg.grad; pass it to checkpoint as an input"):
            tg.grad(out, inputs, retain_graph=True, allow_unused=allow_unused)
    assert w.grad is None and x.grad is None


def test_grad_sees_a_nested_checkpoints_parameter(device):
    w, x = _setup(device)
    out = tg.checkpoint(lambda a: tg.checkpoint(lambda b: b * w, a).exp(), x).sum()
    with pytest.raises(ValueError, match=r"inputs\[0\] is used inside checkpoint"):
        tg.grad(out, [w])


def test_grad_through_a_checkpoint_leaves_the_parameters_grad_alone(device):
    """tg.grad touches no .grad, also inside the recomputation, and gives the input's gradient."""
    w, x = _setup(device)
    v = tg.tensor([1.0, 1.0], dtype=tg.float64, device=device, requires_grad=True)
    out = (tg.checkpoint(lambda a: (a * w).tanh(), x) * v).sum()
    gx, gv = tg.grad(out, [x, v])
    a, wa = x.numpy(), w.numpy()
    np.testing.assert_allclose(gx.numpy(), wa * (1 - np.tanh(a * wa) ** 2), rtol=1e-12)
    np.testing.assert_allclose(gv.numpy(), np.tanh(a * wa), rtol=1e-12)
    assert w.grad is None and x.grad is None and v.grad is None


def test_backward_still_fills_the_parameters_grad(device):
    w, x = _setup(device)
    tg.checkpoint(lambda a: (a * w).tanh(), x).sum().backward()
    a, wa = x.numpy(), w.numpy()
    np.testing.assert_allclose(w.grad.numpy(), a * (1 - np.tanh(a * wa) ** 2), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), wa * (1 - np.tanh(a * wa) ** 2), rtol=1e-12)
