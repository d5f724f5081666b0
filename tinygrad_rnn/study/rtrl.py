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
import numpy as np

from .. import backend
from ..engine import grad
from ..function import enable_grad, no_grad
from ..nn.cells import RecurrentCell
from ..nn.recurrent import Recurrent, check_lengths, unroll
from ..tensor import Tensor
from .forward_mode import jvp
from .tracing import refuse_context, time_major


def rtrl_gradients(model, x, step_loss=None, final_loss=None, state=None, lengths=None):
    """The loss and its gradient for every parameter of ``model`` by RTRL.

    Args:
        model: a :class:`~tinygrad_rnn.nn.cells.RecurrentCell` (built-in, variant or your own)
            or an ``nn.Recurrent`` layer (any depth, bidirectional, batch_first; not training
            with dropout), whose ops all have forward-mode rules.
        x: the inputs, a Tensor (T, B, input_size), or (B, T, input_size) for a batch_first layer.
        step_loss: ``step_loss(t, output) -> scalar Tensor``, the loss l_t of the model's output
            at position t (B, out) (a cell's ``cell.output(state)``; a layer's output row t),
            for t = 0..T-1.
        final_loss: ``final_loss(state) -> scalar Tensor``, a loss on the final state as the
            model returns it (a tuple (h, c) for an LSTM; h_n, (L*D, B, H) per part, for a layer).
            At least one of the two losses is needed.
        state: the initial state, as the model takes it (a constant); default zeros.
        lengths: B ints, as the layers take them (rows keep their state past their length).
    Returns:
        ``(loss, grads)``: the total loss as a float, and {name: Tensor} with the
        gradient of each parameter of ``model.named_parameters()`` that requires grad,
        shaped like it. No ``.grad`` is touched.

    Each layer and direction is run online in its own time order, carrying the sensitivities
    S = d state / d theta of ALL the model's parameters: the memory of a one-layer model does
    not grow with T. A layer above the first reads its input's sensitivities at every position,
    so for a stack they are kept for all T positions of the layer below (a bidirectional
    layer's reverse direction reads the future, so nothing else could work for it).

    Example:
        >>> cell = tg.nn.GRUCell(3, 4, dtype=tg.float64)
        >>> x = tg.randn(10, 2, 3, dtype=tg.float64)
        >>> loss, grads = rtrl_gradients(cell, x, step_loss=lambda t, h: (h * h).sum())
        >>> grads["weight_hh"].shape
        (12, 4)
    """
    names, params = _check(model, x, step_loss, final_loss, "rtrl_gradients")
    xs = time_major(model, x.detach())
    steps, batch = xs.shape[0], xs.shape[1]
    lengths = _lengths(model, lengths, steps, batch, "rtrl_gradients")
    loss, d_out, d_final = _loss_gradients(model, x.detach(), step_loss, final_loss, state, lengths)
    seeds = dict(zip(map(id, params), parameter_tangents(params)))
    xp = backend.get_array_module(xs.data)
    total_grad = xp.zeros(next(iter(seeds.values())).shape[0], dtype=params[0].dtype)
    cells, directions = _layout(model)
    initial = _initial_states(model, xs, state)
    layer_input, input_tangent = xs, None
    for layer in range(len(cells) // directions):
        last = layer == len(cells) // directions - 1
        outputs, tangents = [], []
        for d in range(directions):
            k = layer * directions + d
            size = _output_size(cells[k])
            width = slice(d * size, (d + 1) * size) if directions > 1 else slice(None)
            g_out = None if d_out is None or not last else d_out[..., width]
            out, t_out, final, t_final = _run_direction(cells[k], layer_input, input_tangent, initial[k], seeds,
                                                       lengths, d == 1, g_out, total_grad, keep=not last)
            for part, tangent, g in zip(final, t_final, d_final[k] if d_final is not None else ()):
                if g is not None:
                    total_grad += tangent.reshape(tangent.shape[0], -1) @ g.reshape(-1)
            outputs.append(out)
            tangents.append(t_out)
        if not last:
            layer_input = Tensor._make(xp.concatenate(outputs, axis=2), False, None, 0)
            input_tangent = xp.concatenate(tangents, axis=3)
    return loss, _unflatten(total_grad, names, params)


def _output_size(cell):
    """Features of the cell's output: its output_size (an output-fed cell's y), else hidden_size."""
    size = getattr(cell, "output_size", None)
    return cell.hidden_size if size is None else size


def _run_direction(cell, x, x_tangent, state, seeds, lengths, reverse, g_out, total_grad, keep):
    """RTRL over one direction: the sensitivities carried step by step in its own time order.
    Adds sum_t g_out[t] . S_out(t) to ``total_grad``; returns (its outputs (T, B, H) array, their
    sensitivities (P, T, B, H) if ``keep``, the final state parts, their sensitivities)."""
    xp = backend.get_array_module(x.data)
    steps, batch = x.shape[0], x.shape[1]
    own = [p for _, p in cell.named_parameters() if id(p) in seeds]
    own_seeds = [seeds[id(p)] for p in own]
    count = own_seeds[0].shape[0] if own_seeds else next(iter(seeds.values())).shape[0]
    source = _positions(steps, lengths, reverse)
    rows = xp.arange(batch)
    state = cell.initial_state(batch, x) if state is None else state
    parts = [s.detach() for s in _parts(state)]
    sensitivities = [xp.zeros((count,) + tuple(s.shape), dtype=s.dtype) for s in parts]
    outputs = t_outputs = None
    for j in range(steps):
        where_from = backend.to_device(source[j], x.device)
        x_t = x[Tensor._make(where_from, False, None, 0), Tensor._make(rows, False, None, 0)].detach()
        t_x = None if x_tangent is None else x_tangent[:, where_from, rows]
        new_parts, new_sens = rtrl_step(cell, x_t, parts, sensitivities, own, own_seeds, state, t_x)
        valid = None if lengths is None else backend.to_device(j < lengths, x.device)
        if valid is not None and not bool(valid.all()):
            new_parts = [Tensor._make(xp.where(valid[:, None], n.data, o.data), False, None, 0)
                         for n, o in zip(new_parts, parts)]
            new_sens = [xp.where(valid[None, :, None], n, o) for n, o in zip(new_sens, sensitivities)]
        parts, sensitivities = new_parts, new_sens
        with no_grad():
            out = cell.output(_rebuild(state, parts)).data
        t_out = output_sensitivity(cell, state, parts, sensitivities)
        if valid is not None:
            out = xp.where(valid[:, None], out, 0)
            t_out = xp.where(valid[None, :, None], t_out, 0)
        if g_out is not None:
            total_grad += t_out.reshape(count, -1) @ g_out[where_from, rows].reshape(-1)
        if keep:
            if outputs is None:
                outputs = xp.zeros((steps,) + out.shape, out.dtype)
                t_outputs = xp.zeros((count, steps) + out.shape, out.dtype)
            outputs[where_from, rows] = out
            t_outputs[:, where_from, rows] = t_out
    return outputs, t_outputs, parts, sensitivities


def rtrl_step(cell, x_t, parts, sensitivities, params, seeds, like, x_tangent=None):
    """One step of RTRL: the new state parts s_t (detached Tensors) and their sensitivities
    S_t = (dF/ds) S_{t-1} + dF/dtheta (arrays (P, B, ...)), by ONE jvp of the cell's step.

    ``parts``: the state parts s_{t-1}; ``sensitivities``: S_{t-1}, one array per part;
    ``params``: the parameters theta, with ``seeds`` their tangents (see :func:`parameter_tangents`);
    ``like``: a state of the cell's structure (a Tensor or a tuple); ``x_tangent``: dx_t/dtheta
    (P, B, I) when x_t depends on the parameters (a layer below), else None."""

    def step(x_t, *args):
        return cell.step(cell.project(x_t), _rebuild(like, args[:len(parts)]))

    new, tangents = jvp(step, [x_t, *parts, *params], [x_tangent, *sensitivities, *seeds])
    return [p.detach() for p in _parts(new)], [t.data for t in _parts(tangents)]


def output_sensitivity(cell, like, parts, sensitivities):
    """The sensitivity of ``cell.output(state)``: its own jvp from the state's."""
    _, tangent = jvp(lambda *args: cell.output(_rebuild(like, args)), parts, sensitivities)
    return tangent.data


def _positions(steps, lengths, reverse):
    """source[j, b]: the position that step j of a direction reads in row b (PyTorch's packed
    semantics: the reverse direction starts at each row's last valid position)."""
    j = np.arange(steps)[:, None]
    if not reverse:
        return np.broadcast_to(j, (steps, 1 if lengths is None else len(lengths))).copy()
    length = np.full(1, steps) if lengths is None else lengths
    return np.where(j < length[None, :], length[None, :] - 1 - j, j)


def _loss_gradients(model, x, step_loss, final_loss, state, lengths):
    """The loss (a float), dl_t/dy_t for every position (T, B, out) array or None, and per cell
    the gradients of final_loss at its final state parts (or None)."""
    with enable_grad():
        outputs, final = _run(model, x, state, lengths)
        out_leaf = outputs.detach().requires_grad_()
        parts = [p.detach().requires_grad_() for p in _parts(final)]
        terms = [_scalar(step_loss(t, out_leaf[t]), f"step_loss at t={t}") for t in range(outputs.shape[0])
                 if step_loss is not None]
        if final_loss is not None:
            terms.append(_scalar(final_loss(_rebuild(final, parts)), "final_loss"))
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
    if not loss.requires_grad:
        return float(loss.item()), None, None
    found = grad(loss, [out_leaf] + parts, allow_unused=True)
    d_out = None if found[0] is None else found[0].data
    d_final = None
    if final_loss is not None:
        per_cell = len(_layout(model)[0])
        d_final = [[None if g is None else (g.data[k] if isinstance(model, Recurrent) else g.data)
                    for g in found[1:]] for k in range(per_cell)]
    return float(loss.item()), d_out, d_final


def _run(model, x, state, lengths):
    """(time-major outputs, final state) of the model."""
    if isinstance(model, Recurrent):
        return model.time_major(time_major(model, x), state, lengths)
    return unroll(model, x, state, lengths)


def _layout(model):
    """(cells in h_n order, directions)."""
    if isinstance(model, Recurrent):
        return model.cells(), model.directions
    return [model], 1


def _initial_states(model, x, state):
    if isinstance(model, Recurrent):
        return model._split_state(None if state is None else _map_parts(state, lambda s: s.detach()), x,
                                  "rtrl_gradients")
    return [state]


def bptt_gradients(model, x, step_loss=None, final_loss=None, state=None, lengths=None):
    """The same loss and gradients as :func:`rtrl_gradients`, by backpropagation
    through the unrolled graph (the model run as usual, then reverse mode): the
    reference RTRL must equal. Same arguments and result."""
    names, params = _check(model, x, step_loss, final_loss, "bptt_gradients")
    xs = time_major(model, x.detach())
    lengths = _lengths(model, lengths, xs.shape[0], xs.shape[1], "bptt_gradients")
    state = None if state is None else _map_parts(state, lambda s: s.detach())
    with enable_grad():
        outputs, final = _run(model, x.detach(), state, lengths)
        terms = [_scalar(step_loss(t, outputs[t]), f"step_loss at t={t}") for t in range(outputs.shape[0])
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


def _check(model, x, step_loss, final_loss, name):
    """The names and the tensors of the model's parameters that require grad; checks the arguments."""
    if not isinstance(model, (RecurrentCell, Recurrent)):
        raise TypeError(f"{name}: model must be a RecurrentCell or an nn.Recurrent layer, got {type(model).__name__}")
    if isinstance(model, Recurrent) and model.dropout and model.training:
        raise ValueError(f"{name}: the layer has dropout={model.dropout} and is training, so every run draws new "
                         "masks; call model.eval() first")
    refuse_context(model, name)
    batch_first = isinstance(model, Recurrent) and model.batch_first
    layout = "(B, T, input_size" if batch_first else "(T, B, input_size"
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != model.input_size:
        got = f"shape {x.shape}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(f"{name}: x must be a Tensor {layout}={model.input_size}), got {got}")
    if x.shape[1 if batch_first else 0] == 0:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape})")
    if step_loss is None and final_loss is None:
        raise ValueError(f"{name}: give step_loss(t, output), final_loss(state) or both")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{name}: {type(model).__name__} has no parameter that requires grad")
    return [n for n, _ in named], [p for _, p in named]


def _lengths(model, lengths, steps, batch, name):
    return check_lengths(lengths, steps, batch, name, minimum=0 if isinstance(model, RecurrentCell) else 1)


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


def _map_parts(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)
