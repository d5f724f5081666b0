"""The truncation-bias meter: how far truncated BPTT's gradient is from the true one.

Take a loss that is a sum of per-step terms, L = sum_t l_t(h_t), over steps
t = 0 .. T-1 of a recurrent model with parameters theta, and write theta_s for
the parameters as used by step s (see :mod:`tinygrad_rnn.study.tracing`). Full BPTT gives

    dL/dtheta = sum_t sum_{s <= t} dl_t/dtheta_s,

where dl_t/dtheta_s = (dl_t/dh_t) (dh_t/dh_{t-1}) ... (dh_{s+1}/dh_s) (d+h_s/dtheta_s)
carries l_t's gradient back t - s steps (d+ is the direct dependence of step s
on its parameters). Truncation keeps only the terms that travel a short way back:

- ``"sliding"``, BPTT(h) of Williams & Peng (1990) with h = k: every loss term's
  gradient flows back through its own last k steps,

      g_k = sum_t sum_{s = max(0, t-k+1)}^{t} dl_t/dtheta_s = sum_{lag < k} D_lag,
      D_lag = sum_t dl_t/dtheta_{t-lag};

- ``"chunked"``, what ``nn.bptt.truncated_bptt`` computes with k1 = k2 = k: the
  sequence is cut into chunks of k steps, the state is detached between chunks,
  and a term sees back only to the start of its chunk,

      g_k = sum_t sum_{s = k floor(t/k)}^{t} dl_t/dtheta_s.

Both equal full BPTT for k >= T. Tallec & Ollivier (2017, "Unbiasing truncated
backpropagation through time") discuss why the truncated gradient is biased:
it drops every dependence longer than k steps, however strong.

:func:`measure` reports, for each k, the cosine similarity and the relative error
||g_k - g||/||g|| of the flattened gradient (all parameters) against full BPTT g.
The sliding variant reads the D_lag of all lags from one trace (one backward per
loss term, O(T^2) step backwards); the chunked one runs each k's chunks (O(T) per k).
"""
import numbers
from functools import partial

import numpy as np

from ..files import save_figure
from .. import backend
from ..engine import grad
from ..function import enable_grad
from ..nn.bptt import detach_state
from ..nn.recurrent import Recurrent, unroll
from ..tensor import Tensor
from ..nn.recurrent import check_lengths
from .tracing import check_input, model_cells, time_major, trace

VARIANTS = ("sliding", "chunked")


class TruncationResult:
    """What :func:`measure` found; every array is NumPy.

    Attributes:
        variant: ``"sliding"`` or ``"chunked"``.
        ks: the truncation lengths, in the order given.
        steps: T.
        names: the parameters compared (the model's own names, those that require grad).
        full: {name: array} the full BPTT gradient.
        grads: one {name: array} per k, the truncated gradient g_k.
        cosine: (len(ks),) cos(g_k, g) of the flattened gradients (nan when one is zero).
        relative_error: (len(ks),) ||g_k - g|| / ||g|| (nan when g is zero).
        lag_norms: (T,) ||D_lag||, the size of what travels exactly lag steps back
            (sliding variant only; None for chunked).
    """

    def __init__(self, variant, ks, steps, names):
        self.variant, self.ks, self.steps, self.names = variant, ks, steps, names
        self.full, self.grads = {}, []
        self.cosine = self.relative_error = self.lag_norms = None


def measure(model, x, loss_fn, targets=None, ks=None, state=None, variant="sliding", lengths=None):
    """The truncation bias of ``model`` on one sequence, for each truncation length k.

    Args:
        model: an ``nn.RecurrentCell`` or an ``nn.Recurrent`` layer (any depth; batch_first;
            bidirectional for the sliding variant, see below).
        x: Tensor (T, B, input_size), or (B, T, input_size) for a batch_first layer.
        loss_fn: ``loss_fn(outputs, targets) -> scalar Tensor`` for TIME-MAJOR outputs
            (steps, B, out), whatever the layer's batch_first, and the matching slice of
            targets. It must be a sum over time steps (e.g. a per-step loss summed over
            t, not averaged over t); it may use parameters of its own (a readout), which
            are not reported.
        targets: Tensor (T, ...) time-major, or None.
        ks: the truncation lengths (ints >= 1); default 1 .. T.
        state: the initial state, as the model takes it.
        variant: ``"sliding"`` (BPTT(h) at every step) or ``"chunked"`` (detach every k
            steps); see the module docstring for the exact definitions.
        lengths: B ints, as the layers take them.
    Returns: a :class:`TruncationResult`.

    A bidirectional layer's reverse direction reads the future, so its truncation is
    measured the way the sliding variant sees it: the gradient of the loss term at
    position t reaching a step that reads position s travels |t - s| steps, and
    BPTT(k) keeps what travels fewer than k. The chunked variant streams the sequence
    forward and is refused for a bidirectional layer, as are rows of unequal lengths
    there (the reverse direction's step s would read a different position in each row).

    Example::

        r = measure(nn.GRU(2, 16), x, lambda out, y: ((out @ w - y) ** 2).sum(), targets=y)
        r.cosine        # one per k = 1 .. T
    """
    cells = model_cells(model, "measure")
    check_input(model, cells, x, "measure")
    steps, batch = time_major(model, x).shape[:2]
    ks = _check_ks(ks, steps)
    if variant not in VARIANTS:
        raise ValueError(f"measure: variant must be one of {VARIANTS}, got {variant!r}")
    bidirectional = isinstance(model, Recurrent) and model.bidirectional
    lengths = check_lengths(lengths, steps, batch, "measure", minimum=1)
    if bidirectional and variant == "chunked":
        raise ValueError("measure: the chunked variant streams the sequence forward, which a bidirectional "
                         "layer cannot do (its reverse direction reads the future); use variant='sliding'")
    if bidirectional and lengths is not None and lengths.min() < steps:
        raise ValueError("measure: a bidirectional layer with rows of different lengths: its reverse direction's "
                         "step s reads a different position in each row, so a step has no single lag")
    _check_targets(targets, steps)
    if isinstance(model, Recurrent) and model.dropout and model.training:
        raise ValueError(f"measure: the layer has dropout={model.dropout} and is training, so every forward "
                         "draws new masks; call model.eval() first")
    names, params = _trainable(model)
    result = TruncationResult(variant, ks, steps, names)
    with enable_grad():
        outputs, _ = _forward(model, x, state, lengths)
        total = loss_fn(outputs, targets)
        full = _flat(grad(total, params, allow_unused=True), params)
        if variant == "sliding":
            truncated, lags = _sliding(model, x, state, lengths, loss_fn, targets, names, params, ks, total)
            result.lag_norms = _numpy(backend.get_array_module(lags).sqrt((lags * lags).sum(axis=1)))
        else:
            truncated = [_chunked(model, time_major(model, x), state, lengths, loss_fn, targets, params, k, total)
                         for k in ks]
    full = _numpy(full)
    truncated = [_numpy(g) for g in truncated]
    result.full = _unflatten(full, names, params)
    result.grads = [_unflatten(g, names, params) for g in truncated]
    result.cosine = np.array([cosine(g, full) for g in truncated])
    result.relative_error = np.array([relative_error(g, full) for g in truncated])
    return result


def cosine(a, b):
    """a.b / (|a| |b|), clipped to [-1, 1] against rounding; nan when either is zero."""
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.clip(np.dot(a, b) / norms, -1.0, 1.0)) if norms > 0 else float("nan")


def relative_error(a, reference):
    """|a - reference| / |reference|; nan when the reference is zero."""
    scale = np.linalg.norm(reference)
    return float(np.linalg.norm(a - reference) / scale) if scale > 0 else float("nan")


# ------------------------------------------------------------------ the two variants
def _sliding(model, x, state, lengths, loss_fn, targets, names, params, ks, total):
    """(g_k for each k, D (T, P)): D[lag] = sum_t dl_t/dtheta_s over the steps s that read position
    t - lag (or, in a reverse direction, t + lag), one backward per term."""
    tr = trace(model, x, state, lengths)
    outputs = time_major(model, tr.output)
    reverse = {name for k, own in enumerate(tr.layer_params) if k % tr.directions == 1 for name in own}
    steps = tr.steps
    lags, terms = None, []
    for t in range(steps):
        term = loss_fn(outputs[t:t + 1], None if targets is None else targets[t:t + 1])
        terms.append(term.item())
        reached = [s for s in range(steps) if s <= t or reverse]           # a forward step after t cannot matter
        aliases = [tr.aliases[name][s] for s in reached for name in names]
        per_step = grad(term, aliases, retain_graph=True, allow_unused=True)
        for i, s in enumerate(reached):
            chunk = list(per_step[i * len(names):(i + 1) * len(names)])
            for j, name in enumerate(names):        # each alias goes to the lag of the position its step reads
                lag = abs(t - (steps - 1 - s if name in reverse else s))
                if chunk[j] is None:
                    continue
                single = [None] * len(names)
                single[j] = chunk[j]
                flat = _flat(single, params)
                if lags is None:
                    lags = backend.get_array_module(flat).zeros((steps, flat.size), dtype=flat.dtype)
                lags[lag] += flat
    _check_additive(total, terms, "the sum of its per-step values")
    cumulative = backend.get_array_module(lags).cumsum(lags, axis=0)
    return [cumulative[min(k, tr.steps) - 1] for k in ks], lags


def _chunked(model, x, state, lengths, loss_fn, targets, params, k, total):
    """g_k with the state detached every k steps (nn.bptt.truncated_bptt's gradient for k1 = k2 = k),
    x time-major."""
    g, terms = None, []
    for t0 in range(0, x.shape[0], k):
        chunk = x[t0:t0 + k]
        chunk_lengths = None if lengths is None else (lengths - t0).clip(0, chunk.shape[0])
        forward = model.time_major if isinstance(model, Recurrent) else partial(unroll, model)
        outputs, state = forward(chunk, detach_state(state), chunk_lengths)
        loss = loss_fn(outputs, None if targets is None else targets[t0:t0 + k])
        terms.append(loss.item())
        flat = _flat(grad(loss, params, allow_unused=True), params)
        g = flat if g is None else g + flat
    _check_additive(total, terms, f"the sum of its values on chunks of {k} steps")
    return g


# ------------------------------------------------------------------ helpers
def _forward(model, x, state, lengths):
    """(time-major outputs, final state) of the model on x in its own layout."""
    if not isinstance(model, Recurrent):
        return unroll(model, x, state, lengths)
    outputs, final = model(x, state, lengths=lengths)
    return time_major(model, outputs), final


def _trainable(model):
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"measure: no parameter of the {type(model).__name__} requires grad")
    return [name for name, _ in named], [p for _, p in named]


def _flat(grads, params):
    """The gradients as one vector (zeros for None) in the parameters' order."""
    xp = backend.get_array_module(params[0].data)
    return xp.concatenate([xp.zeros(p.size, dtype=p.dtype) if g is None else g.data.reshape(-1)
                           for g, p in zip(grads, params)])


def _unflatten(flat, names, params):
    out, start = {}, 0
    for name, p in zip(names, params):
        out[name] = flat[start:start + p.size].reshape(p.shape)
        start += p.size
    return out


def _numpy(array):
    return backend.to_device(array, "cpu")


def _check_ks(ks, steps):
    if ks is None:
        return tuple(range(1, steps + 1))
    ks = tuple(ks)
    if not ks:
        raise ValueError("measure: ks is empty, expected at least one truncation length")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"measure: truncation lengths must be ints, got {k!r} ({type(k).__name__})")
        if k < 1:
            raise ValueError(f"measure: truncation lengths must be >= 1, got k={k}")
    return tuple(int(k) for k in ks)


def _check_targets(targets, steps):
    if targets is None:
        return
    if not isinstance(targets, Tensor):
        raise TypeError(f"measure: targets must be a Tensor or None, got {type(targets).__name__}")
    if targets.ndim == 0 or targets.shape[0] != steps:
        raise ValueError(f"measure: targets has shape {targets.shape}, expected ({steps}, ...): "
                         "one per time step of x")


def _check_additive(total, parts, what):
    """Raise unless loss_fn on the whole sequence equals the sum of ``parts``, its values on
    pieces of the sequence (it must be a sum over steps), up to rounding."""
    whole, summed = total.item(), float(sum(parts))
    eps = float(np.finfo(total.dtype).eps)
    if abs(whole - summed) > np.sqrt(eps) * (abs(whole) + sum(abs(p) for p in parts) + eps):
        raise ValueError(f"measure: loss_fn must be a sum over time steps, but it gives {whole!r} on the whole "
                         f"sequence and {summed!r} as {what}; sum the per-step losses over time instead of "
                         "averaging them")


# ------------------------------------------------------------------ plot
def plot(result, path):
    """Save a PNG at ``path``: cosine and relative error against full BPTT over k and,
    for the sliding variant, ||D_lag|| over the lag (log scale). Needs matplotlib."""
    from .telemetry import new_figure
    figure = new_figure(3 if result.lag_norms is not None else 2)
    axes = figure.axes
    ks = np.array(result.ks)
    order = np.argsort(ks)
    axes[0].plot(ks[order], result.cosine[order], marker=".")
    axes[0].set_ylabel("cosine with full BPTT")
    axes[0].set_title(f"truncated BPTT ({result.variant}), T = {result.steps}")
    error = result.relative_error[order]
    axes[1].plot(ks[order], np.where(error > 0, error, np.nan), marker=".")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("relative error")
    axes[1].set_xlabel("truncation length k")
    if result.lag_norms is not None:
        lags = np.arange(result.steps)
        axes[2].plot(lags, np.where(result.lag_norms > 0, result.lag_norms, np.nan), marker=".")
        axes[2].set_yscale("log")
        axes[2].set_ylabel("||D_lag||")
        axes[2].set_xlabel("lag (steps back)")
    save_figure(figure, path, dpi=100)
    return path
