"""Backpropagation through time in the browser: one self-contained HTML page per run.

``explore(model, x, loss_fn)`` runs the study tools on a model and returns a
:class:`Report`; ``report.save("bptt.html")`` writes one HTML file that holds the
numbers (as JSON) and the code that draws them (inline SVG and canvas, no
library, no font, no link): it opens from disk in any current browser, with no
server and no network. Panels, each with time running left to right:

    graph         the unrolled graph: one box per layer and step, opening into its ops on
                  click; each parameter drawn once, its edge to step t coloured by ||dL/dtheta_t||;
                  truncation and checkpoint boundaries marked
    gradients     ||dL/dh_t|| (and ||dL/dc_t||) on a log scale; the backward pass animated
    connectivity  ||dy_t/dx_s|| for every output step t and input step s (Madsen 2019,
                  "Visualizing memorization in RNNs", Distill)
    jacobians     log ||J_t ... J_{t-w+1}|| against w and the bound w log eta (Pascanu, Mikolov
                  & Bengio 2013); the singular values of J_t at a chosen step
    gates         each named gate's values over time (heatmap) and its saturated fraction
    truncation    truncated BPTT(k) against full BPTT: cosine and relative error
    rtrl          BPTT against RTRL (Williams & Zipser 1989), parameter by parameter
    attention     (Seq2Seq) where the decoder looks while writing each token
    beam          (Seq2Seq) the beam search as a tree of hypotheses

Several runs go on one page with :func:`combine` (the page then overlays them where
a panel compares, and a selector picks the run the other panels show). From a shell::

    python -m tinygrad_rnn.study.explore --cell lstm --steps 50 --out bptt.html
"""
import json
import numbers

from ...files import write_bytes
from ...nn.cells import RecurrentCell
from ...nn.recurrent import Recurrent
from ...nn.seq2seq import Seq2Seq
from ...tensor import Tensor
from .collect import recurrent_run
from .page import render
from .seq2seq import seq2seq_run

__all__ = ["Report", "combine", "explore"]


class Report:
    """The numbers of one or more runs, ready to be written as a page.

    Attributes:
        title: the page's title.
        runs: a list of dicts, one per run, each with a ``name`` and the data of its panels
            (``gradients``, ``graph``, ``connectivity``, ``jacobians``, ``gates``, ``truncation``,
            ``rtrl``, or for a Seq2Seq run ``examples`` with attention maps and beam trees).
            A panel that was not computed holds {"left_out": reason}.
    """

    def __init__(self, runs, title="Backpropagation through time"):
        if not isinstance(title, str):
            raise TypeError(f"Report: title must be a str, got {type(title).__name__}")
        self.runs, self.title = list(runs), title
        names = [r["name"] for r in self.runs]
        if len(set(names)) != len(names):
            raise ValueError(f"Report: run names must differ, got {names}")

    def to_json(self):
        """The page's data as JSON text."""
        return json.dumps({"title": self.title, "runs": self.runs}, separators=(",", ":"), allow_nan=False)

    def html(self):
        """The whole page, as a str."""
        return render(self.title, self.to_json())

    def save(self, path):
        """Write the page to ``path`` (atomically); returns the path."""
        if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
            raise TypeError(f"Report.save: path must be a str or a path, got {type(path).__name__}")
        return write_bytes(str(path), self.html().encode("utf-8"))

    def __repr__(self):
        return f"Report({self.title!r}, runs={[r['name'] for r in self.runs]})"


def explore(model, x, loss_fn=None, targets=None, *, name=None, title=None, state=None, lengths=None, rows=4,
            ks=None, windows=None, truncate=None, checkpoint=None, graph=True, rtrl=True, rtrl_rows=2,
            beam_size=4, max_len=30, length_penalty=1.0, examples=3, src_labels=None, tgt_labels=None):
    """Run the study tools on ``model`` and return a :class:`Report` (``.save("bptt.html")``).

    Args:
        model: an ``nn.RecurrentCell`` (built-in, variant or your own), an ``nn.Recurrent``
            layer (``nn.RNN``/``LSTM``/``GRU``, any depth and direction), or an ``nn.Seq2Seq``.
        x: the inputs, a Tensor (T, B, input_size) (or (B, T, input_size) for a batch_first
            layer); for a Seq2Seq, the source ids (B, S).
        loss_fn: ``loss_fn(outputs, targets) -> scalar Tensor`` on the TIME-MAJOR outputs
            (steps, B, out), a SUM over time steps of per-step terms (as
            :func:`tinygrad_rnn.study.truncation.measure` needs; a loss on the last step only
            is a sum whose other terms are zero: put a 0/1 weight per step in the targets).
            It may hold parameters of its own (a readout). Not used for a Seq2Seq.
        targets: Tensor (T, ...), time-major, handed to loss_fn (sliced by time), or None.
        name: the run's name on the page (default: the model's class).
        title: the page's title.
        state: the initial state, as the model takes it.
        lengths: for a Seq2Seq, the source lengths (B ints).
        rows: examples whose Jacobians, gate means and connectivity are measured (the first ones).
        ks: truncation lengths for the truncation panel (default 1..T).
        windows: window lengths for the Jacobian products (default about 30 from 1 to T).
        truncate, checkpoint: mark a boundary every so many steps on the graph and gradient panels
            (where truncated BPTT would detach the state, or a checkpoint segment would begin).
        graph, rtrl: False leaves that panel out (RTRL costs O(P^2) per step).
        rtrl_rows: examples the BPTT/RTRL comparison runs on.
        beam_size, max_len, length_penalty, examples, src_labels, tgt_labels: for a Seq2Seq:
            the beam search, how many source rows to show, and how to label ids (a function
            id -> str, or a sequence indexed by id; default the id itself).
    Returns: a :class:`Report` with one run.

    Computing the panels runs a forward and backward per step window, so keep T to a few
    hundred and B small. The model's parameters keep their ``.grad``; a loss_fn's own
    parameters get their gradient added, as a ``backward`` would.

    Example::

        cell = tg.nn.LSTMCell(2, 16)
        readout = tg.nn.Linear(16, 1)
        x, y = tg.randn(40, 4, 2), tg.randn(40, 4, 1)
        report = explore(cell, x, lambda out, y: ((readout(out) - y) ** 2).sum(), y)
        report.save("bptt.html")
    """
    title = title or "Backpropagation through time"
    _check_counts(rows=rows, rtrl_rows=rtrl_rows, beam_size=beam_size, max_len=max_len, examples=examples)
    _check_optional_counts(truncate=truncate, checkpoint=checkpoint)
    if isinstance(model, Seq2Seq):
        if loss_fn is not None or targets is not None:
            raise TypeError("explore: a Seq2Seq page shows its attention and beam search and takes no loss_fn or "
                            "targets; give the source ids, lengths= and the decoding options")
        options = {"beam_size": beam_size, "max_len": max_len, "length_penalty": length_penalty,
                   "examples": examples, "src_labels": _labeller(src_labels, "src_labels"),
                   "tgt_labels": _labeller(tgt_labels, "tgt_labels")}
        run = seq2seq_run(model, x, lengths, options)
    else:
        if not isinstance(model, (RecurrentCell, Recurrent)):
            raise TypeError(f"explore: model must be an nn.RecurrentCell, an nn.Recurrent layer or an nn.Seq2Seq, "
                            f"got {type(model).__name__}")
        if lengths is not None:
            raise TypeError("explore: lengths= is for a Seq2Seq's source; a cell or layer here runs full rows")
        if not callable(loss_fn):
            raise TypeError(f"explore: loss_fn must be a function (outputs, targets) -> scalar Tensor, "
                            f"got {type(loss_fn).__name__}")
        if targets is not None and not isinstance(targets, Tensor):
            raise TypeError(f"explore: targets must be a Tensor or None, got {type(targets).__name__}")
        if isinstance(model, Recurrent) and model.dropout and model.training:
            raise ValueError(f"explore: the layer has dropout={model.dropout} and is training, so every forward "
                             "draws new masks and the panels would not agree; call model.eval() first")
        options = {"state": state, "rows": rows, "ks": ks, "windows": windows, "truncate": truncate,
                   "checkpoint": checkpoint, "graph": bool(graph), "rtrl": bool(rtrl), "rtrl_rows": rtrl_rows}
        run = recurrent_run(model, x, loss_fn, targets, options)
    run = {"name": name or type(model).__name__, **run}
    return Report([run], title)


def combine(*reports, title=None):
    """One :class:`Report` holding the runs of all ``reports``, in order (names must differ)."""
    if not reports:
        raise ValueError("combine: expected at least one Report")
    for i, r in enumerate(reports):
        if not isinstance(r, Report):
            raise TypeError(f"combine: argument {i} is a {type(r).__name__}, expected a Report")
    return Report([run for r in reports for run in r.runs], title or reports[0].title)


def _check_counts(**counts):
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"explore: {key} must be a positive int, got {value!r}")


def _check_optional_counts(**counts):
    _check_counts(**{k: v for k, v in counts.items() if v is not None})


def _labeller(labels, what):
    """A function id -> str from None, a function or a sequence indexed by id."""
    if labels is None:
        return str
    if callable(labels):
        return lambda i: str(labels(i))
    try:
        table = [str(s) for s in labels]
    except TypeError:
        raise TypeError(f"explore: {what} must be a function id -> str or a sequence of labels, "
                        f"got {type(labels).__name__}") from None
    return lambda i: table[i] if 0 <= i < len(table) else str(i)
