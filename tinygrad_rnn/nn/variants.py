"""Variants of the recurrent cells, each written as graph ops only.

They run through :class:`tinygrad_rnn.nn.Recurrent` like the built-in cells (all T
steps as one node traced from ``step``, see :mod:`tinygrad_rnn.nn.trace_scan`), and
show how a new cell is written: parameters in ``__init__``, the input side in
``project``, one time step in ``step``, gate values named for the study tools.

- :class:`PeepholeLSTMCell`: the cell state looks into the gates (all three, or any subset).
- :class:`CoupledLSTMCell`: the input gate is one minus the forget gate.
- :class:`JordanCell`: the previous *output* is fed back (an output-fed network).
- :class:`ElmanJordanCell`: both the previous hidden state and the previous output are fed back.
- :class:`ClockworkRNNCell`: modules of hidden units that tick at different periods.

The two output-fed cells can also be driven by the *true* previous output instead of
their own (teacher forcing): see :mod:`tinygrad_rnn.nn.teacher_forcing`.
"""
import numpy as np

from .. import backend, creation
from ..tensor import Tensor
from ..xp import where
from .cells import GatedCell, GateLayout, RecurrentCell, check_size, project_input, uniform_parameter
from .lstm import GATES as LSTM_GATES
from .trace_scan import named

PEEPHOLE_GATES = ("i", "f", "o")


def _peephole_gates(peepholes):
    """The gates given peepholes, in the order i, f, o (the rows of ``weight_ch``)."""
    if isinstance(peepholes, str) or not hasattr(peepholes, "__iter__"):
        raise TypeError(f"PeepholeLSTMCell: peepholes must be a tuple of gate names from {PEEPHOLE_GATES}, "
                        f"got {peepholes!r}")
    chosen = list(peepholes)
    unknown = [g for g in chosen if g not in PEEPHOLE_GATES]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"PeepholeLSTMCell: peepholes must be distinct gate names from {PEEPHOLE_GATES}, "
                         f"got {tuple(chosen)!r}")
    return tuple(g for g in PEEPHOLE_GATES if g in chosen)


class PeepholeLSTMCell(GatedCell):
    """LSTM with diagonal peephole connections from the cell state to the gates (Gers &
    Schmidhuber 2000, "Recurrent nets that time and count"; Gers, Schraudolph & Schmidhuber
    2002, JMLR 3; the form of Graves 2013). Rows stacked i | f | g | o, as in LSTMCell:

        i  = sigmoid(x W_ii^T + h W_hi^T + w_ci * c  + b_i)
        f  = sigmoid(x W_if^T + h W_hf^T + w_cf * c  + b_f)
        g  = tanh(x W_ig^T + h W_hg^T + b_g)
        c' = f * c + i * g
        o  = sigmoid(x W_io^T + h W_ho^T + w_co * c' + b_o)
        h' = o * tanh(c')

    The input and forget gates look at the old cell state c, the output gate at the new c'.
    ``peepholes`` keeps only some of the three connections (Gers & Schmidhuber 2000 give
    each gate its own; a gate left out reads no cell state: its w_c term is absent).
    With ``peepholes=()`` the cell is LSTMCell's composed step.

    Args:
        input_size, hidden_size: features of x and of h and c.
        bias: with ``bias_ih`` and ``bias_hh`` (4H each; default True).
        peepholes: the gates that get a peephole, any subset of ("i", "f", "o") (default all).
        device, dtype: of the parameters.
    Inputs: ``x``, ``state`` = (h, c) (optional, zeros when None).  Outputs: ``(h', c')``.
    Shape: x (B, I) or (I,), h and c (B, H) or (H,).
    Parameters: those of LSTMCell (``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``,
        ``bias_hh`` (4H)) and ``weight_ch`` (K, H), one row of peephole weights per chosen
        gate, in the order i, f, o (absent when K = 0); all U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.PeepholeLSTMCell(3, 8, peepholes=("f", "o"))     # no peephole into the input gate
        h, c = cell(tg.randn(4, 3))                                  # (4, 8) each
        layer = nn.Recurrent(nn.PeepholeLSTMCell, 3, 8)              # all three peepholes
        output, (h_n, c_n) = layer(tg.randn(5, 4, 3))                # (5, 4, 8), (1, 4, 8)
    """

    gates = LSTM_GATES
    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, bias=True, peepholes=PEEPHOLE_GATES, *, device=None, dtype=None):
        self.peepholes = _peephole_gates(peepholes)
        super().__init__(input_size, hidden_size, bias, fused=False, device=device, dtype=dtype)
        if self.peepholes:
            self.weight_ch = uniform_parameter((len(self.peepholes), hidden_size), hidden_size, device, dtype)

    def _peephole(self, gate):
        """The row of ``weight_ch`` for ``gate``, or None when it has no peephole."""
        if gate not in self.peepholes:
            return None
        return self.weight_ch[self.peepholes.index(gate)]

    def step(self, p, state):
        h, c = state
        z_i, z_f, z_g, z_o = LSTM_GATES.split(p + h @ self.weight_hh.T)
        w_ci, w_cf, w_co = (self._peephole(gate) for gate in PEEPHOLE_GATES)
        i = named((z_i if w_ci is None else z_i + w_ci * c).sigmoid(), "i")
        f = named((z_f if w_cf is None else z_f + w_cf * c).sigmoid(), "f")
        g = named(z_g.tanh(), "g")
        c = f * c + i * g
        o = named((z_o if w_co is None else z_o + w_co * c).sigmoid(), "o")
        return o * c.tanh(), c

    def extra_repr(self):
        extra = "" if self.peepholes == PEEPHOLE_GATES else f", peepholes={self.peepholes}"
        return super().extra_repr() + extra


class CoupledLSTMCell(GatedCell):
    """LSTM whose input gate is tied to the forget gate, i = 1 - f ("CIFG", Greff et al.
    2017, LSTM: A Search Space Odyssey), rows stacked f | g | o:

        f  = sigmoid(x W_if^T + h W_hf^T + b_f)
        g  = tanh(x W_ig^T + h W_hg^T + b_g)
        o  = sigmoid(x W_io^T + h W_ho^T + b_o)
        c' = f * c + (1 - f) * g
        h' = o * tanh(c')

    The cell state is a running average: what is forgotten is exactly what is written,
    with a quarter fewer parameters than the LSTM.

    Args:
        input_size, hidden_size: features of x and of h and c.
        bias: with ``bias_ih`` and ``bias_hh`` (3H each; default True).
        device, dtype: of the parameters.
    Inputs: ``x``, ``state`` = (h, c) (optional, zeros when None).  Outputs: ``(h', c')``.
    Shape: x (B, I) or (I,), h and c (B, H) or (H,).
    Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh`` (3H),
        U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        layer = nn.Recurrent(nn.CoupledLSTMCell, 3, 8, num_layers=2)
        output, (h_n, c_n) = layer(tg.randn(5, 4, 3))      # (5, 4, 8), (2, 4, 8) each
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


class OutputFedCell(RecurrentCell):
    """Base of the cells that feed back their previous output y_{t-1} (B, output_size):
    the output layer y = act(h W_hy^T + b_hy), the input side x W_ih^T + b_ih, and where
    in the state the fed-back output sits, so that it can be replaced by a given one
    (teacher forcing, :mod:`tinygrad_rnn.nn.teacher_forcing`)."""

    output_size = None

    def _init_output_fed(self, input_size, hidden_size, output_size, output_nonlinearity):
        name = type(self).__name__
        if output_nonlinearity not in ("tanh", "identity"):
            raise ValueError(f"{name}: output_nonlinearity must be 'tanh' or 'identity', got {output_nonlinearity!r}")
        self.input_size = check_size(name, "input_size", input_size)
        self.hidden_size = check_size(name, "hidden_size", hidden_size)
        self.output_size = self.hidden_size if output_size is None else check_size(name, "output_size", output_size)
        self.output_nonlinearity = output_nonlinearity

    def project(self, x):
        """x W_ih^T + b_ih, for all steps at once."""
        return project_input(x, self.weight_ih, self.bias_ih)

    def emit(self, h):
        """The output y = act(h W_hy^T + b_hy) of the hidden layer h."""
        y = h @ self.weight_hy.T
        if self.bias_hy is not None:
            y = y + self.bias_hy
        return named(y.tanh() if self.output_nonlinearity == "tanh" else y, "y")

    def fed_back(self, state):
        """The previous output y_{t-1} held in ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must define fed_back(state)")

    def with_fed_back(self, state, y):
        """``state`` with its previous output replaced by ``y``."""
        raise NotImplementedError(f"{type(self).__name__} must define with_fed_back(state, y)")

    def extra_repr(self):
        extra = "" if self.output_nonlinearity == "tanh" else f", output_nonlinearity={self.output_nonlinearity!r}"
        return (f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}" + extra
                + ("" if self.bias_ih is not None else ", bias=False"))


class JordanCell(OutputFedCell):
    """Jordan network (Jordan 1986, "Serial order: a parallel distributed processing
    approach"): the previous *output*, not the hidden layer, is fed back.

        h_t = tanh(x_t W_ih^T + b_ih + y_{t-1} W_yh^T)
        y_t = act(h_t W_hy^T + b_hy)          act = tanh (default) or identity

    The state carried between steps is y (B, output_size), which is also the output: the
    network remembers only what it has said. Trained on targets for y, its recurrence
    can be cut by feeding the true y_{t-1} instead (teacher forcing, Williams & Zipser
    1989): see :class:`tinygrad_rnn.nn.Jordan`.

    Args:
        input_size, hidden_size: features of x and of the hidden layer h.
        output_size: features of y (default hidden_size).
        bias: with ``bias_ih`` (H) and ``bias_hy`` (O) (default True).
        output_nonlinearity: "tanh" (default) or "identity" (a linear output, for regression).
        device, dtype: of the parameters.
    Inputs: ``x``, ``y`` (the previous output; optional, zeros when None).  Outputs: ``y'``.
    Shape: x (B, I) or (I,), y (B, O) or (O,).
    Parameters: ``weight_ih`` (H, I), ``weight_yh`` (H, O), ``weight_hy`` (O, H), ``bias_ih`` (H),
        ``bias_hy`` (O), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.JordanCell(3, 8, output_size=2, output_nonlinearity="identity")
        y = None
        for x_t in tg.randn(5, 4, 3):
            y = cell(x_t, y)                    # (4, 2)
        output, y_n = nn.Recurrent(lambda i, h: nn.JordanCell(i, h, 2), 3, 8)(tg.randn(5, 4, 3))  # (5, 4, 2)
    """

    state_names = ("y",)

    def __init__(self, input_size, hidden_size, output_size=None, bias=True, output_nonlinearity="tanh", *,
                 device=None, dtype=None):
        self._init_output_fed(input_size, hidden_size, output_size, output_nonlinearity)
        hidden, out = self.hidden_size, self.output_size
        self.weight_ih = uniform_parameter((hidden, self.input_size), hidden, device, dtype)
        self.weight_yh = uniform_parameter((hidden, out), hidden, device, dtype)
        self.weight_hy = uniform_parameter((out, hidden), hidden, device, dtype)
        self.bias_ih = uniform_parameter((hidden,), hidden, device, dtype) if bias else None
        self.bias_hy = uniform_parameter((out,), hidden, device, dtype) if bias else None

    def initial_state(self, batch, like):
        return creation.zeros(batch, self.output_size, dtype=like.dtype, device=like.device)

    def step(self, p, y):
        h = named((p + y @ self.weight_yh.T).tanh(), "h")
        return self.emit(h)

    def fed_back(self, state):
        return state

    def with_fed_back(self, state, y):
        return y


class ElmanJordanCell(OutputFedCell):
    """A simple recurrent network with back projections from its output: the hidden layer
    reads both its own previous state (Elman 1990, "Finding structure in time") and the
    previous output (Jordan 1986), each through its own weights:

        h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + y_{t-1} W_yh^T)
        y_t = act(h_t W_hy^T + b_hy)          act = tanh (default) or identity

    With W_yh = 0 it is an Elman network read out by a linear layer; with W_hh = 0, a
    Jordan network (:class:`JordanCell`). The state is (h, y); the layer's output is y. The
    fed-back y_{t-1} can be replaced by the true one (teacher forcing, see
    :class:`tinygrad_rnn.nn.Jordan` with ``hidden_feedback=True``).

    Args:
        input_size, hidden_size: features of x and of h.
        output_size: features of y (default hidden_size).
        bias: with ``bias_ih`` (H) and ``bias_hy`` (O) (default True).
        output_nonlinearity: "tanh" (default) or "identity".
        device, dtype: of the parameters.
    Inputs: ``x``, ``state`` = (h, y) (optional, zeros when None).  Outputs: ``(h', y')``.
    Shape: x (B, I) or (I,), h (B, H) or (H,), y (B, O) or (O,).
    Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``weight_yh`` (H, O), ``weight_hy`` (O, H),
        ``bias_ih`` (H), ``bias_hy`` (O), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.ElmanJordanCell(3, 8, output_size=1, output_nonlinearity="identity")
        h, y = cell(tg.randn(4, 3))                                     # (4, 8), (4, 1)
        layer = nn.Recurrent(lambda i, h: nn.ElmanJordanCell(i, h, 2), 3, 8)
        output, (h_n, y_n) = layer(tg.randn(5, 4, 3))                   # (5, 4, 2); (1, 4, 8), (1, 4, 2)
    """

    state_names = ("h", "y")

    def __init__(self, input_size, hidden_size, output_size=None, bias=True, output_nonlinearity="tanh", *,
                 device=None, dtype=None):
        self._init_output_fed(input_size, hidden_size, output_size, output_nonlinearity)
        hidden, out = self.hidden_size, self.output_size
        self.weight_ih = uniform_parameter((hidden, self.input_size), hidden, device, dtype)
        self.weight_hh = uniform_parameter((hidden, hidden), hidden, device, dtype)
        self.weight_yh = uniform_parameter((hidden, out), hidden, device, dtype)
        self.weight_hy = uniform_parameter((out, hidden), hidden, device, dtype)
        self.bias_ih = uniform_parameter((hidden,), hidden, device, dtype) if bias else None
        self.bias_hy = uniform_parameter((out,), hidden, device, dtype) if bias else None

    def initial_state(self, batch, like):
        return (creation.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device),
                creation.zeros(batch, self.output_size, dtype=like.dtype, device=like.device))

    def step(self, p, state):
        h, y = state
        h = named((p + h @ self.weight_hh.T + y @ self.weight_yh.T).tanh(), "h")
        return h, self.emit(h)

    def output(self, state):
        return state[1]

    def fed_back(self, state):
        return state[1]

    def with_fed_back(self, state, y):
        return state[0], y


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

    Args:
        input_size, hidden_size: features of x and of h (a multiple of ``len(periods)``).
        periods: the period T_k of each module, positive ints (default (1, 2, 4, 8), the paper's
            exponential clock).
        bias: with ``bias_ih`` (H) (default True).
        device, dtype: of the parameters.
    Inputs: ``x``, ``state`` = (h, t) (optional: zeros, t = 0).  Outputs: ``(h', t + 1)``.
    Shape: x (B, I) or (I,), h (B, H) or (H,), t (B, 1) or (1,).
    Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H) (its entries from faster to slower
        modules are masked out in the step and get zero gradient), ``bias_ih`` (H),
        U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        layer = nn.Recurrent(lambda i, h: nn.ClockworkRNNCell(i, h, periods=(1, 4, 16)), 2, 12)
        output, (h_n, t_n) = layer(tg.randn(32, 4, 2))      # (32, 4, 12); (1, 4, 12), (1, 4, 1)
    """

    state_names = ("h", "t")

    def __init__(self, input_size, hidden_size, periods=(1, 2, 4, 8), bias=True, *, device=None, dtype=None):
        name = type(self).__name__
        input_size = check_size(name, "input_size", input_size)
        hidden_size = check_size(name, "hidden_size", hidden_size)
        periods = tuple(int(t) for t in periods)
        if not periods or hidden_size % len(periods) or any(t < 1 for t in periods):
            raise ValueError(f"{name}: hidden_size {hidden_size} must split into {len(periods)} equal "
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

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, periods={self.periods}" + (
            "" if self.bias_ih is not None else ", bias=False")

    @staticmethod
    def _constant(array, like):
        return Tensor(backend.to_device(array.astype(like.dtype), like.device))
