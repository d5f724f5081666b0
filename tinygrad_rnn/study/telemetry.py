"""Gradient telemetry through time: what a backward over a :class:`~tinygrad_rnn.study.trace.Trace` left.

For every layer and step t, :func:`record` reads

- ||dL/dh_t|| (and ||dL/dc_t|| for an LSTM's (h, c) state): the Frobenius norm over
  the batch, and the norm of each example's row. Its decay as t goes back is the
  vanishing gradient of Hochreiter (1991) and Bengio, Simard & Frasconi (1994);
  its growth, the exploding one (Pascanu, Mikolov & Bengio 2013);
- each step's contribution dL/dtheta_t to every parameter's gradient (they sum to
  dL/dtheta), as arrays and as norms;
- gate saturation: the fraction of a gate's units with sigmoid output < 0.1 or
  > 0.9 (tanh: |value| > 0.9), where the gate's derivative is small and little
  gradient passes. The gates are recomputed from the step's projected input and
  previous state with the cell's parameters, for the built-in RNN (tanh), LSTM
  and GRU cells and the peephole and coupled LSTM variants; other cells report none.

:func:`plot` draws the norms (log scale) per layer, and the saturation below.
"""
import numpy as np

from ..files import save_figure
from .. import backend
from ..function import no_grad
from ..nn.cells import GRUCell, LSTMCell, RNNCell
from ..nn.fused import gru_gates, lstm_gates, sigmoid
from ..nn.variants import CoupledLSTMCell, PeepholeLSTMCell

SIGMOID_BOUNDS = (0.1, 0.9)
TANH_BOUND = 0.9


class Telemetry:
    """What :func:`record` read from a traced backward; every array is NumPy.

    Attributes:
        steps, batch, num_layers: T, B and the number of layers.
        part_names: per layer, the names of the state's parts: ``("h",)``,
            ``("h", "c")`` for the LSTM cells, ``("h", "state1", ...)`` otherwise.
        grad_norms: [layer] {part: (T,)} ||dL/dpart_t||, Frobenius over the batch.
        grad_norms_per_example: [layer] {part: (T, B)} the norm of each example's row.
        contributions: {parameter name: (T, *shape)} step t's dL/dtheta_t.
        contribution_norms: {parameter name: (T,)} their Frobenius norms.
        saturation: [layer] {gate: (T,)} saturated fraction of the gate's units at
            each step (an empty dict for cells without known gates).
    """

    def __init__(self, steps, batch, num_layers):
        self.steps, self.batch, self.num_layers = steps, batch, num_layers
        self.part_names, self.grad_norms, self.grad_norms_per_example, self.saturation = [], [], [], []
        self.contributions, self.contribution_norms = {}, {}


def record(trace, loss=None):
    """Read gradients and saturation from ``trace``.

    Args:
        trace: a :class:`~tinygrad_rnn.study.trace.Trace`.
        loss: a scalar Tensor computed from the trace's outputs or states; if given,
            ``loss.backward()`` is run first (which, as always, also adds into the
            parameters' ``.grad``). If None, the caller has already run a backward.
    Returns: a :class:`Telemetry`.
    """
    if loss is not None:
        loss.backward()
    if not _has_gradient(trace):
        raise ValueError("record: the trace holds no gradient; pass the loss, or call loss.backward() on a "
                         "loss computed from the trace's outputs first")
    result = Telemetry(trace.steps, trace.batch, trace.num_layers)
    for k in range(trace.num_layers):
        _record_states(result, trace, k)
        result.saturation.append(_saturation(trace, k))
    for name, aliases in trace.aliases.items():
        shape = trace.params[name].shape
        grads = np.stack([np.zeros(shape) if a.grad is None else a.grad.numpy() for a in aliases])
        result.contributions[name] = grads
        result.contribution_norms[name] = np.sqrt((grads.reshape(len(aliases), -1) ** 2).sum(axis=1))
    return result


def _has_gradient(trace):
    return any(a.grad is not None for aliases in trace.aliases.values() for a in aliases) or any(
        part.grad is not None for layer in trace.states for s in layer for part in _parts(s))


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def part_names(cell, count):
    """Names of a state's parts: h (and c for the LSTM cells), then state1, state2, ..."""
    if count == 2 and isinstance(cell, (LSTMCell, PeepholeLSTMCell, CoupledLSTMCell)):
        return ("h", "c")
    return ("h",) + tuple(f"state{i}" for i in range(1, count))


def _record_states(result, trace, k):
    names = part_names(trace.cells[k], len(_parts(trace.states[k][0])))
    norms = {n: np.zeros(trace.steps) for n in names}
    per_example = {n: np.zeros((trace.steps, trace.batch)) for n in names}
    for t, state in enumerate(trace.states[k]):
        for name, part in zip(names, _parts(state)):
            if part.grad is None:
                continue
            g = part.grad.numpy().reshape(trace.batch, -1)
            rows = np.sqrt((g * g).sum(axis=1))
            per_example[name][t] = rows
            norms[name][t] = np.sqrt((rows * rows).sum())
    result.part_names.append(names)
    result.grad_norms.append(norms)
    result.grad_norms_per_example.append(per_example)


# ------------------------------------------------------------------ gates
def _rnn_gates(cell, xp, p, h):
    if cell.nonlinearity != "tanh":
        return {}
    return {"h": (xp.tanh(p + h @ cell.weight_hh.data.T), "tanh")}


def _lstm_gates(cell, xp, p, state):
    h, _ = state
    i, f, g, o = lstm_gates(xp, p, h, cell.weight_hh.data)
    return {"i": (i, "sigmoid"), "f": (f, "sigmoid"), "g": (g, "tanh"), "o": (o, "sigmoid")}


def _gru_gates(cell, xp, p, h):
    rows = 3 * cell.hidden_size
    b = xp.zeros(rows, dtype=h.dtype) if cell.bias_hh is None else cell.bias_hh.data
    r, z, n, _ = gru_gates(xp, p, h, cell.weight_hh.data, b)
    return {"r": (r, "sigmoid"), "z": (z, "sigmoid"), "n": (n, "tanh")}


def _peephole_gates(cell, xp, p, state):
    h, c = state
    n = cell.hidden_size
    z = p + h @ cell.weight_hh.data.T
    w_ci, w_cf, w_co = cell.weight_ch.data
    i = sigmoid(xp, z[:, :n] + w_ci * c)
    f = sigmoid(xp, z[:, n:2 * n] + w_cf * c)
    g = xp.tanh(z[:, 2 * n:3 * n])
    o = sigmoid(xp, z[:, 3 * n:] + w_co * (f * c + i * g))
    return {"i": (i, "sigmoid"), "f": (f, "sigmoid"), "g": (g, "tanh"), "o": (o, "sigmoid")}


def _coupled_gates(cell, xp, p, state):
    h, _ = state
    n = cell.hidden_size
    z = p + h @ cell.weight_hh.data.T
    return {"f": (sigmoid(xp, z[:, :n]), "sigmoid"), "g": (xp.tanh(z[:, n:2 * n]), "tanh"),
            "o": (sigmoid(xp, z[:, 2 * n:]), "sigmoid")}


_GATES = {RNNCell: _rnn_gates, LSTMCell: _lstm_gates, GRUCell: _gru_gates,
          PeepholeLSTMCell: _peephole_gates, CoupledLSTMCell: _coupled_gates}


def _gate_function(cell):
    """The gate recomputation for the cell's class, or None when the class's ``step``
    is not one written out here (a subclass that overrides ``step`` gets None)."""
    for cls in type(cell).__mro__:
        if cls in _GATES:
            return _GATES[cls] if type(cell).step is cls.step else None
    return None


def gate_values(cell, p, state):
    """{gate: (activated values (B, H), "sigmoid" | "tanh")} of one step of ``cell`` from
    its projected input ``p`` and previous ``state`` (Tensors), or None for a cell
    without known gates."""
    fn = _gate_function(cell)
    if fn is None:
        return None
    arrays = tuple(s.data for s in state) if isinstance(state, tuple) else state.data
    with no_grad():
        return fn(cell, backend.get_array_module(p.data), p.data, arrays)


def saturated_fraction(values, kind):
    """The fraction of entries in the saturated range: sigmoid < 0.1 or > 0.9, tanh |v| > 0.9."""
    if kind == "sigmoid":
        low, high = SIGMOID_BOUNDS
        mask = (values < low) | (values > high)
    elif kind == "tanh":
        mask = abs(values) > TANH_BOUND
    else:
        raise ValueError(f"saturated_fraction: kind must be 'sigmoid' or 'tanh', got {kind!r}")
    return float(mask.mean())


def _saturation(trace, k):
    cell = trace.cells[k]
    if _gate_function(cell) is None:
        return {}
    fractions = {}
    for t in range(trace.steps):
        gates = gate_values(cell, trace.projected[k][t], trace.previous_state(k, t))
        for name, (values, kind) in gates.items():
            fractions.setdefault(name, np.zeros(trace.steps))[t] = saturated_fraction(values, kind)
    return fractions


# ------------------------------------------------------------------ plot
def plot(result, path):
    """Save a PNG at ``path``: ||dL/dstate_t|| per layer and part (log scale) over t, and
    below it each gate's saturated fraction. Needs matplotlib. Returns ``path``."""
    figure = new_figure(2)
    top, bottom = figure.axes
    t = np.arange(result.steps)
    for k in range(result.num_layers):
        for part, norms in result.grad_norms[k].items():
            top.plot(t, np.where(norms > 0, norms, np.nan), marker=".", label=f"layer {k}: ||dL/d{part}_t||")
        for gate, fraction in result.saturation[k].items():
            bottom.plot(t, fraction, marker=".", label=f"layer {k}: {gate}")
    top.set_yscale("log")
    top.set_ylabel("gradient norm")
    top.set_title("gradient through time")
    top.legend(fontsize="small")
    bottom.set_ylabel("saturated fraction")
    bottom.set_xlabel("time step t")
    bottom.set_ylim(-0.02, 1.02)
    if any(result.saturation):
        bottom.legend(fontsize="small")
    else:
        bottom.text(0.5, 0.5, "no known gates for this cell", ha="center", va="center", transform=bottom.transAxes)
    save_figure(figure, path, dpi=100)
    return path


def new_figure(rows):
    """A matplotlib Figure with ``rows`` axes sharing an integer x axis, on the Agg
    canvas (no pyplot, no change of the global backend)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError("plot needs matplotlib: pip install matplotlib") from error
    figure = Figure(figsize=(8, 3 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for axes in figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure
