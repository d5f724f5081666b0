"""Gradient telemetry through time: what a backward over a :class:`~tinygrad_rnn.study.tracing.Trace` left.

For every layer and step t, :func:`record` reads

- ||dL/dh_t|| (and ||dL/dc_t|| for an LSTM's (h, c) state): the Frobenius norm over
  the batch, and the norm of each example's row. Its decay as t goes back is the
  vanishing gradient of Hochreiter (1991) and Bengio, Simard & Frasconi (1994);
  its growth, the exploding one (Pascanu, Mikolov & Bengio 2013);
- each step's contribution dL/dtheta_t to every parameter's gradient (they sum to
  dL/dtheta), as arrays and as norms;
- gate saturation: the fraction of a gate's units with sigmoid output < 0.1 or
  > 0.9 (tanh: |value| > 0.9), where the gate's derivative is small and little
  gradient passes. The gates are the values the cell's own step names
  (``nn.named``, or ``GateLayout.activate``), read by recording the step on each
  step's projected input and previous state: no gate equation is written here, so
  any cell that names its gates, built-in, variant or user-written, reports them.

:func:`plot` draws the norms (log scale) per layer, and the saturation below.
"""
import numpy as np

from ..files import save_figure
from ..function import DataDependentError, no_grad, recording
from ..nn.trace_scan import Tape
from ..ops import Sigmoid, Tanh

SIGMOID_BOUNDS = (0.1, 0.9)
TANH_BOUND = 0.9


class Telemetry:
    """What :func:`record` read from a traced backward; every array is NumPy.

    Attributes:
        steps, batch, num_layers: T, B and the number of layers.
        part_names: per layer, the names of the state's parts: the cell's ``state_names``
            (``("h", "c")`` for the LSTM cells), else ``("h", "state1", ...)``.
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
        trace: a :class:`~tinygrad_rnn.study.tracing.Trace`.
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
    """Names of a state's parts: the cell's ``state_names`` (("h", "c") for the LSTMs), else
    h, state1, state2, ..."""
    names = getattr(cell, "state_names", None)
    if names is not None and len(names) == count:
        return tuple(names)
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
def gate_values(cell, p, state):
    """{name: (values (B, H) array, "sigmoid" | "tanh")} of the gates that ``cell.step`` names
    (see :func:`tinygrad_rnn.nn.named`; ``GateLayout.activate`` names every gate), computed
    from its projected input ``p`` and previous ``state`` by recording one call of the step.
    Only values made by a sigmoid or a tanh are gates here. None when the step names none."""
    tape = Tape()
    try:
        with no_grad(), recording(tape):
            cell.step(p, state)
    except DataDependentError:
        return None
    made_by = {id(t): cls for cls, _, _, result, _ in tape.ops for t in result}
    kinds = {Sigmoid: "sigmoid", Tanh: "tanh"}
    gates = {label: (t.data, kinds[made_by[id(t)]]) for label, t in tape.labels if made_by.get(id(t)) in kinds}
    return gates or None


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
    fractions = {}
    for t in range(trace.steps):
        gates = gate_values(cell, trace.projected[k][t], trace.previous_state(k, t))
        for name, (values, kind) in (gates or {}).items():
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
        raise ImportError("plot needs matplotlib: pip install matplotlib "
                          "(or the project's extra: pip install -e \".[demo]\")") from error
    figure = Figure(figsize=(8, 3 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for axes in figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure
