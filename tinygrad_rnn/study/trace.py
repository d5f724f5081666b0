"""A step-by-step unroll made for inspection: every state kept, every step's share of every gradient.

``trace(model, x)`` runs a recurrent cell, or a stack of unidirectional layers,
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

from ..function import Function, enable_grad
from ..functional import dropout
from ..nn.cells import RecurrentCell
from ..nn.recurrent import Recurrent
from ..tensor import Tensor
from ..xp import stack, unbind


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
    """What :func:`trace` recorded. Lists are indexed [layer][t], t = 0 .. steps-1; every
    state and output is a Tensor (a tuple of them for a tuple state, such as an LSTM's (h, c)).

    Attributes:
        model: the cell or layer that was traced.
        cells: the cell of each layer (one for a cell).
        steps, batch: T and B.
        params: {name: Parameter}, the model's own names (``weight_hh`` for a cell,
            ``weight_hh_l1`` for a layer).
        layer_params: per layer, the names of the parameters its cell uses.
        aliases: {name: list of ``steps`` alias Tensors}; ``aliases[name][t].grad`` is
            step t's contribution to ``params[name].grad`` after a backward.
        inputs: [layer][t] the layer's input x_t (B, I_k) at step t.
        projected: [layer][t] ``cell.project(x_t)``, the input side of step t.
        initial_states: [layer] the state fed to step 0.
        states: [layer][t] the state after step t, each part a retain_grad'ed identity of
            what the step returned: after a backward its ``.grad`` is dL/dpart_t, the
            gradient of the loss through everything that reads the state later (the
            output and the later steps), with the other parts held fixed.
        outputs: [layer][t] ``cell.output(states[layer][t])``.
        output: the last layer's outputs stacked, (T, B, out), as ``nn.unroll`` returns them.
        final_state: the last step's state; for a layer stacked over layers,
            (num_layers, B, H) per part, as the layer returns h_n.
    """

    def __init__(self, model, cells, steps, batch):
        self.model, self.cells, self.steps, self.batch = model, cells, steps, batch
        self.params, self.layer_params, self.aliases = {}, [], {}
        self.inputs, self.projected, self.initial_states, self.states, self.outputs = [], [], [], [], []
        self.output = self.final_state = None

    @property
    def num_layers(self):
        return len(self.cells)

    def previous_state(self, layer, t):
        """The state that step t of ``layer`` started from."""
        return self.initial_states[layer] if t == 0 else self.states[layer][t - 1]


def model_cells(model, name):
    """The cell of each layer of ``model`` (a RecurrentCell or a unidirectional, time-major Recurrent)."""
    if isinstance(model, RecurrentCell):
        return [model]
    if not isinstance(model, Recurrent):
        raise TypeError(f"{name}: expected an nn.RecurrentCell or an nn.Recurrent layer (RNN, LSTM, GRU), "
                        f"got {type(model).__name__}")
    if model.bidirectional:
        raise ValueError(f"{name}: bidirectional layers are not supported (the reverse direction reads the "
                         "future); trace a unidirectional layer")
    if model.batch_first:
        raise ValueError(f"{name}: expected a time-major layer (batch_first=False), got batch_first=True; "
                         "the parameters are the same, so build the layer time-major")
    return [cell for layer in model._cells for cell in layer]


def check_input(model, cells, x, name):
    """Raise unless x is a Tensor (T, B, input_size) with T >= 1."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a Tensor, got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"{name}: x has {x.ndim} dims, expected 3 (seq, batch, feature)")
    if x.shape[0] < 1:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape})")
    expected = model.input_size if isinstance(model, Recurrent) else cells[0].input_size
    if expected is not None and x.shape[2] != expected:
        raise ValueError(f"{name}: x has {x.shape[2]} features, expected input_size={expected}")


def trace(model, x, state=None):
    """Run ``model`` over x one step at a time, recording what a backward needs to be read.

    Args:
        model: an ``nn.RecurrentCell`` (built-in, variant or user-defined), or a
            unidirectional, time-major ``nn.Recurrent`` layer (``nn.RNN``/``LSTM``/``GRU``,
            any number of layers, layer k's outputs feeding layer k+1, with the layer's
            dropout between layers while training).
        x: Tensor (T, B, input_size).
        state: the initial state as the model takes it (the cell's state, or the
            layer's hx with parts of shape (num_layers, B, H)); zeros if None.
    Returns: a :class:`Trace`. Grad mode is on inside, whatever the caller's.

    ``project``, ``step`` and ``output`` see the step's aliases; ``initial_state`` runs
    with the parameters themselves, so a learned initial state's gradient is in no
    step's share. The cells hold the aliases while a step runs: do not trace one
    model from two threads at once.

    Example::

        tr = trace(nn.LSTM(3, 8, num_layers=2), x)
        (tr.output ** 2).sum().backward()
        tr.states[1][0][1].grad          # dL/dc_0 of layer 1
        tr.aliases["weight_hh_l0"][4].grad  # step 4's share of weight_hh_l0.grad
    """
    cells = model_cells(model, "trace")
    check_input(model, cells, x, "trace")
    states = model._split_state(state, x, "trace") if isinstance(model, Recurrent) else [state]
    names = {id(p): name for name, p in model.named_parameters()}
    tr = Trace(model, cells, x.shape[0], x.shape[1])
    with enable_grad():
        layer_input = unbind(x, axis=0)
        for k, cell in enumerate(cells):
            if k > 0 and model.dropout and model.training:
                layer_input = unbind(dropout(stack(layer_input, axis=0), model.dropout), axis=0)
            _trace_layer(tr, cell, layer_input, states[k], names)
            layer_input = tr.outputs[k]
        tr.output = stack(tr.outputs[-1], axis=0)
        finals = [s[-1] for s in tr.states]
        tr.final_state = _stack_layers(finals) if isinstance(model, Recurrent) else finals[0]
    return tr


def _trace_layer(tr, cell, inputs, state, names):
    """Append one layer's per-step record to ``tr``, each step under its own parameter aliases."""
    own = [(names[id(p)], p) for _, p in cell.named_parameters()]
    tr.layer_params.append([name for name, _ in own])
    for name, p in own:
        tr.params[name] = p
        tr.aliases[name] = []
    state = cell.initial_state(tr.batch, inputs[0]) if state is None else state
    tr.inputs.append(list(inputs))
    tr.initial_states.append(state)
    projected, states, outputs = [], [], []
    for x_t in inputs:
        aliases = {}
        for name, p in own:
            alias = identity(p)
            alias.retain_grad()
            tr.aliases[name].append(alias)
            aliases[id(p)] = alias
        with swapped_parameters(cell, aliases):
            p_t = cell.project(x_t)
            state = _carried(cell.step(p_t, state))
            outputs.append(cell.output(state))
        projected.append(p_t)
        states.append(state)
    tr.projected.append(projected)
    tr.states.append(states)
    tr.outputs.append(outputs)


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
