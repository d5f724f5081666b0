"""Recurrent layers: any cell unrolled over time, stacked and run both ways.

``unroll`` runs one cell over a sequence as ordinary graph ops (one input
projection for all steps, one ``step`` per time step), so backpropagation through
time is just the backward pass over the unrolled graph. ``Recurrent`` stacks
layers and directions of any cell; ``RNN``, ``LSTM`` and ``GRU`` are Recurrent
with PyTorch's cells, arguments and parameter names.

Variable lengths follow PyTorch's packed sequences without packing: past a row's
length its state stops changing and its outputs are exactly zero; the reverse
direction starts at each row's own last valid step.

A layer built with ``context_size=C`` is conditioned on a vector c (B, C) given as
``context=`` at every call: c W_ctx^T is added to every step's projected input, in every
layer and direction (:mod:`tinygrad_rnn.nn.context`).
"""
import warnings

import numpy as np

from .. import backend, creation
from .. import functional as F
from ..tensor import Tensor, not_a_tensor
from ..xp import concatenate, stack, unbind, where
from .cells import RecurrentCell, check_size, check_state, uniform_parameter
from .context import ContextCell, check_context, projected_width
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell
from .module import Module
from . import trace_scan


def check_lengths(lengths, steps, batch, name="unroll", minimum=1):
    """``lengths`` as a host int array of shape (batch,) with minimum <= length <= steps, or None."""
    if lengths is None:
        return None
    raw = lengths.numpy() if isinstance(lengths, Tensor) else backend.to_device(np.asarray(lengths), "cpu")
    if raw.size == 0 and raw.dtype.kind == "f":
        raw = raw.astype(np.int64)          # an empty list: no rows, no lengths
    if raw.dtype.kind not in "iu":
        raise TypeError(f"{name}: lengths must be integers, got dtype {raw.dtype}")
    if raw.shape != (batch,):
        raise ValueError(f"{name}: lengths has shape {raw.shape}, expected ({batch},), one per batch row")
    if raw.size and (raw.min() < minimum or raw.max() > steps):
        raise ValueError(f"{name}: lengths must be in [{minimum}, {steps}] (the sequence length), "
                         f"got values in [{raw.min()}, {raw.max()}]")
    return raw.astype(np.int64)


def reverse_time(x, lengths):
    """Reverse each row of x (T, B, ...) within its own length (padding stays in place)."""
    if lengths is None:
        return x[::-1]
    steps = np.arange(x.shape[0])[:, None]
    source = np.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)
    rows = np.broadcast_to(np.arange(x.shape[1])[None, :], source.shape)
    return x[backend.to_device(source, x.device), backend.to_device(rows, x.device)]


def _map(state, fn, *others):
    if isinstance(state, tuple):
        return tuple(fn(*parts) for parts in zip(state, *others))
    return fn(state, *others)


def unroll(cell, x, state=None, lengths=None, reverse=False, per_step=False):
    """Run ``cell`` over x (T, B, input_size); returns (outputs (T, B, out), final state).

    ``lengths`` (B ints) freezes each row's state after its last valid step and
    zeroes its later outputs (a length of 0 keeps the initial state throughout);
    ``reverse`` runs from each row's last valid step back. All T steps are one graph
    node (the cell's kernel, or its traced step: :mod:`tinygrad_rnn.nn.trace_scan`);
    ``per_step=True``, or a step that cannot be traced, records one ``step`` per time
    step instead, each op a node of its own."""
    if not isinstance(x, Tensor) or x.ndim != 3:
        got = f"shape {x.shape}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ValueError(f"unroll: x must be a Tensor (steps, batch, features), got {got}")
    steps, batch = x.shape[0], x.shape[1]
    lengths = check_lengths(lengths, steps, batch, minimum=0)
    if reverse:
        x = reverse_time(x, lengths)
    state = check_state(cell, x, state, type(cell).__name__, batch=batch)
    valid = None if lengths is None else backend.to_device(np.arange(steps)[:, None] < lengths[None, :], x.device)
    scanned = None if per_step else trace_scan.scan(cell, x, state, valid)
    if scanned is not None:
        out, state = scanned
        return (reverse_time(out, lengths) if reverse else out), state
    inputs = unbind(cell.project(x), axis=0)
    full_until = steps if lengths is None else int(lengths.min())
    outputs = []
    for t in range(steps):
        new = cell.step(inputs[t], state)
        out = cell.output(new)
        if t >= full_until:             # some rows have ended: keep their state, zero their output
            mask = Tensor._make(valid[t][:, None], False, None, 0)
            new = _map(new, lambda n, o: where(mask, n, o), state)
            out = where(mask, out, 0.0)
        state = new
        outputs.append(out)
    out = stack(outputs, axis=0)
    return (reverse_time(out, lengths) if reverse else out), state


class Recurrent(Module):
    """Layers and directions of any cell, with the options of PyTorch's RNN layers.

    Args:
        make_cell: ``make_cell(input_size, hidden_size)`` returns a new
            :class:`~tinygrad_rnn.nn.cells.RecurrentCell`; one is made per layer and direction.
        input_size, hidden_size, num_layers=1, bidirectional=False,
        dropout=0.0 (on each layer's output but the last, while training), batch_first=False,
        per_step=False (True: record every step's ops as nodes of their own instead of
        one whole-sequence node per layer and direction; slower, for stepping through a
        cell in a debugger; the attribute may be changed later),
        context_size=None (C: the layer is conditioned on a vector c (B, C) given as ``context=``
        at every call; see below).

    Each cell parameter ``name`` is registered as ``{name}_l{k}`` (``_reverse`` added for
    the backward direction), PyTorch's naming, so state dicts carry over.

    Conditioning on a vector (Goodfellow et al. 2016 §10.2.4; :mod:`tinygrad_rnn.nn.context`):
    with ``context_size=C`` every layer k and direction owns ``weight_context_l{k}`` (P, C) (P the
    width of the cell's projected input, G*H for a gated cell; U(-1/sqrt(H), 1/sqrt(H))), and
    ``c W_ctx^T`` is added to every step's projected input: the same as concatenating c onto
    every input x_t of a layer of input size I+C (or D*H+C) whose extra weight columns are
    W_ctx, computed with one (B, C) x (C, P) matmul per call instead. The context feeds every
    layer, not only the first, so that each layer sees c directly rather than through the
    state of the layer below. As the initial state, c goes through ``hx`` (see
    :class:`~tinygrad_rnn.nn.InitialState`); both ways at once is giving both.

    Inputs: ``input``, ``hx`` (the initial state: each part (num_layers*D, B, H), or None for
    the cells' initial states), ``lengths`` (optional B ints, as for :class:`LSTM`), ``context``
    ((B, C), or (C,) for an unbatched input; required exactly when built with context_size).
    Outputs: ``(output, final state)``.
    Shape: input (T, B, I) (or (B, T, I) with batch_first, or (T, I) unbatched) ->
    output (T, B, D*out) and the final state, each part (num_layers*D, B, H).

    Example::

        layer = nn.Recurrent(nn.PeepholeLSTMCell, 3, 8, num_layers=2, bidirectional=True)
        output, (h_n, c_n) = layer(tg.randn(5, 4, 3), lengths=[5, 4, 2, 1])   # (5, 4, 16), (4, 4, 8)
    """

    def __init__(self, make_cell, input_size, hidden_size, num_layers=1, bidirectional=False, dropout=0.0,
                 batch_first=False, per_step=False, *, context_size=None):
        name = type(self).__name__
        input_size = check_size(name, "input_size", input_size)
        hidden_size = check_size(name, "hidden_size", hidden_size)
        num_layers = check_size(name, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{type(self).__name__}: dropout={dropout} acts between layers, so it does nothing "
                          "with num_layers=1", stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.batch_first = bidirectional, dropout, batch_first
        self.per_step = per_step
        self.context_size = None if context_size is None else check_size(name, "context_size", context_size)
        self._cells = []
        size = input_size
        for k in range(num_layers):
            layer = []
            for suffix in ("", "_reverse")[:self.directions]:
                cell = make_cell(size, hidden_size)
                if not isinstance(cell, RecurrentCell):
                    raise TypeError(f"make_cell must return a RecurrentCell, got {type(cell).__name__}")
                for pname, p in cell.named_parameters():
                    setattr(self, f"{pname.replace('.', '_')}_l{k}{suffix}", p)
                if self.context_size is not None:
                    own = f"weight_context_l{k}{suffix}"
                    if own in vars(self):
                        raise ValueError(f"{name}: the cell has a parameter weight_context, the name of the "
                                         "layer's context weight; rename it to use context_size")
                    setattr(self, own, self._context_weight(cell, size, name))
                layer.append(cell)
            self._cells.append(layer)
            size = getattr(layer[0], "output_size", hidden_size) * self.directions

    def _context_weight(self, cell, input_size, owner):
        """A new W_ctx (P, C) for ``cell``, on its parameters' device and dtype."""
        like = next(iter(cell.parameters()), None)
        device, dtype = (like.device, like.dtype) if like is not None else (None, None)
        width = projected_width(cell, input_size, owner)
        return uniform_parameter((width, self.context_size), self.hidden_size, device, dtype)

    def context_weights(self):
        """The context weights W_ctx, layer by layer, forward direction first (empty without context_size)."""
        if self.context_size is None:
            return []
        return [getattr(self, f"weight_context_l{k}{suffix}") for k in range(self.num_layers)
                for suffix in ("", "_reverse")[:self.directions]]

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    def cells(self):
        """The cells, layer by layer, forward direction first."""
        return [cell for layer in self._cells for cell in layer]

    def train(self, mode=True):
        super().train(mode)
        for cell in self.cells():
            cell.train(mode)
        return self

    def extra_repr(self):
        options = [f"{self.input_size}, {self.hidden_size}"]
        for key, default in (("num_layers", 1), ("bidirectional", False), ("dropout", 0.0), ("batch_first", False),
                             ("context_size", None)):
            if getattr(self, key) != default:
                options.append(f"{key}={getattr(self, key)}")
        return ", ".join(options)

    def forward(self, input, hx=None, lengths=None, context=None):
        name = type(self).__name__
        x, unbatched = self._check_input(input, name)
        context = check_context(name, context, self.context_size, x, unbatched)
        if unbatched:
            hx = None if hx is None else _map(hx, lambda s: s.unsqueeze(1))
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], name)
        output, h_n = self.time_major(x, hx, lengths, context)
        if unbatched:
            return output.squeeze(1), _map(h_n, lambda s: s.squeeze(1))
        return (output.swapaxes(0, 1) if self.batch_first else output), h_n

    def time_major(self, x, hx=None, lengths=None, context=None):
        """The layers on x (T, B, I) time-major whatever ``batch_first``: (output (T, B, D*out),
        h_n). ``lengths`` may hold zeros here: those rows keep their initial state throughout.
        ``context`` (B, C) when the layer has a context_size. An empty batch (B = 0) gives empty
        outputs, as in PyTorch."""
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], type(self).__name__, minimum=0)
        initial = self._split_state(hx, x, type(self).__name__)
        context = check_context(type(self).__name__, context, self.context_size, x)
        if x.shape[1] == 0:
            return self._empty(x, initial)
        context_weights = iter(self.context_weights())
        layer_input, finals = x, []
        for k, layer in enumerate(self._cells):
            outs = []
            for d, cell in enumerate(layer):
                if context is not None:                 # c W_ctx^T, once per call, added at every step
                    cell = ContextCell(cell, context @ next(context_weights).T)
                out, final = unroll(cell, layer_input, initial[k * self.directions + d], lengths, reverse=d == 1,
                                    per_step=self.per_step)
                outs.append(out)
                finals.append(final)
            layer_input = concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout)
        return layer_input, _stack_states(finals)

    def _empty(self, x, initial):
        """Outputs and final state of an empty batch: (T, 0, D*out) and (num_layers*D, 0, ...) per part."""
        cell = self._cells[-1][0]
        width = getattr(cell, "output_size", self.hidden_size) * self.directions
        zeros = cell.initial_state(0, x)
        parts = zeros if isinstance(zeros, tuple) else (zeros,)
        count = self.num_layers * self.directions
        finals = tuple(creation.zeros((count,) + p.shape, dtype=p.dtype, device=p.device) for p in parts)
        output = creation.zeros(x.shape[0], 0, width, dtype=x.dtype, device=x.device)
        return output, finals if isinstance(zeros, tuple) else finals[0]

    def _check_input(self, x, name):
        if not isinstance(x, Tensor):
            raise not_a_tensor(name, "input", x)
        if x.ndim not in (2, 3):
            layout = "(batch, seq, feature)" if self.batch_first else "(seq, batch, feature)"
            raise ValueError(f"{name}: input has {x.ndim} dims, expected 3 {layout} or 2 (seq, feature)")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        if x.dtype.kind != "f":
            raise TypeError(f"{name}: input has dtype {x.dtype.name}, expected a floating dtype "
                            "(convert with .float())")
        for pname, p in self.named_parameters():
            if p.dtype != x.dtype:
                raise TypeError(f"{name}: input is {x.dtype.name} but parameter {pname} is {p.dtype.name}; convert "
                                f"one of them (x.astype(...), or {name.lower()}.to(dtype=...)) so that they match")
        given = x.shape
        x, unbatched = (x.unsqueeze(1), True) if x.ndim == 2 else ((x.swapaxes(0, 1) if self.batch_first else x), False)
        if x.shape[0] == 0:
            raise ValueError(f"{name}: input of shape {given} has no time steps; expected at least one")
        return x, unbatched

    def _split_state(self, hx, x, name):
        """Per layer and direction initial states from hx (num_layers*D, B, H) parts, or Nones."""
        count = self.num_layers * self.directions
        if hx is None:
            return [None] * count
        parts = hx if isinstance(hx, tuple) else (hx,)
        zeros = self._cells[0][0].initial_state(x.shape[1], x)
        zeros = zeros if isinstance(zeros, tuple) else (zeros,)
        if len(parts) != len(zeros):
            raise ValueError(f"{name}: the initial state has {len(parts)} parts, the cell's state {len(zeros)}")
        for i, (part, zero) in enumerate(zip(parts, zeros)):
            expected = (count,) + zero.shape
            if not isinstance(part, Tensor):
                raise not_a_tensor(name, f"initial state part {i} (expected shape {expected})", part)
            if part.shape != expected:
                raise ValueError(f"{name}: initial state part {i} has shape {part.shape}, "
                                 f"expected {expected} (num_layers*directions, batch, state size)")
            if part.dtype != zero.dtype:
                raise TypeError(f"{name}: initial state part {i} is {part.dtype.name}, expected {zero.dtype.name} "
                                "like the input")
        per_part = [unbind(p, axis=0) if count > 1 else [p.squeeze(0)] for p in parts]
        return [tuple(p[j] for p in per_part) if isinstance(hx, tuple) else per_part[0][j] for j in range(count)]


def _stack_states(finals):
    if len(finals) == 1:                    # one layer, one direction: (B, ...) -> (1, B, ...)
        return _map(finals[0], lambda s: s.reshape((1,) + s.shape))
    if isinstance(finals[0], tuple):
        return tuple(stack([f[i] for f in finals], axis=0) for i in range(len(finals[0])))
    return stack(finals, axis=0)


_LAYER_DOC = """{title}, PyTorch's ``nn.{name}``, with its equations, gate order and parameter names:

{equations}
    Args:
        input_size: features of x_t.  hidden_size: features of h_t.
        num_layers: stacked layers, layer k+1 reading layer k's outputs (default 1).{extra_arg}
        bias: with b_ih and b_hh (default True).
        batch_first: input and output are (B, T, ...) instead of (T, B, ...) (h_n is not).
        dropout: dropout on each layer's output but the last's, while training (default 0).
        bidirectional: a second layer reads each row backwards from its last valid step.
        context_size: C, to condition the layer on a vector c (B, C) given as ``context=`` at every
            call: c W_ctx^T is added to every step's input projection in every layer and direction,
            the same as concatenating c onto every layer's input (default None: no context).
        fused: sequences run through the cell's hand-tuned kernel (default); False runs the
            traced composed step, the same values (see ``tinygrad_rnn.nn.trace_scan``).
        per_step: record every step's ops as graph nodes of their own (to step through a cell).
        device, dtype: of the parameters (default cpu, float32).
    Inputs: ``input``, ``{hx}`` (optional, zeros when None), ``lengths`` (optional, B ints: past a
    row's length its state stays and its outputs are zero, PyTorch's packed semantics unpacked),
    ``context`` ((B, C), (C,) unbatched; exactly when built with context_size).
    Outputs: ``(output, {hn})``.
    Shape: input (T, B, I) (or (B, T, I) with batch_first, or (T, I) unbatched);
        output (T, B, D*H) (D = 2 if bidirectional else 1); {state_shape}
    Parameters: ``weight_ih_l{{k}}`` (G*H, I or D*H), ``weight_hh_l{{k}}`` (G*H, H), ``bias_ih_l{{k}}``,
        ``bias_hh_l{{k}}`` (G*H), with ``_reverse`` for the reverse direction; G = {gates};
        with context_size, ``weight_context_l{{k}}`` (G*H, C), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        {example}
"""


class RNN(Recurrent):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, context_size=None, fused=True, per_step=False, device=None,
                 dtype=None):
        self.nonlinearity = nonlinearity
        super().__init__(lambda i, h: RNNCell(i, h, bias, nonlinearity, fused, device=device, dtype=dtype),
                         input_size, hidden_size, num_layers, bidirectional, dropout, batch_first, per_step,
                         context_size=context_size)


class LSTM(Recurrent):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, context_size=None, fused=True, per_step=False, device=None, dtype=None):
        super().__init__(lambda i, h: LSTMCell(i, h, bias, fused, device=device, dtype=dtype),
                         input_size, hidden_size, num_layers, bidirectional, dropout, batch_first, per_step,
                         context_size=context_size)


class GRU(Recurrent):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, context_size=None, fused=True, per_step=False, device=None, dtype=None):
        super().__init__(lambda i, h: GRUCell(i, h, bias, fused, device=device, dtype=dtype),
                         input_size, hidden_size, num_layers, bidirectional, dropout, batch_first, per_step,
                         context_size=context_size)


RNN.__doc__ = _LAYER_DOC.format(
    title="Elman RNN layers", name="RNN", gates=1, hx="hx", hn="h_n",
    equations="    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),    act = tanh or relu\n",
    extra_arg="\n        nonlinearity: 'tanh' (default) or 'relu' (with identity W_hh: the IRNN).",
    state_shape="hx and h_n (num_layers*D, B, H).",
    example="rnn = nn.RNN(3, 8, num_layers=2)\n        output, h_n = rnn(tg.randn(5, 4, 3))     # (5, 4, 8), (2, 4, 8)")
LSTM.__doc__ = _LAYER_DOC.format(
    title="LSTM layers", name="LSTM", gates="4, rows i | f | g | o", hx="(h_0, c_0)", hn="(h_n, c_n)",
    equations=("    i, f, o = sigmoid(.), g = tanh(.)  of  x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh\n"
               "    c_t = f * c_{t-1} + i * g,    h_t = o * tanh(c_t)\n"),
    extra_arg="", state_shape="h_0, c_0, h_n, c_n (num_layers*D, B, H).",
    example=("lstm = nn.LSTM(3, 8, bidirectional=True, batch_first=True)\n"
             "        output, (h_n, c_n) = lstm(tg.randn(4, 5, 3), lengths=[5, 3, 2, 1])   # (4, 5, 16), (2, 4, 8)"))
GRU.__doc__ = _LAYER_DOC.format(
    title="GRU layers", name="GRU", gates="3, rows r | z | n", hx="h_0", hn="h_n",
    equations=("    r, z = sigmoid(x_t W_i{r,z}^T + b_i{r,z} + h_{t-1} W_h{r,z}^T + b_h{r,z})\n"
               "    n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn)),    h_t = (1 - z) * n + z * h_{t-1}\n"),
    extra_arg="", state_shape="h_0 and h_n (num_layers*D, B, H).",
    example="gru = nn.GRU(3, 8)\n        output, h_n = gru(tg.randn(5, 4, 3))     # (5, 4, 8), (1, 4, 8)")
