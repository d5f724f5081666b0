"""Training a recurrent network with the extended Kalman filter (EKF), global or decoupled.

The weights w (W numbers) are the state of a dynamical system that the filter tracks
from the targets (Singhal & Wu 1989; for recurrent networks Puskorius & Feldkamp 1994,
"Neurocontrol of nonlinear dynamical systems with Kalman filter trained recurrent
networks", IEEE TNN 5(2); Haykin (ed.) 2001, "Kalman Filtering and Neural Networks", ch. 2):

    w_{t+1} = w_t + omega_t                 omega_t ~ N(0, Q)     (the weights may drift)
    d_t     = y_t(w_t) + nu_t               nu_t    ~ N(0, R)     (a target is the output plus noise)

The output y_t (m numbers per step: B rows of O outputs, each row a stream) is
linearised around the current weights by H_t = (dy_t/dw)^T (W x m), the derivative of
the output with respect to the weights *through all earlier steps*, which is what RTRL
carries forward (:func:`tinygrad_rnn.study.rtrl.rtrl_step`: one jvp of the step per time
step). The weights split into g groups (w_1 .. w_g, W_i numbers each); group i keeps
its own covariance P_i (W_i x W_i), and the covariances between groups are taken to
be zero. At every step, with the innovation xi_t = d_t - y_t:

    A_t       = (R + sum_i H_i^T P_i H_i)^{-1}            (m x m, the same for every group)
    K_i       = P_i H_i A_t                               (W_i x m, the Kalman gain of group i)
    w_i      <- w_i + K_i xi_t
    P_i      <- P_i - K_i H_i^T P_i + Q_i

(H_i: the rows of H_t that belong to group i.) With one group this is the global EKF
(GEKF): the full W x W covariance, O(m W^2) per step. Puskorius & Feldkamp's decoupled
EKF (DEKF) costs O(m sum_i W_i^2) instead; grouping the weights by the neuron they feed
is their node-decoupled EKF (NDEKF). The initial covariance is P_i = p0 I (Haykin's
delta^{-1} I: large for weights that are far from known), Q_i = q I (keeps P from
collapsing, so the filter goes on learning; often annealed towards 0), and R = r I
(the 1994 paper writes it as (1/eta) I, eta a learning rate; annealed too). The
sensitivities are carried across weight updates as they are (the online
approximation RTRL makes too). P is symmetrised after each update against rounding.

Example::

    cell = tg.nn.ElmanJordanCell(1, 8, output_size=1, output_nonlinearity="identity", dtype=tg.float64)
    ekf = DecoupledEKF(cell, groups="neuron", p0=1.0, q=1e-6, r=1.0)
    for epoch in range(5):
        predictions = ekf.train(x, targets)          # x (T, B, 1), targets (T, B, 1): one pass
"""
import re

import numpy as np

from .. import backend
from ..function import no_grad
from ..nn.cells import RecurrentCell
from ..tensor import Tensor, not_a_tensor
from .rtrl import output_sensitivity, parameter_tangents, rtrl_step

GROUPINGS = ("global", "tensor", "neuron")
_UNIT_NAME = re.compile(r"^(weight|bias)_[a-z]([a-z])$")


def ekf_update(weights, covariances, groups, H, error, r, q):
    """One (decoupled) EKF step on arrays; the equations are in the module docstring.

    Args:
        weights: (W,) float array, all the weights flattened.
        covariances: list of g arrays P_i (W_i, W_i), one per group.
        groups: list of g integer index arrays into ``weights``, a partition of 0 .. W-1.
        H: (W, m) array, dy/dw for each of the m measured outputs.
        error: (m,) array, the innovation d - y.
        r: the measurement noise: a number (R = r I), an (m,) diagonal or an (m, m) matrix.
        q: the process noise, a number (Q_i = q I).
    Returns: (new weights (W,), list of the new P_i), new arrays.
    """
    xp = backend.get_array_module(weights)
    m = H.shape[1]
    noise = xp.asarray(r, dtype=H.dtype)
    noise = noise * xp.eye(m, dtype=H.dtype) if noise.ndim == 0 else (xp.diag(noise) if noise.ndim == 1 else noise)
    blocks = [H[index] for index in groups]
    spread = [p @ h for p, h in zip(covariances, blocks)]                 # P_i H_i (W_i, m)
    innovation_cov = noise + sum(h.T @ ph for h, ph in zip(blocks, spread))
    new_weights, new_covariances = weights.copy(), []
    for index, p, ph in zip(groups, covariances, spread):
        gain = xp.linalg.solve(innovation_cov, ph.T).T                    # P_i H_i A (A symmetric)
        new_weights[index] = weights[index] + gain @ error
        p = p - gain @ ph.T + q * xp.eye(p.shape[0], dtype=p.dtype)      # P_i - K_i H_i^T P_i + Q_i
        new_covariances.append((p + p.T) / 2)
    return new_weights, new_covariances


def weight_groups(named, grouping):
    """Index arrays into the flattened weights (``named``: [(name, Parameter)] in order) for
    ``grouping``: "global" (one group), "tensor" (one per parameter), "neuron" (the weights
    feeding each unit: row k of every parameter named ``weight_{a}{b}`` or ``bias_{a}{b}``
    (PyTorch's naming, rows = units of b) with the same b and number of rows), or a list of
    lists of parameter names, each name in exactly one list."""
    offsets, start = {}, 0
    for name, p in named:
        offsets[name] = np.arange(start, start + p.size).reshape(p.shape)
        start += p.size
    if isinstance(grouping, str):
        if grouping not in GROUPINGS:
            raise ValueError(f"DecoupledEKF: groups must be one of {GROUPINGS} or a list of lists of parameter "
                             f"names, got {grouping!r}")
        if grouping == "global":
            return [np.arange(start)]
        if grouping == "tensor":
            return [offsets[name].ravel() for name, _ in named]
        return _neuron_groups(named, offsets)
    return _named_groups(grouping, offsets)


def _neuron_groups(named, offsets):
    units = {}
    for name, p in named:
        match = _UNIT_NAME.match(name)
        if match is None or p.ndim not in (1, 2):
            raise ValueError(f"DecoupledEKF: groups='neuron' needs parameters named weight_ab (2-d) or bias_ab "
                             f"(1-d), rows = units of b, got {name!r} of shape {p.shape}; use groups='tensor' "
                             "or lists of names")
        for row in range(p.shape[0]):
            units.setdefault((match.group(2), p.shape[0], row), []).append(offsets[name][row].ravel())
    return [np.concatenate(parts) for parts in units.values()]


def _named_groups(grouping, offsets):
    try:
        lists = [list(group) for group in grouping]
    except TypeError:
        raise TypeError(f"DecoupledEKF: groups must be a string or a list of lists of parameter names, "
                        f"got {type(grouping).__name__}") from None
    flat = [name for group in lists for name in group]
    unknown = sorted(set(flat) - set(offsets))
    if unknown or sorted(flat) != sorted(offsets) or any(not group for group in lists):
        raise ValueError(f"DecoupledEKF: the groups must hold every parameter name exactly once, in non-empty "
                         f"lists; names are {list(offsets)}, got {lists}")
    return [np.concatenate([offsets[name].ravel() for name in group]) for group in lists]


class DecoupledEKF:
    """Trains ``cell`` by the (decoupled) extended Kalman filter, one weight update per time
    step, with H_t from RTRL (see the module docstring for the equations).

    Args:
        cell: a :class:`~tinygrad_rnn.nn.RecurrentCell` whose ``output(state)`` is the prediction
            (e.g. ``ElmanJordanCell(..., output_nonlinearity="identity")``) and whose ops all have
            forward-mode rules.
        groups: "global" (one group: GEKF), "tensor" (one per parameter tensor), "neuron" (default:
            the weights feeding each unit, NDEKF), or a list of lists of parameter names.
        p0: the initial covariance P_i = p0 I (default 1).  q: the process noise Q_i = q I (default 1e-6).
        r: the measurement noise R = r I (a number, default 1) or its (m,) diagonal. The defaults
            suit targets of unit variance (examples/ekf_sunspots.py).
        q and r may be changed between steps (annealing).
    Attributes: ``names`` (the trained parameters, in order), ``groups`` (index arrays into the
    flattened weights), ``covariances`` (the P_i, float64), ``state`` and ``sensitivities`` (the
    cell's state and its RTRL sensitivities, carried between calls of :meth:`step`).

    Example::

        ekf = DecoupledEKF(nn.ElmanJordanCell(1, 8, 1, output_nonlinearity="identity"), groups="global")
        predictions = ekf.train(x, targets)        # x (T, B, I), targets (T, B, O): one pass, T updates
    """

    def __init__(self, cell, groups="neuron", p0=1.0, q=1e-6, r=1.0):
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"DecoupledEKF: cell must be a RecurrentCell, got {type(cell).__name__}")
        for label, value in (("p0", p0), ("q", q)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                    label == "p0" and value == 0):
                raise ValueError(f"DecoupledEKF: {label} must be a {'positive' if label == 'p0' else 'non-negative'} "
                                 f"number, got {value!r}")
        named = [(name, p) for name, p in cell.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"DecoupledEKF: {type(cell).__name__} has no parameter that requires grad")
        self.cell, self.names, self.params = cell, [n for n, _ in named], [p for _, p in named]
        self.groups = weight_groups(named, groups)
        xp = backend.get_array_module(self.params[0].data)
        self.groups = [backend.to_device(g, self.params[0].device) for g in self.groups] if xp is not np \
            else self.groups
        self.covariances = [p0 * xp.eye(len(g), dtype=np.float64) for g in self.groups]
        self.q, self.r = q, r
        self._seeds = parameter_tangents(self.params)
        self.state = self.sensitivities = None

    def reset(self, batch, state=None):
        """Start a new sequence of ``batch`` streams: the state (the cell's initial state when None)
        and zero sensitivities. The covariances and the weights stay."""
        like = Tensor._make(self.params[0].data[:0], False, None, 0)
        state = self.cell.initial_state(batch, like) if state is None else state
        parts = [s.detach() for s in _parts(state)]
        xp = backend.get_array_module(parts[0].data)
        count = self._seeds[0].shape[0]
        self.state = _rebuild(state, parts)
        self.sensitivities = [xp.zeros((count,) + s.shape, dtype=s.dtype) for s in parts]

    def step(self, x_t, target=None):
        """Advance one step on x_t (B, input_size); with ``target`` (B, O) update the weights.
        Returns the prediction y_t (B, O), made before the update, as a Tensor."""
        if not isinstance(x_t, Tensor):
            raise not_a_tensor("DecoupledEKF.step", "x_t", x_t)
        if x_t.ndim != 2 or x_t.shape[1] != self.cell.input_size:
            raise ValueError(f"DecoupledEKF.step: x_t has shape {x_t.shape}, expected (batch, {self.cell.input_size})")
        if x_t.dtype != self.params[0].dtype or x_t.device != self.params[0].device:
            raise TypeError(f"DecoupledEKF.step: x_t is {x_t.dtype.name} on {x_t.device}, expected "
                            f"{self.params[0].dtype.name} on {self.params[0].device} like the cell's parameters")
        if self.state is None:
            self.reset(x_t.shape[0])
        parts, sensitivities = rtrl_step(self.cell, x_t.detach(), _parts(self.state), self.sensitivities,
                                         self.params, self._seeds, self.state)
        self.state, self.sensitivities = _rebuild(self.state, parts), sensitivities
        with no_grad():
            prediction = self.cell.output(self.state)
        if target is not None:
            self._check_target(target, prediction)
            H = output_sensitivity(self.cell, self.state, parts, sensitivities)
            self.update(H.reshape(H.shape[0], -1), (target.data - prediction.data).reshape(-1))
        return prediction

    def update(self, H, error):
        """Apply :func:`ekf_update` with H (W, m) and the innovation (m,) to the cell's weights."""
        xp = backend.get_array_module(H)
        weights = xp.concatenate([p.data.reshape(-1).astype(np.float64) for p in self.params])
        weights, self.covariances = ekf_update(weights, self.covariances, self.groups, H.astype(np.float64),
                                               error.astype(np.float64), self.r, self.q)
        start = 0
        for p in self.params:
            p.data = weights[start:start + p.size].reshape(p.shape).astype(p.dtype)
            start += p.size

    def train(self, x, targets, state=None, washout=0):
        """One pass over x (T, B, input_size) with targets (T, B, O) from ``state`` (default the
        initial state): T steps, a weight update at each step from ``washout`` on (the steps
        before only prime the state and sensitivities). Returns the predictions (T, B, O), each
        made before its step's update."""
        if not isinstance(x, Tensor) or not isinstance(targets, Tensor):
            raise not_a_tensor("DecoupledEKF.train", "x and targets", x if not isinstance(x, Tensor) else targets)
        if x.ndim != 3 or targets.ndim != 3 or targets.shape[:2] != x.shape[:2]:
            raise ValueError(f"DecoupledEKF.train: x (T, B, I) and targets (T, B, O) must share T and B, got "
                             f"{x.shape} and {targets.shape}")
        self.reset(x.shape[1], state)
        xp = backend.get_array_module(x.data)
        outputs = [self.step(x[t], targets[t] if t >= washout else None).data for t in range(x.shape[0])]
        return Tensor._make(xp.stack(outputs), False, None, 0)

    def _check_target(self, target, prediction):
        if not isinstance(target, Tensor):
            raise not_a_tensor("DecoupledEKF.step", "target", target)
        if target.shape != prediction.shape:
            raise ValueError(f"DecoupledEKF.step: target has shape {target.shape}, expected {prediction.shape} "
                             "like the cell's output")


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]
