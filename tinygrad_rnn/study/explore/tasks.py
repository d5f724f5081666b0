"""Cells and a task for the command line: build a model, make data, train a little.

The task is the adding problem of Hochreiter & Schmidhuber (1997): each step holds a
number from U(0, 1) and a marker, two steps are marked (one in each half), and the
answer, read at the last step, is the sum of the two marked numbers. Always answering
1 scores an MSE of 1/6. The answer needs the first number carried across about T/2
steps, which is what the page shows a cell doing or failing to do.
"""
import numpy as np

from ... import nn
from ...creation import tensor
from ...optim import Adam

BASELINE_MSE = 1 / 6


def _rnn(i, h, kw):
    return nn.RNNCell(i, h, **kw)


def _irnn(i, h, kw):
    return nn.init.irnn_(nn.RNNCell(i, h, nonlinearity="relu", **kw))


def _orthogonal(i, h, kw):
    cell = nn.RNNCell(i, h, **kw)
    nn.init.orthogonal_(cell.weight_hh)
    return cell


def _lstm(i, h, kw):
    return nn.init.lstm_forget_bias_(nn.LSTMCell(i, h, **kw), 1.0)


def _gru(i, h, kw):
    return nn.GRUCell(i, h, **kw)


def _peephole(i, h, kw):
    return nn.init.lstm_forget_bias_(nn.PeepholeLSTMCell(i, h, **kw), 1.0)


def _coupled(i, h, kw):
    return nn.CoupledLSTMCell(i, h, **kw)


def _jordan(i, h, kw):
    return nn.JordanCell(i, h, **kw)


def _clockwork(i, h, kw):
    return nn.ClockworkRNNCell(i, h, **kw)


# name -> (builder, what it is)
CELLS = {
    "rnn": (_rnn, "tanh RNN, default init U(-1/sqrt(H), 1/sqrt(H))"),
    "irnn": (_irnn, "ReLU RNN with W_hh = I and zero biases (Le, Jaitly & Hinton 2015)"),
    "orthogonal": (_orthogonal, "tanh RNN with an orthogonal W_hh (Saxe et al. 2014)"),
    "lstm": (_lstm, "LSTM, forget-gate bias 1 (Gers et al. 2000)"),
    "gru": (_gru, "GRU (Cho et al. 2014)"),
    "peephole": (_peephole, "LSTM with peepholes (Gers & Schmidhuber 2000)"),
    "coupled": (_coupled, "LSTM with input gate 1 - f (Greff et al. 2017)"),
    "jordan": (_jordan, "Jordan network: the output is fed back (Jordan 1986)"),
    "clockwork": (_clockwork, "Clockwork RNN, periods 1, 2, 4, 8 (Koutnik et al. 2014)"),
}


def make_cell(name, input_size, hidden_size, device="cpu", dtype=None):
    """A new cell of kind ``name`` (a key of :data:`CELLS`)."""
    if name not in CELLS:
        raise ValueError(f"make_cell: unknown cell {name!r}, expected one of {', '.join(CELLS)}")
    if name == "clockwork" and hidden_size % 4:
        raise ValueError(f"make_cell: the clockwork cell splits its units into 4 modules, so hidden_size must be a "
                         f"multiple of 4, got {hidden_size}")
    return CELLS[name][0](input_size, hidden_size, {"device": device, "dtype": dtype})


def adding_problem(rng, steps, batch):
    """Inputs (T, B, 2) and answers (B, 1) of the adding problem, as NumPy float64 arrays."""
    if steps < 2:
        raise ValueError(f"adding_problem: steps must be at least 2 (one marked step in each half), got {steps}")
    values = rng.uniform(0, 1, (steps, batch))
    markers = np.zeros((steps, batch))
    rows = np.arange(batch)
    first, second = rng.integers(0, steps // 2, batch), rng.integers(steps // 2, steps, batch)
    markers[first, rows] = markers[second, rows] = 1
    x = np.stack([values, markers], axis=-1)
    return x, (values[first, rows] + values[second, rows])[:, None]


def last_step_targets(answers, steps, device="cpu", dtype=None):
    """Time-major targets (T, B, 2) that put a last-step answer into a per-step loss: column 0
    holds the answer at every step, column 1 the step's weight (1 at the last step, else 0)."""
    answers = np.asarray(answers, dtype=np.float64).reshape(-1)
    targets = np.zeros((steps, answers.size, 2))
    targets[:, :, 0] = answers
    targets[-1, :, 1] = 1.0
    return tensor(targets, dtype=dtype, device=device)


class LastStepMSE(nn.Module):
    """loss(outputs, targets) = sum_t w_t * mean_b (readout(h_t) - y)^2 with targets from
    :func:`last_step_targets`: the MSE of the last step's answer, written as a sum over steps
    (the form ``explore`` and the truncation meter need), with its own linear readout."""

    def __init__(self, readout):
        self.readout = readout

    def forward(self, outputs, targets):
        answer, weight = targets[..., 0:1], targets[..., 1:2]
        error = self.readout(outputs) - answer
        return (weight * error * error).sum() / outputs.shape[1]


def train(cell, loss, steps, batch, iterations, rng, lr=1e-2, device="cpu", dtype=None, progress=None):
    """Adam on the adding problem for ``iterations`` batches (the cell's and the loss's
    parameters, gradients clipped to norm 1). Returns the training MSE of each iteration."""
    params = list(cell.parameters()) + list(loss.parameters())
    opt = Adam(params, lr=lr)
    curve = []
    loop = range(iterations) if progress is None else progress(range(iterations))
    for _ in loop:
        x, y = adding_problem(rng, steps, batch)
        outputs, _ = nn.unroll(cell, tensor(x, dtype=dtype, device=device))
        value = loss(outputs, last_step_targets(y, steps, device, dtype))
        opt.zero_grad()
        value.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        curve.append(value.item())
    return curve
