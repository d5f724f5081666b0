"""Recurrent cells: one time step as graph ops, with the state carried by the caller.

A cell splits its step in two so that a layer can batch the input side:
``project(x)`` maps inputs of any number of leading dims (all T steps at once,
one matmul) and ``step(p, state)`` does the recurrent part of one step. Writing
a new cell means subclassing :class:`RecurrentCell` and defining ``step`` (and
``project``, ``initial_state`` and ``output`` where the defaults do not fit);
:class:`tinygrad_rnn.nn.Recurrent` then runs it with every option of the
built-in layers (layers, directions, lengths, dropout, batch_first).

RNNCell, LSTMCell and GRUCell use PyTorch's equations, gate order and parameter
names. Each has a composed ``step`` (the readable form) and, with
``fused=True`` (the default), a fused one from :mod:`tinygrad_rnn.nn.fused`.
"""
import math

from .. import creation
from ..xp import split
from . import fused as fused_ops
from . import init
from . import scan as scan_ops
from .module import Module, Parameter


def project_input(x, weight, bias=None):
    """x W^T + b for x of shape (*, I): one (N, I) x (I, G*H) matmul over all leading dims."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features, expected {weight.shape[1]}")
    flat = x.reshape(-1, x.shape[-1]) @ weight.T
    if bias is not None:
        flat = flat + bias
    return flat.reshape(x.shape[:-1] + (weight.shape[0],))


def uniform_parameter(shape, hidden_size, device, dtype):
    """A parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for recurrent weights."""
    bound = 1.0 / math.sqrt(hidden_size)
    return Parameter(init.uniform_(creation.zeros(*shape, dtype=dtype, device=device or "cpu"), -bound, bound))


class RecurrentCell(Module):
    """Base class of cells. State: a Tensor (B, H), or a tuple of them."""

    input_size = hidden_size = None

    def project(self, x):
        """The input side of the step for inputs (*, input_size); the identity by default."""
        return x

    def step(self, p, state):
        """The new state from the projected input ``p`` (B, ...) and ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must define step(p, state)")

    def scan(self, x, state, valid):
        """All steps at once: (outputs (T, B, out), final state) from the inputs x (T, B, input_size),
        or None when the cell has no whole-sequence op (the unroller then calls ``step`` per step).
        ``valid`` (T, B) bool or None: where False the state is kept and the output is zero."""
        return None

    def initial_state(self, batch, like):
        """Zeros of shape (batch, hidden_size) on ``like``'s device and dtype."""
        return creation.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device)

    def output(self, state):
        """What the layer outputs at each step: the state itself, or its first part."""
        return state[0] if isinstance(state, tuple) else state

    def forward(self, x, state=None):
        """One step on x (B, input_size) or (input_size,); returns the new state."""
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has shape {x.shape}, expected "
                             f"(batch, {self.input_size}) or ({self.input_size},)")
        unbatched = x.ndim == 1
        if unbatched:
            x = x.reshape(1, -1)
            state = None if state is None else _map_state(state, lambda s: s.reshape(1, -1))
        new = self.step(self.project(x), self.initial_state(x.shape[0], x) if state is None else state)
        return _map_state(new, lambda s: s.reshape(-1)) if unbatched else new


def _map_state(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


class _GatedCell(RecurrentCell):
    """Holds weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (G*H) for G gates."""

    gates = 1

    def __init__(self, input_size, hidden_size, bias=True, fused=True, *, device=None, dtype=None):
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"{type(self).__name__}: sizes must be positive, got input_size={input_size}, "
                             f"hidden_size={hidden_size}")
        self.input_size, self.hidden_size, self.fused = input_size, hidden_size, fused
        rows = self.gates * hidden_size
        self.weight_ih = uniform_parameter((rows, input_size), hidden_size, device, dtype)
        self.weight_hh = uniform_parameter((rows, hidden_size), hidden_size, device, dtype)
        self.bias_ih = uniform_parameter((rows,), hidden_size, device, dtype) if bias else None
        self.bias_hh = uniform_parameter((rows,), hidden_size, device, dtype) if bias else None

    def _scans(self, cls):
        """Whether the whole-sequence op may stand in for ``step``: fused, and neither ``step`` nor
        ``project`` overridden."""
        return self.fused and type(self).step is cls.step and type(self).project is cls.project

    def _scan_input(self, x):
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has shape {x.shape}, expected (steps, batch, "
                             f"{self.input_size})")
        return x

    def _folded_bias(self):
        return None if self.bias_ih is None else self.bias_ih + self.bias_hh

    def project(self, x):
        """x W_ih^T + b_ih + b_hh: both biases fold into the input side."""
        return project_input(x, self.weight_ih, self._folded_bias())

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")


class RNNCell(_GatedCell):
    """Elman cell:  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),  act = tanh or relu.

    Shape: x (B, I), h (B, H) -> h' (B, H). Elman (1990); with relu and
    ``init.eye_(weight_hh)`` it is the IRNN of Le, Jaitly & Hinton (2015).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", fused=True, *,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, fused, device=device, dtype=dtype)

    def step(self, p, h):
        if self.fused:
            return fused_ops.RNNStep.apply(p, h, self.weight_hh, self.nonlinearity)
        a = p + h @ self.weight_hh.T
        return a.tanh() if self.nonlinearity == "tanh" else a.relu()

    def scan(self, x, h, valid):
        if not self._scans(RNNCell):
            return None
        return scan_ops.RNNScan.apply(self._scan_input(x), self.weight_ih, self._folded_bias(), h, self.weight_hh,
                                      self.nonlinearity, valid)


class LSTMCell(_GatedCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate
    of Gers et al. 2000), rows of the weights stacked i | f | g | o:

        i, f, o = sigmoid(.),  g = tanh(.)    of  x W_ih^T + b_ih + h W_hh^T + b_hh
        c' = f * c + i * g
        h' = o * tanh(c')

    Shape: x (B, I), state (h, c) each (B, H) -> (h', c').
    """

    gates = 4

    def initial_state(self, batch, like):
        zeros = super().initial_state(batch, like)
        return zeros, zeros

    def step(self, p, state):
        h, c = state
        if self.fused:
            return fused_ops.LSTMStep.apply(p, h, c, self.weight_hh)
        z = p + h @ self.weight_hh.T
        i, f, g, o = split(z, self.hidden_size, axis=1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c

    def scan(self, x, state, valid):
        if not self._scans(LSTMCell):
            return None
        out, h, c = scan_ops.LSTMScan.apply(self._scan_input(x), self.weight_ih, self._folded_bias(), state[0],
                                            state[1], self.weight_hh, valid)
        return out, (h, c)


class GRUCell(_GatedCell):
    """Gated recurrent unit (Cho et al. 2014), rows stacked r | z | n:

        r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
        z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h

    Shape: x (B, I), h (B, H) -> h' (B, H).
    """

    gates = 3

    def project(self, x):
        """x W_ih^T + b_ih (b_hh stays in the step: b_hn sits inside r * (...))."""
        return project_input(x, self.weight_ih, self.bias_ih)

    def _recurrent_bias(self, h):
        if self.bias_hh is not None:
            return self.bias_hh
        return creation.zeros(3 * self.hidden_size, dtype=h.dtype, device=h.device)

    def scan(self, x, h, valid):
        if not self._scans(GRUCell):
            return None
        return scan_ops.GRUScan.apply(self._scan_input(x), self.weight_ih, self.bias_ih, h, self.weight_hh,
                                      self._recurrent_bias(h), valid)

    def step(self, p, h):
        bias = self._recurrent_bias(h)
        if self.fused:
            return fused_ops.GRUStep.apply(p, h, self.weight_hh, bias)
        p_r, p_z, p_n = split(p, self.hidden_size, axis=1)
        h_r, h_z, h_n = split(h @ self.weight_hh.T + bias, self.hidden_size, axis=1)
        r, z = (p_r + h_r).sigmoid(), (p_z + h_z).sigmoid()
        n = (p_n + r * h_n).tanh()
        return (1 - z) * n + z * h
