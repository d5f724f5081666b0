"""Spectra of the state-to-state Jacobians of a recurrent cell and of their products.

Backpropagation through time multiplies the gradient by one Jacobian per step,

    dh_t / dh_{t-w} = J_t J_{t-1} ... J_{t-w+1},    J_s = dh_s / dh_{s-1},

so whether gradients vanish or explode over w steps is read off the singular
values of these products (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov &
Bengio 2013). This module measures them for any
:class:`~tinygrad_rnn.nn.RecurrentCell`: it runs the cell over a sequence, then
rebuilds each step's graph with h_{t-1} as a leaf and reads J_t row by row from
vector-Jacobian products, ``tg.grad(h_t, h_{t-1}, grad_outputs=e_i)``; one VJP
per state unit gives that row for every example of the batch at once.

For a tuple state such as an LSTM's (h, c) the Jacobian is that of the
concatenated state [h; c]; its leading block (first part to first part, h -> h)
is kept as well.

Example::

    cell = tg.nn.RNNCell(3, 16, dtype=tg.float64)
    result = jacobian_spectra(cell, tg.randn(50, 4, 3, dtype=tg.float64))
    result.log_norms          # mean log ||J_t ... J_{t-w+1}||_2 for w = 1..50
    plot(result, "rnn_jacobians.png")
"""
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ..files import save_figure
from .. import backend
from ..engine import grad
from ..function import enable_grad, no_grad
from ..nn import RecurrentCell, RNNCell
from ..tensor import Tensor


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]


def _check_cell(cell, name):
    if not isinstance(cell, RecurrentCell):
        raise TypeError(f"{name}: cell must be a tinygrad_rnn.nn.RecurrentCell, got {type(cell).__name__}")


def _check_input(cell, x, name):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: x must be a Tensor, got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"{name}: x has {x.ndim} dims, expected 3 (seq, batch, feature)")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: x has shape {x.shape}, expected at least one step and one batch row")
    if cell.input_size is not None and x.shape[2] != cell.input_size:
        raise ValueError(f"{name}: x has {x.shape[2]} features, expected input_size={cell.input_size}")


def _check_state(cell, x, state, name):
    """The initial state: the cell's own when None, else ``state`` checked against it part by part."""
    reference = cell.initial_state(x.shape[1], x)
    if state is None:
        return reference
    given, expected = _parts(state), _parts(reference)
    if len(given) != len(expected):
        raise ValueError(f"{name}: the state has {len(given)} parts, expected {len(expected)} like "
                         f"{type(cell).__name__}.initial_state")
    for i, (s, r) in enumerate(zip(given, expected)):
        if not isinstance(s, Tensor) or s.shape != r.shape:
            raise ValueError(f"{name}: state part {i} has shape {getattr(s, 'shape', type(s).__name__)}, "
                             f"expected {r.shape}")
    return state


def state_sequence(cell, x, state=None):
    """The states h_0, h_1, ..., h_T of ``cell`` run over x (T, B, I), under no_grad.

    Each step is ``cell.step(cell.project(x_t), h_{t-1})``; h_0 is ``state`` or the
    cell's initial state. Returns a list of T + 1 states (Tensors, or tuples of them).
    """
    _check_cell(cell, "state_sequence")
    _check_input(cell, x, "state_sequence")
    with no_grad():
        states = [_check_state(cell, x, state, "state_sequence")]
        projected = cell.project(x)
        for t in range(x.shape[0]):
            states.append(cell.step(projected[t], states[-1]))
    return states


def step_jacobian(cell, p, state):
    """J = d step(p, h) / d h for every example, from one VJP per state unit.

    With the state parts h^(1), ..., h^(K), each (B, S_k), and h = [h^(1); ...; h^(K)]
    of size S = sum S_k, row i of J is e_i^T J = the gradient of <e_i, step(p, h)>
    with respect to h, taken on the graph of one step with h as a leaf.

    Args:
        cell: a RecurrentCell.
        p: the projected input of this step, ``cell.project(x_t)`` (B, ...).
        state: h_{t-1} (a Tensor (B, S) or a tuple of them); it is detached first.

    Returns:
        An array (B, S, S) on the state's device: J[b, i, j] = d h'_i / d h_j of example b.
    """
    _check_cell(cell, "step_jacobian")
    leaves = []
    for k, s in enumerate(_parts(state)):
        if not isinstance(s, Tensor) or s.ndim != 2 or not backend.is_float(s.dtype):
            raise ValueError(f"step_jacobian: state part {k} must be a float Tensor (batch, size), "
                             f"got {getattr(s, 'shape', type(s).__name__)} {getattr(s, 'dtype', '')}")
        leaves.append(s.detach().requires_grad_())
    with enable_grad():
        new = _parts(cell.step(p, _rebuild(state, leaves)))
    _check_new_state(new, leaves)
    sizes = [s.shape[1] for s in leaves]
    batch, total = leaves[0].shape[0], sum(sizes)
    xp = backend.get_array_module(leaves[0].data)
    jac = xp.zeros((batch, total, total), dtype=leaves[0].dtype)
    live = [k for k, n in enumerate(new) if n.requires_grad]   # parts that do not depend on h have zero rows
    offsets = np.cumsum([0] + sizes)
    for k in live:
        for j in range(sizes[k]):
            seeds = [xp.zeros_like(new[m].data) for m in live]
            seeds[live.index(k)][:, j] = 1
            row = grad([new[m] for m in live], leaves, grad_outputs=seeds, retain_graph=True, allow_unused=True)
            for m, g in enumerate(row):
                if g is not None:
                    jac[:, offsets[k] + j, offsets[m]:offsets[m + 1]] = g.data
    return jac


def _check_new_state(new, leaves):
    if len(new) != len(leaves):
        raise ValueError(f"step_jacobian: the step returned {len(new)} state parts, expected {len(leaves)}")
    for k, (n, s) in enumerate(zip(new, leaves)):
        if not isinstance(n, Tensor) or n.shape != s.shape:
            raise ValueError(f"step_jacobian: the step returned state part {k} of shape "
                             f"{getattr(n, 'shape', type(n).__name__)}, expected {s.shape} like its input")


def state_jacobians(cell, x, state=None):
    """J_t = dh_t / dh_{t-1} for t = 1..T of ``cell`` run over x (T, B, I).

    Returns a float64 NumPy array (T, B, S, S), whatever the device: entry [t-1]
    is J_t at the states the cell actually visits from ``state`` (its initial state
    when None).
    """
    states = state_sequence(cell, x, state)
    with no_grad():
        projected = cell.project(x)
    return np.stack([backend.to_device(step_jacobian(cell, projected[t], states[t]), "cpu").astype(np.float64)
                     for t in range(x.shape[0])])


def _check_windows(windows, steps, name):
    if windows is None:
        return np.arange(1, steps + 1)
    windows = np.asarray(windows).reshape(-1)
    if windows.size == 0:
        raise ValueError(f"{name}: windows is empty, expected window lengths in [1, {steps}]")
    if windows.dtype.kind not in "iu":
        raise TypeError(f"{name}: windows must be integers, got dtype {windows.dtype}")
    if windows.min() < 1 or windows.max() > steps:
        raise ValueError(f"{name}: window lengths must be in [1, {steps}] (the number of steps), "
                         f"got values in [{windows.min()}, {windows.max()}]")
    return windows.astype(np.int64)


def _check_jacobians(jacobians, name):
    jacobians = np.asarray(jacobians)
    if jacobians.ndim != 4 or jacobians.shape[2] != jacobians.shape[3]:
        raise ValueError(f"{name}: jacobians has shape {jacobians.shape}, expected (T, B, S, S)")
    return jacobians


def window_products(jacobians, w):
    """P_t = J_t J_{t-1} ... J_{t-w+1} for every window of w steps, t = w..T.

    Args:
        jacobians: (T, B, S, S), as from :func:`state_jacobians`.
        w: the window length, 1 <= w <= T.

    Returns:
        (T - w + 1, B, S, S); entry [k] is the product over steps k+1 .. k+w
        (d h_{k+w} / d h_k). The products are not rescaled, so they may overflow
        for long windows; :func:`window_log_norms` does not.
    """
    jacobians = _check_jacobians(jacobians, "window_products")
    (w,) = _check_windows([w], jacobians.shape[0], "window_products")
    return np.stack([reduce(lambda acc, j: j @ acc, jacobians[k + 1:k + w], jacobians[k])
                     for k in range(jacobians.shape[0] - w + 1)])


def window_log_norms(jacobians, windows=None):
    """log ||J_t ... J_{t-w+1}||_2 for each window length w and every start point.

    The product grows one step at a time from each start and is rescaled by its
    Frobenius norm after every step (the scale kept as a log), so the log norm is
    exact where the product itself would overflow or underflow. A product that is
    exactly zero (e.g. dead ReLU units) has log norm -inf.

    Args:
        jacobians: (T, B, S, S).
        windows: window lengths in [1, T]; all of 1..T when None.

    Returns:
        A list with, for each window w, an array (T - w + 1, B).
    """
    jacobians = _check_jacobians(jacobians, "window_log_norms")
    steps = jacobians.shape[0]
    windows = _check_windows(windows, steps, "window_log_norms")
    longest = int(windows.max())
    by_length = {int(w): [] for w in windows}
    with np.errstate(divide="ignore"):
        for start in range(steps - min(windows) + 1):
            product = jacobians[start].copy()
            log_scale = np.zeros(jacobians.shape[1])
            for length in range(1, min(longest, steps - start) + 1):
                if length > 1:
                    product = jacobians[start + length - 1] @ product
                scale = np.linalg.norm(product, axis=(1, 2))
                scale = np.where(scale > 0, scale, 1.0)
                product /= scale[:, None, None]
                log_scale += np.log(scale)
                if length in by_length:
                    top = np.linalg.svd(product, compute_uv=False)[:, 0]
                    by_length[length].append(np.log(top) + log_scale)
    return [np.stack(by_length[int(w)]) for w in windows]


def pascanu_bound(cell):
    """eta = ||W_hh||_2 for an Elman RNNCell, else None.

    Pascanu, Mikolov & Bengio (2013): for h_t = act(W h_{t-1} + U x_t + b),
    J_t = diag(act'(a_t)) W, so ||J_t|| <= ||diag(act')|| ||W|| <= gamma eta, and
    with gamma = 1 (|tanh'| <= 1, and relu' is 0 or 1)

        ||J_t J_{t-1} ... J_{t-w+1}||_2 <= eta^w.

    The bound needs the Jacobian to factor as a diagonal times one fixed matrix,
    which gated cells (LSTM, GRU, the variants) and cells that override
    RNNCell.step do not; for them this returns None.
    """
    _check_cell(cell, "pascanu_bound")
    if not isinstance(cell, RNNCell) or type(cell).step is not RNNCell.step:
        return None
    weight = backend.to_device(cell.weight_hh.data, "cpu").astype(np.float64)
    return float(np.linalg.svd(weight, compute_uv=False)[0])


@dataclass
class JacobianSpectra:
    """What :func:`jacobian_spectra` measured (NumPy float64 arrays).

    Attributes:
        cell_name: the cell's class name.
        part_sizes: the size of each state part (e.g. (H, H) for an LSTM).
        jacobians: (T, B, S, S), J_t = dh_t / dh_{t-1} of the concatenated state.
        hidden_jacobians: (T, B, H, H), the block of the first part (h -> h).
        singular_values: (T, B, S), those of each J_t, largest first.
        windows: (W,) window lengths w.
        log_norms: (W,) mean over start points and examples of log ||J_t ... J_{t-w+1}||_2.
        log_norms_std: (W,) their standard deviation.
        eta: ||W_hh||_2 for an Elman RNN (see :func:`pascanu_bound`), else None.
        log_bound: (W,) w log eta, the log of the bound eta^w, or None.
    """

    cell_name: str
    part_sizes: tuple
    jacobians: np.ndarray
    hidden_jacobians: np.ndarray
    singular_values: np.ndarray
    windows: np.ndarray
    log_norms: np.ndarray
    log_norms_std: np.ndarray
    eta: float = None
    log_bound: np.ndarray = None

    def summary(self):
        """One line: the largest singular value, the log norm over the longest window and the bound."""
        w = int(self.windows[-1])
        line = (f"{self.cell_name}: mean sigma_max(J_t) = {self.singular_values[..., 0].mean():.4g}, "
                f"mean log||prod of {w} J|| = {self.log_norms[-1]:.4g}")
        if self.eta is not None:
            line += f", bound {w} log eta = {self.log_bound[-1]:.4g} (eta = {self.eta:.4g})"
        return line


def jacobian_spectra(cell, x, state=None, windows=None):
    """Run ``cell`` over x (T, B, I) and measure its Jacobians, their products and the bound.

    Args:
        cell: any RecurrentCell (built-in, variant or user-defined).
        x: input Tensor (T, B, input_size).
        state: the initial state; the cell's own when None.
        windows: window lengths w in [1, T]; all of 1..T when None.

    Returns:
        A :class:`JacobianSpectra`.
    """
    _check_cell(cell, "jacobian_spectra")
    _check_input(cell, x, "jacobian_spectra")
    windows = _check_windows(windows, x.shape[0], "jacobian_spectra")
    jac = state_jacobians(cell, x, state)
    sizes = tuple(s.shape[1] for s in _parts(_check_state(cell, x, state, "jacobian_spectra")))
    per_window = window_log_norms(jac, windows)
    eta = pascanu_bound(cell)
    with np.errstate(divide="ignore", invalid="ignore"):     # -inf log norms of zero products
        log_bound = None if eta is None else windows * np.log(eta)
        means = np.array([v.mean() for v in per_window])
        stds = np.array([v.std() for v in per_window])
    return JacobianSpectra(
        cell_name=type(cell).__name__, part_sizes=sizes, jacobians=jac,
        hidden_jacobians=jac[:, :, :sizes[0], :sizes[0]],
        singular_values=np.linalg.svd(jac, compute_uv=False), windows=windows,
        log_norms=means, log_norms_std=stds, eta=eta, log_bound=log_bound)


def plot(result, path, title=None):
    """Save a PNG of ``result``: singular values of J_t against t (mean over the
    batch, one line per index), and the mean log norm of window products against
    w (with a band of one standard deviation) and the bound w log eta where it applies.

    matplotlib is needed (imported here, drawing off-screen with its Agg canvas).
    Returns ``path``.
    """
    if not isinstance(result, JacobianSpectra):
        raise TypeError(f"plot: result must be a JacobianSpectra, got {type(result).__name__}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    steps = np.arange(1, result.singular_values.shape[0] + 1)
    sigma = result.singular_values.mean(axis=1)
    for k in range(sigma.shape[1]):
        left.plot(steps, sigma[:, k], color="tab:blue", lw=1.6 if k == 0 else 0.6, alpha=1.0 if k == 0 else 0.5)
    left.axhline(1.0, color="black", lw=0.8, ls=":")
    left.set(yscale="log", xlabel="step t", ylabel="singular values of $J_t$ (batch mean)",
             title="one-step Jacobians")
    right.plot(result.windows, result.log_norms, color="tab:blue", marker=".", label="measured (mean)")
    right.fill_between(result.windows, result.log_norms - result.log_norms_std,
                       result.log_norms + result.log_norms_std, color="tab:blue", alpha=0.2)
    if result.log_bound is not None:
        right.plot(result.windows, result.log_bound, color="tab:red", ls="--",
                   label=f"$w \\log \\eta$, $\\eta$ = {result.eta:.3g}")
    right.axhline(0.0, color="black", lw=0.8, ls=":")
    right.set(xlabel="window length w", ylabel="log $\\|J_t \\cdots J_{t-w+1}\\|_2$", title="window products")
    right.legend(loc="best")
    fig.suptitle(title or result.cell_name)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path
