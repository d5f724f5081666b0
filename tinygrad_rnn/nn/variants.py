"""Variants of the recurrent cells, each written as graph ops only.

They run through :class:`tinygrad_rnn.nn.Recurrent` like the built-in cells (all T
steps as one node traced from ``step``, see :mod:`tinygrad_rnn.nn.trace_scan`), and
show how a new cell is written: parameters in ``__init__``, the input side in
``project``, one time step in ``step``, gate values named for the study tools.
"""
import numpy as np

from .. import backend, creation
from ..tensor import Tensor
from ..xp import where
from .cells import GatedCell, GateLayout, RecurrentCell, project_input, uniform_parameter
from .lstm import GATES as LSTM_GATES
from .trace_scan import named


class PeepholeLSTMCell(GatedCell):
    """LSTM with diagonal peephole connections from the cell state to the gates
    (Gers & Schmidhuber 2000; the form of Graves 2013), rows stacked i | f | g | o:

        i  = sigmoid(x W_ii^T + h W_hi^T + w_ci * c  + b_i)
        f  = sigmoid(x W_if^T + h W_hf^T + w_cf * c  + b_f)
        g  = tanh(x W_ig^T + h W_hg^T + b_g)
        c' = f * c + i * g
        o  = sigmoid(x W_io^T + h W_ho^T + w_co * c' + b_o)
        h' = o * tanh(c')

    Parameters: those of LSTMCell plus ``weight_ch`` (3, H), the peepholes w_ci, w_cf, w_co.
    """

    gates = LSTM_GATES
    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, bias=True, *, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, fused=False, device=device, dtype=dtype)
        self.weight_ch = uniform_parameter((3, hidden_size), hidden_size, device, dtype)

    def step(self, p, state):
        h, c = state
        z_i, z_f, z_g, z_o = LSTM_GATES.split(p + h @ self.weight_hh.T)
        w_ci, w_cf, w_co = self.weight_ch[0], self.weight_ch[1], self.weight_ch[2]
        i = named((z_i + w_ci * c).sigmoid(), "i")
        f = named((z_f + w_cf * c).sigmoid(), "f")
        g = named(z_g.tanh(), "g")
        c = f * c + i * g
        o = named((z_o + w_co * c).sigmoid(), "o")
        return o * c.tanh(), c


class CoupledLSTMCell(GatedCell):
    """LSTM whose input gate is tied to the forget gate, i = 1 - f ("CIFG", Greff et
    al. 2017, LSTM: A Search Space Odyssey), rows stacked f | g | o:

        f  = sigmoid(x W_if^T + h W_hf^T + b_f)
        g  = tanh(x W_ig^T + h W_hg^T + b_g)
        o  = sigmoid(x W_io^T + h W_ho^T + b_o)
        c' = f * c + (1 - f) * g
        h' = o * tanh(c')
    """

    gates = GateLayout(f="sigmoid", g="tanh", o="sigmoid")
    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, bias=True, *, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, fused=False, device=device, dtype=dtype)

    def step(self, p, state):
        h, c = state
        f, g, o = self.gates.activate(p + h @ self.weight_hh.T)
        c = f * c + (1 - f) * g
        return o * c.tanh(), c


class JordanCell(RecurrentCell):
    """Jordan network (Jordan 1986): the previous *output*, not the hidden layer, is fed back.

        h_t = tanh(x_t W_ih^T + b_ih + y_{t-1} W_yh^T + b_yh)
        y_t = act(h_t W_hy^T + b_hy)          act = tanh (or identity)

    The state carried between steps is y (B, output_size), which is also the output.
    """

    state_names = ("y",)

    def __init__(self, input_size, hidden_size, output_size=None, bias=True, output_nonlinearity="tanh", *,
                 device=None, dtype=None):
        if output_nonlinearity not in ("tanh", "identity"):
            raise ValueError(f"JordanCell: output_nonlinearity must be 'tanh' or 'identity', "
                             f"got {output_nonlinearity!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.output_size = output_size or hidden_size
        self.output_nonlinearity = output_nonlinearity
        self.weight_ih = uniform_parameter((hidden_size, input_size), hidden_size, device, dtype)
        self.weight_yh = uniform_parameter((hidden_size, self.output_size), hidden_size, device, dtype)
        self.weight_hy = uniform_parameter((self.output_size, hidden_size), hidden_size, device, dtype)
        self.bias_ih = uniform_parameter((hidden_size,), hidden_size, device, dtype) if bias else None
        self.bias_hy = uniform_parameter((self.output_size,), hidden_size, device, dtype) if bias else None

    def project(self, x):
        return project_input(x, self.weight_ih, self.bias_ih)

    def initial_state(self, batch, like):
        return creation.zeros(batch, self.output_size, dtype=like.dtype, device=like.device)

    def step(self, p, y):
        h = named((p + y @ self.weight_yh.T).tanh(), "h")
        y = h @ self.weight_hy.T
        if self.bias_hy is not None:
            y = y + self.bias_hy
        return y.tanh() if self.output_nonlinearity == "tanh" else y


class ClockworkRNNCell(RecurrentCell):
    """Clockwork RNN (Koutník, Greff, Gomez & Schmidhuber 2014). The hidden units
    form ``len(periods)`` equal modules; module k updates only at steps t with
    t mod T_k = 0 and otherwise keeps its value, and it reads the recurrent state
    only of modules at least as slow as itself:

        h_t^(k) = tanh(x_t W_I^(k)T + b^(k) + sum_{j: T_j >= T_k} h_{t-1}^(j) W_H^(k,j)T)   if t mod T_k = 0
        h_t^(k) = h_{t-1}^(k)                                                        otherwise

    The state is (h, t): the step counter t (B, 1) travels with h, so the clock
    stays right however the sequence is cut (truncated BPTT, checkpointed
    segments, one step at a time). The layer's output is h. The clock is graph ops
    too (``t % T_k == 0``), so the traced step replays it at every step.
    """

    state_names = ("h", "t")

    def __init__(self, input_size, hidden_size, periods=(1, 2, 4, 8), bias=True, *, device=None, dtype=None):
        periods = tuple(int(t) for t in periods)
        if not periods or hidden_size % len(periods) or any(t < 1 for t in periods):
            raise ValueError(f"ClockworkRNNCell: hidden_size {hidden_size} must split into {len(periods)} equal "
                             f"modules and periods must be positive ints, got periods={periods}")
        self.input_size, self.hidden_size, self.periods = input_size, hidden_size, periods
        self.weight_ih = uniform_parameter((hidden_size, input_size), hidden_size, device, dtype)
        self.weight_hh = uniform_parameter((hidden_size, hidden_size), hidden_size, device, dtype)
        self.bias_ih = uniform_parameter((hidden_size,), hidden_size, device, dtype) if bias else None
        self._unit_period = np.repeat(np.array(periods), hidden_size // len(periods))
        # unit k reads unit j when j's module is at least as slow as k's
        self._connectivity = self._unit_period[None, :] >= self._unit_period[:, None]

    def project(self, x):
        return project_input(x, self.weight_ih, self.bias_ih)

    def initial_state(self, batch, like):
        h = creation.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device)
        return h, creation.zeros(batch, 1, dtype=like.dtype, device=like.device)

    def step(self, p, state):
        h, t = state
        period = self._constant(self._unit_period, h)
        active = named(t % period == 0, "active")                           # (B, H): which units tick now
        mask = self._constant(self._connectivity, h)
        candidate = (p + h @ (self.weight_hh * mask).T).tanh()
        return where(active, candidate, h), t + 1

    @staticmethod
    def _constant(array, like):
        return Tensor(backend.to_device(array.astype(like.dtype), like.device))
