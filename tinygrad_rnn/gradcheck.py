"""Check analytic gradients against central finite differences.

``gradcheck`` builds the whole Jacobian both ways: column by column from
(f(x + eps e_j) - f(x - eps e_j)) / 2 eps, row by row from one backward per
output element. Meant for small float64 inputs: float32 cannot resolve the
differences (a warning says so).
"""
import warnings

import numpy as np

from . import backend
from .engine import grad
from .tensor import Tensor, is_torch, not_a_tensor


class GradcheckError(RuntimeError):
    """Raised when analytic and numeric derivatives disagree."""


def _as_tuple(x):
    return x if isinstance(x, tuple) else tuple(x) if isinstance(x, list) else (x,)


def _refuse_foreign_tensors(name, inputs):
    """Inputs other than Tensors pass through to ``fn`` as constants, as in PyTorch; a torch
    tensor there is a mistake that would leave nothing to check, so name it."""
    for i, x in enumerate(inputs):
        if is_torch(x):
            raise not_a_tensor(name, f"inputs[{i}]", x)


def _float_outputs(result):
    outs = _as_tuple(result)
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: the function must return Tensors; output {i} is {type(o).__name__}")
    return [o for o in outs if o.dtype.kind == "f"]


def _evaluate(fn, inputs):
    # Grad mode stays on: under gradgradcheck, fn itself takes gradients.
    return [backend.to_device(o.data, "cpu").astype(np.float64).ravel() for o in _float_outputs(fn(*inputs))]


def _numeric_jacobians(fn, inputs, index, eps):
    """d(every output)/d(inputs[index]), one (out.size, in.size) array per output."""
    data = inputs[index].data
    flat = data.reshape(-1)      # a view: writing it perturbs the input in place
    columns = []
    for j in range(flat.size):
        orig = flat[j].item()
        flat[j] = orig + eps
        plus = _evaluate(fn, inputs)
        flat[j] = orig - eps
        minus = _evaluate(fn, inputs)
        flat[j] = orig
        columns.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    n_out = len(columns[0]) if columns else len(_float_outputs(fn(*inputs)))
    return [np.stack([c[k] for c in columns], axis=1) if columns else None for k in range(n_out)]


def _analytic_jacobians(outputs, inputs, diff):
    """d(outputs[k])/d(inputs[i]) for i in diff, from one backward per output element."""
    jac = {}
    for k, out in enumerate(outputs):
        for i in diff:
            jac[k, i] = np.zeros((out.size, inputs[i].size))
        if not out.requires_grad:
            continue
        xp = backend.get_array_module(out.data)
        for m in range(out.size):
            seed = xp.zeros(out.size, dtype=out.dtype)
            seed[m] = 1
            grads = grad([out], [inputs[i] for i in diff], [seed.reshape(out.shape)],
                         retain_graph=True, allow_unused=True)
            for i, g in zip(diff, grads):
                if g is not None:
                    jac[k, i][m] = g.numpy().ravel()
    return jac


def _index(flat, shape):
    return tuple(int(v) for v in np.unravel_index(flat, shape))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """True if ``fn``'s analytic Jacobian matches finite differences for every
    input that requires grad; otherwise raise :class:`GradcheckError` (or return
    False) naming the output, the input, the element and both values."""
    inputs = _as_tuple(inputs)
    _refuse_foreign_tensors("gradcheck", inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in diff:
        if inputs[i].dtype != backend.float64:
            warnings.warn(f"gradcheck: input {i} is {inputs[i].dtype.name}; finite differences need float64 "
                          "to be trusted", stacklevel=2)
    outputs = _float_outputs(fn(*inputs))
    analytic = _analytic_jacobians(outputs, inputs, diff)
    for i in diff:
        numeric = _numeric_jacobians(fn, inputs, i, eps)
        for k in range(len(outputs)):
            a = analytic[k, i]
            n = numeric[k] if numeric[k] is not None else np.zeros_like(a)
            bad = ~(np.abs(a - n) <= atol + rtol * np.abs(n))   # NaN anywhere is a mismatch
            if bad.any():
                m, j = np.argwhere(bad)[0]
                msg = (f"gradcheck: Jacobian mismatch for output {k} with respect to input {i} at input element "
                       f"{_index(j, inputs[i].shape)}, output element {_index(m, outputs[k].shape)}: "
                       f"analytic {a[m, j]:.8g}, numeric {n[m, j]:.8g} (atol {atol}, rtol {rtol}; "
                       f"{int(bad.sum())} of {bad.size} entries differ)")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """gradcheck of the map (inputs, v) -> vᵀ J(inputs): checks second derivatives
    computed with ``create_graph=True``. ``grad_outputs`` default to random float64."""
    inputs = _as_tuple(inputs)
    _refuse_foreign_tensors("gradgradcheck", inputs)
    diff = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    outputs = _float_outputs(fn(*inputs))
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = tuple(Tensor(rng.standard_normal(o.shape), dtype=o.dtype, device=o.device,
                                    requires_grad=True) for o in outputs)
    grad_outputs = _as_tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"gradgradcheck: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    n = len(inputs)

    def first_derivatives(*args):
        ins, vs = args[:n], args[n:]
        outs = _float_outputs(fn(*ins))
        live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        if not live:
            return tuple()
        grads = grad([o for o, _ in live], [ins[i] for i in diff], [v for _, v in live],
                     create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivatives, inputs + grad_outputs, eps, atol, rtol, raise_exception)
