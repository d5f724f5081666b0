"""Real-time recurrent learning (Williams & Zipser 1989): the gradient carried forward in time.

For a cell s_t = F(s_{t-1}, x_t; theta) and a loss L = sum_t l_t(s_t) (and/or a
loss on the last state), RTRL keeps the sensitivity of the state to every
parameter, S_t = ds_t/dtheta, and updates it with each step:

    S_t = (dF/ds) S_{t-1} + dF/dtheta,      S_0 = 0
    dL/dtheta = sum_t (dl_t/ds_t) . S_t

Both terms of the update are ONE forward-mode product of the step
(:func:`tinygrad_rnn.study.forward_mode.jvp`), with the tangents S_{t-1} for the
state and the identity for the flattened parameters: direction k of the product
is d s_t / d theta_k. The state s is the whole cell state ((h, c) for an LSTM);
S_t has one tangent array (P, B, H) per state part, P the number of parameters.

Cost against BPTT: the memory is independent of T (the P x P identity and the
sensitivities, P*B*S numbers, instead of a graph of T steps), but each step
costs O(B*P^2) operations (the products dh W^T and h dW^T of P tangents), and
with P ~ G*H*(H + I) that is O(H^4) against BPTT's O(H^2) per step: Williams &
Zipser's O(n^4). The result is the same gradient as BPTT, up to rounding. See
benchmarks/rtrl_vs_bptt.py.
"""
from .. import backend
from ..engine import grad
from ..function import enable_grad
from ..nn.cells import RecurrentCell
from ..nn.recurrent import unroll
from ..tensor import Tensor
from .forward_mode import jvp


def rtrl_gradients(cell, x, step_loss=None, final_loss=None, state=None):
    """The loss and its gradient for every parameter of ``cell`` by RTRL.

    Args:
        cell: a :class:`~tinygrad_rnn.nn.cells.RecurrentCell` (RNNCell, LSTMCell, GRUCell,
            fused or composed, or a variant) whose ops all have forward-mode rules.
        x: the inputs, a Tensor (T, B, input_size).
        step_loss: ``step_loss(t, output) -> scalar Tensor``, the loss l_t of the
            cell's output at step t (``cell.output(state)``: h_t), for t = 0..T-1.
        final_loss: ``final_loss(state) -> scalar Tensor``, a loss on the last state
            (a tuple (h, c) for an LSTM). At least one of the two losses is needed.
        state: the initial state (default ``cell.initial_state``), a constant.
    Returns:
        ``(loss, grads)``: the total loss as a float, and {name: Tensor} with the
        gradient of each parameter of ``cell.named_parameters()`` that requires grad,
        shaped like it. No ``.grad`` is touched.

    Example:
        >>> cell = tg.nn.GRUCell(3, 4, dtype=tg.float64)
        >>> x = tg.randn(10, 2, 3, dtype=tg.float64)
        >>> loss, grads = rtrl_gradients(cell, x, step_loss=lambda t, h: (h * h).sum())
        >>> grads["weight_hh"].shape
        (12, 4)
    """
    names, params = _check(cell, x, step_loss, final_loss, "rtrl_gradients")
    seeds = parameter_tangents(params)
    xs = x.detach()
    state = cell.initial_state(x.shape[1], xs) if state is None else state
    parts = [s.detach() for s in _parts(state)]
    sensitivities = [None] * len(parts)
    total_grad = backend.get_array_module(x.data).zeros(seeds[0].shape[0], dtype=params[0].dtype)

    def step(x_t, *args):
        return cell.step(cell.project(x_t), _rebuild(state, args[:len(parts)]))

    loss = 0.0
    for t in range(x.shape[0]):
        new, tangents = jvp(step, [xs[t], *parts, *params], [None, *sensitivities, *seeds])
        parts, sensitivities = _parts(new), [s.data for s in _parts(tangents)]
        if step_loss is not None:
            loss += _add_loss_gradient(lambda s, t=t: step_loss(t, cell.output(s)), state, parts,
                                       sensitivities, total_grad, f"step_loss at t={t}")
    if final_loss is not None:
        loss += _add_loss_gradient(final_loss, state, parts, sensitivities, total_grad, "final_loss")
    return loss, _unflatten(total_grad, names, params)


def bptt_gradients(cell, x, step_loss=None, final_loss=None, state=None):
    """The same loss and gradients as :func:`rtrl_gradients`, by backpropagation
    through the unrolled graph (``unroll`` then reverse mode): the reference RTRL
    must equal. Same arguments and result."""
    names, params = _check(cell, x, step_loss, final_loss, "bptt_gradients")
    state = None if state is None else _rebuild(state, [s.detach() for s in _parts(state)])
    with enable_grad():
        outputs, final = unroll(cell, x.detach(), state)
        terms = [_scalar(step_loss(t, outputs[t]), f"step_loss at t={t}") for t in range(x.shape[0])
                 if step_loss is not None]
        if final_loss is not None:
            terms.append(_scalar(final_loss(final), "final_loss"))
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
    if not loss.requires_grad:
        grads = [None] * len(params)
    else:
        grads = grad(loss, params, allow_unused=True)
    xp = backend.get_array_module(x.data)
    return float(loss.item()), {name: g if g is not None else Tensor._make(xp.zeros_like(p.data), False, None, 0)
                                for name, p, g in zip(names, params, grads)}


def parameter_tangents(params):
    """Tangents (P, *p.shape) for the parameters flattened one after another into
    P numbers: together the rows of the P x P identity, so that direction k of a
    jvp is the derivative with respect to the k-th number."""
    sizes = [p.size for p in params]
    count, start, seeds = sum(sizes), 0, []
    for p, n in zip(params, sizes):
        xp = backend.get_array_module(p.data)
        seed = xp.zeros((count, n), dtype=p.dtype)
        seed[xp.arange(start, start + n), xp.arange(n)] = 1
        seeds.append(seed.reshape((count,) + p.shape))
        start += n
    return seeds


def _add_loss_gradient(loss_fn, like, parts, sensitivities, total_grad, what):
    """l(state) as a float; adds (dl/ds) . S, summed over the state parts, to ``total_grad``."""
    leaves = [p.detach().requires_grad_() for p in parts]
    with enable_grad():
        loss = _scalar(loss_fn(_rebuild(like, leaves)), what)
    if loss.requires_grad:
        for g, s in zip(grad(loss, leaves, allow_unused=True), sensitivities):
            if g is not None:
                total_grad += s.reshape(s.shape[0], -1) @ g.data.reshape(-1)
    return float(loss.item())


def _check(cell, x, step_loss, final_loss, name):
    """The names and the tensors of the cell's parameters that require grad; checks the arguments."""
    if not isinstance(cell, RecurrentCell):
        raise TypeError(f"{name}: cell must be a RecurrentCell, got {type(cell).__name__}")
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != cell.input_size:
        got = f"shape {x.shape}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(f"{name}: x must be a Tensor (T, B, input_size={cell.input_size}), got {got}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape})")
    if step_loss is None and final_loss is None:
        raise ValueError(f"{name}: give step_loss(t, output), final_loss(state) or both")
    named = [(n, p) for n, p in cell.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{name}: {type(cell).__name__} has no parameter that requires grad")
    return [n for n, _ in named], [p for _, p in named]


def _scalar(loss, what):
    if not isinstance(loss, Tensor) or loss.size != 1:
        got = f"shape {loss.shape}" if isinstance(loss, Tensor) else f"a {type(loss).__name__}"
        raise ValueError(f"{what} must return a one-element Tensor, got {got}")
    return loss.reshape(())


def _unflatten(flat, names, params):
    out, start = {}, 0
    for name, p in zip(names, params):
        out[name] = Tensor._make(flat[start:start + p.size].reshape(p.shape), False, None, 0)
        start += p.size
    return out


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]
