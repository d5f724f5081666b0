"""A step-by-step unroll made for inspection: every state kept, every step's share of every gradient.

``trace(model, x)`` runs a recurrent cell, or a layer of any depth and direction,
over x one time step at a time, as ``nn.unroll`` does, with two differences that
make backpropagation through time visible:

- each state h_t (and c_t for an LSTM) is kept and ``retain_grad``'ed, so after a
  backward its ``.grad`` is dL/dh_t, the gradient that flows back through time;
- each step uses its own alias of every parameter, ``theta_t = identity(theta)``,
  for its input projection and its recurrent update. The network's value is
  unchanged, and since the parameter's gradient is the sum over its uses,

      dL/dtheta = sum_t dL/dtheta_t,

  each ``theta_t.grad`` is step t's contribution to ``theta.grad``.

The cells are not edited: during step t the cell's parameter attributes point at
that step's aliases (:func:`swapped_parameters`) and are restored afterwards, so
built-in, variant and user-defined cells, fused or composed, all trace the same way
(a fused step takes its weights as inputs, so it sees the aliases too).
"""
from contextlib import contextmanager

import numpy as np

from .. import backend
from ..function import Function, enable_grad
from ..functional import dropout
from ..nn.cells import RecurrentCell
from ..nn.recurrent import Recurrent, check_lengths, reverse_time
from ..tensor import Tensor
from ..xp import concatenate, stack, unbind, where


class Identity(Function):
    """y = x with dy/dx = 1: a new node for the same value, so a gradient can be read there."""

    @staticmethod
    def forward(ctx, x):
        return x.view()

    @staticmethod
    def backward(ctx, grad):
        return grad


def identity(x):
    """An alias of ``x``: equal in value, a separate node in the graph (see :class:`Identity`)."""
    return Identity.apply(x)


@contextmanager
def swapped_parameters(module, replacements):
    """Inside the block, every attribute of ``module`` or its sub-modules that holds a
    parameter p with ``id(p)`` in ``replacements`` holds ``replacements[id(p)]``
    instead; the parameters are put back on exit, also when the block raises.

    Not thread-safe: the module is changed in place while the block runs.
    """
    swaps = [(owner, name, value) for owner in module.modules() for name, value in list(vars(owner).items())
             if id(value) in replacements]
    try:
        for owner, name, value in swaps:
            setattr(owner, name, replacements[id(value)])
        yield
    finally:
        for owner, name, value in reversed(swaps):
            setattr(owner, name, value)


class Trace:
    """What :func:`trace` recorded. Lists are indexed [k][t]: k runs over the layers and, for a
    bidirectional layer, its directions (layer l, direction d at k = l * D + d, PyTorch's order
    for h_n), t = 0 .. steps-1 over the direction's own steps: for the reverse direction, step t
    of row b reads input position L_b - 1 - t (L_b the row's length). Every state and output is
    a Tensor (a tuple of them for a tuple state, such as an LSTM's (h, c)).

    Attributes:
        model: the cell or layer that was traced.
        cells: the cell of each k (one for a cell).
        directions: 1, or 2 for a bidirectional layer.
        steps, batch: T and B.
        lengths: the rows' lengths (a NumPy int array), or None when every row is full.
        params: {name: Parameter}, the model's own names (``weight_hh`` for a cell,
            ``weight_hh_l1_reverse`` for a layer).
        layer_params: per k, the names of the parameters its cell uses.
        aliases: {name: list of ``steps`` alias Tensors}; ``aliases[name][t].grad`` is
            step t's contribution to ``params[name].grad`` after a backward.
        inputs: [k][t] the input x_t (B, I_k) that step t of k reads.
        projected: [k][t] ``cell.project(x_t)``, the input side of step t.
        initial_states: [k] the state fed to step 0.
        states: [k][t] the state after step t, each part a retain_grad'ed identity of what the
            step returned (kept unchanged past a row's length): after a backward its ``.grad``
            is dL/dpart_t, the gradient of the loss through everything that reads the state
            later (the output and the later steps), with the other parts held fixed.
        outputs: [k][t] ``cell.output(states[k][t])``, zero past a row's length.
        output: the model's output as it returns it: (T, B, D*out), or (B, T, D*out) for a
            batch_first layer.
        final_state: the last step's state; for a layer, (num_layers*D, B, H) per part, as the
            layer returns h_n.
    """

    def __init__(self, model, cells, steps, batch, directions=1, lengths=None):
        self.model, self.cells, self.steps, self.batch = model, cells, steps, batch
        self.directions, self.lengths = directions, lengths
        self.params, self.layer_params, self.aliases = {}, [], {}
        self.inputs, self.projected, self.initial_states, self.states, self.outputs = [], [], [], [], []
        self.output = self.final_state = None

    @property
    def num_layers(self):
        """The number of traced cells: layers times directions."""
        return len(self.cells)

    def previous_state(self, layer, t):
        """The state that step t of ``layer`` (an index k of :attr:`cells`) started from."""
        return self.initial_states[layer] if t == 0 else self.states[layer][t - 1]


def model_cells(model, name):
    """The cell of each layer and direction of ``model`` (a RecurrentCell or a Recurrent layer),
    in PyTorch's h_n order."""
    if isinstance(model, RecurrentCell):
        return [model]
    if not isinstance(model, Recurrent):
        raise TypeError(f"{name}: expected an nn.RecurrentCell or an nn.Recurrent layer (RNN, LSTM, GRU), "
                        f"got {type(model).__name__}")
    refuse_context(model, name)
    return model.cells()


def refuse_context(model, name):
    """Raise for a layer built with ``context_size``: the study tools run its cells themselves,
    without the context, so they would study a different computation."""
    if isinstance(model, Recurrent) and model.context_size is not None:
        raise ValueError(f"{name}: the layer was built with context_size={model.context_size}, and the study "
                         "tools run its cells without the context; study a layer without context_size")


def check_input(model, cells, x, name):
    """Raise unless x is a Tensor of 3 dims (time-major, or batch-major for a batch_first layer)
    with at least one step and the model's input size."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a Tensor, got {type(x).__name__}")
    batch_first = isinstance(model, Recurrent) and model.batch_first
    layout = "(batch, seq, feature)" if batch_first else "(seq, batch, feature)"
    if x.ndim != 3:
        raise ValueError(f"{name}: x has {x.ndim} dims, expected 3 {layout}")
    if x.shape[1 if batch_first else 0] < 1:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape}, {layout})")
    expected = model.input_size if isinstance(model, Recurrent) else cells[0].input_size
    if expected is not None and x.shape[2] != expected:
        raise ValueError(f"{name}: x has {x.shape[2]} features, expected input_size={expected}")


def time_major(model, x):
    """x as (T, B, I): a batch_first layer's input swapped."""
    return x.swapaxes(0, 1) if isinstance(model, Recurrent) and model.batch_first else x


def trace(model, x, state=None, lengths=None):
    """Run ``model`` over x one time step at a time, recording what a backward needs to be read.

    Args:
        model: an ``nn.RecurrentCell`` (built-in, variant or user-defined), or an
            ``nn.Recurrent`` layer (``nn.RNN``/``LSTM``/``GRU``...): any number of layers,
            bidirectional or not, batch_first or not, with the layer's dropout between layers
            while training.
        x: Tensor (T, B, input_size), or (B, T, input_size) for a batch_first layer.
        state: the initial state as the model takes it (the cell's state, or the layer's hx
            with parts of shape (num_layers*D, B, H)); zeros if None.
        lengths: B ints, as the layers take them: past a row's length its state is kept and
            its output is zero; the reverse direction starts at each row's last valid step.
    Returns: a :class:`Trace`, equal in value to what the model computes. Grad mode is on inside.

    ``project``, ``step`` and ``output`` see the step's aliases; ``initial_state`` runs
    with the parameters themselves, so a learned initial state's gradient is in no
    step's share. The cells hold the aliases while a step runs: do not trace one
    model from two threads at once.

    Example::

        tr = trace(nn.LSTM(3, 8, num_layers=2, bidirectional=True), x, lengths=[5, 3])
        (tr.output ** 2).sum().backward()
        tr.states[1][0][1].grad             # dL/dc_0 of layer 0, reverse direction
        tr.aliases["weight_hh_l1"][4].grad  # step 4's share of weight_hh_l1.grad
    """
    cells = model_cells(model, "trace")
    check_input(model, cells, x, "trace")
    x = time_major(model, x)
    steps, batch = x.shape[0], x.shape[1]
    lengths = check_lengths(lengths, steps, batch, "trace", minimum=0 if isinstance(model, RecurrentCell) else 1)
    layered = isinstance(model, Recurrent)
    directions = model.directions if layered else 1
    states = model._split_state(state, x, "trace") if layered else [state]
    names = {id(p): name for name, p in model.named_parameters()}
    tr = Trace(model, cells, steps, batch, directions, lengths)
    valid = None if lengths is None else backend.to_device(np.arange(steps)[:, None] < lengths[None, :], x.device)
    with enable_grad():
        layer_input = x
        for layer in range(len(cells) // directions):
            if layer > 0 and model.dropout and model.training:
                layer_input = dropout(layer_input, model.dropout)
            outs = []
            for d in range(directions):
                k = layer * directions + d
                seq = layer_input if d == 0 else reverse_time(layer_input, lengths)
                _trace_layer(tr, cells[k], unbind(seq, axis=0), states[k], names, valid)
                out = stack(tr.outputs[k], axis=0)
                outs.append(out if d == 0 else reverse_time(out, lengths))
            layer_input = concatenate(outs, axis=2) if directions > 1 else outs[0]
        tr.output = layer_input.swapaxes(0, 1) if layered and model.batch_first else layer_input
        finals = [s[-1] for s in tr.states]
        tr.final_state = _stack_layers(finals) if layered else finals[0]
    return tr


def _trace_layer(tr, cell, inputs, state, names, valid):
    """Append one cell's per-step record to ``tr``, each step under its own parameter aliases."""
    own = [(names[id(p)], p) for _, p in cell.named_parameters()]
    tr.layer_params.append([name for name, _ in own])
    for name, p in own:
        tr.params[name] = p
        tr.aliases[name] = []
    state = cell.initial_state(tr.batch, inputs[0]) if state is None else state
    tr.inputs.append(list(inputs))
    tr.initial_states.append(state)
    projected, states, outputs = [], [], []
    for t, x_t in enumerate(inputs):
        aliases = {}
        for name, p in own:
            alias = identity(p)
            alias.retain_grad()
            tr.aliases[name].append(alias)
            aliases[id(p)] = alias
        with swapped_parameters(cell, aliases):
            p_t = cell.project(x_t)
            new = cell.step(p_t, state)
            mask = None if valid is None or bool(valid[t].all()) else Tensor._make(valid[t][:, None], False, None, 0)
            if mask is not None:              # past a row's length: the state stays, the output is zero
                new = _map(new, lambda n, o: where(mask, n, o), state)
            state = _carried(new)
            out = cell.output(state)
            outputs.append(out if mask is None else where(mask, out, 0.0))
        projected.append(p_t)
        states.append(state)
    tr.projected.append(projected)
    tr.states.append(states)
    tr.outputs.append(outputs)


def _map(state, fn, other):
    if isinstance(state, tuple):
        return tuple(fn(a, b) for a, b in zip(state, other))
    return fn(state, other)


def _carried(state):
    """Each part of the new state through an identity node, retain_grad'ed: its consumers
    are then only the later steps and the output, so its ``.grad`` is dL/dpart with the
    other parts held fixed, whether the cell computed h from c inside the step (composed)
    or returned both from one node (fused)."""
    if isinstance(state, tuple):
        return tuple(_carried(part) for part in state)
    alias = identity(state)
    alias.retain_grad()
    return alias


def _stack_layers(finals):
    if isinstance(finals[0], tuple):
        return tuple(stack([f[i] for f in finals], axis=0) for i in range(len(finals[0])))
    return stack(finals, axis=0)
