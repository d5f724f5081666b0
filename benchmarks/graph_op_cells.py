"""Cells written only as graph ops, as a user writes them: what ``rnn_step.py`` runs against the
built-in layers to show that a new cell's speed comes from its own step.

``PlainLSTMCell`` is the LSTM written with the README's recipe (``project`` + ``step``), with
no kernel and no fused code: its sequences run as the traced step. ``MinimalGatedCell`` is the
README's example cell (the minimal gated unit of Zhou et al. 2016).
"""
import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.cells import project_input, uniform_parameter


class PlainLSTMCell(nn.RecurrentCell):
    """c' = sigmoid(z_f) c + sigmoid(z_i) tanh(z_g),  h' = sigmoid(z_o) tanh(c'),  z = x W_ih^T + b + h W_hh^T."""

    state_names = ("h", "c")

    def __init__(self, input_size, hidden_size, dtype=None):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = uniform_parameter((4 * hidden_size, input_size), hidden_size, None, dtype)
        self.weight_hh = uniform_parameter((4 * hidden_size, hidden_size), hidden_size, None, dtype)
        self.bias_ih = uniform_parameter((4 * hidden_size,), hidden_size, None, dtype)


    def project(self, x):
        return project_input(x, self.weight_ih, self.bias_ih)

    def step(self, p, state):
        h, c = state
        i, f, g, o = tg.split(p + h @ self.weight_hh.T, self.hidden_size, axis=1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c


class MinimalGatedCell(nn.RecurrentCell):
    """f = sigmoid(x W_f^T + h U_f^T + b_f);  h' = f * h + (1 - f) * tanh(x W_h^T + (f * h) U_h^T + b_h)."""

    def __init__(self, input_size, hidden_size, dtype=None):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = uniform_parameter((2 * hidden_size, input_size), hidden_size, None, dtype)
        self.weight_hh = uniform_parameter((2 * hidden_size, hidden_size), hidden_size, None, dtype)
        self.bias_ih = uniform_parameter((2 * hidden_size,), hidden_size, None, dtype)

    def project(self, x):
        return project_input(x, self.weight_ih, self.bias_ih)

    def step(self, p, h):
        p_f, p_h = tg.split(p, self.hidden_size, axis=1)
        u_f, u_h = tg.split(self.weight_hh, self.hidden_size, axis=0)
        f = (p_f + h @ u_f.T).sigmoid()
        candidate = (p_h + (f * h) @ u_h.T).tanh()
        return f * h + (1 - f) * candidate


# name: (make the layer from (input_size, hidden_size, dtype), the built-in layer it is compared with)
LAYERS = {
    "LSTM, README recipe": (lambda i, h, dt: nn.Recurrent(lambda a, b: PlainLSTMCell(a, b, dt), i, h), "lstm"),
    "LSTM composed, traced": (lambda i, h, dt: nn.LSTM(i, h, fused=False, dtype=dt), "lstm"),
    "PeepholeLSTM": (lambda i, h, dt: nn.Recurrent(lambda a, b: nn.PeepholeLSTMCell(a, b, dtype=dt), i, h), "lstm"),
    "CoupledLSTM": (lambda i, h, dt: nn.Recurrent(lambda a, b: nn.CoupledLSTMCell(a, b, dtype=dt), i, h), "lstm"),
    "MinimalGated": (lambda i, h, dt: nn.Recurrent(lambda a, b: MinimalGatedCell(a, b, dt), i, h), "gru"),
    "GRU composed, traced": (lambda i, h, dt: nn.GRU(i, h, fused=False, dtype=dt), "gru"),
    "RNN composed, traced": (lambda i, h, dt: nn.RNN(i, h, fused=False, dtype=dt), "rnn"),
}
