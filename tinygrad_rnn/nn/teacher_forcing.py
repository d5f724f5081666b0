"""Teacher forcing for output-fed networks: feed back the true previous output, the
network's own, or a mix of the two.

An output-fed cell (:class:`~tinygrad_rnn.nn.JordanCell`, :class:`~tinygrad_rnn.nn.ElmanJordanCell`)
computes y_t from the output it gave at the step before. When there are targets d_t
for the outputs, training may feed back the *true* d_{t-1} instead (teacher forcing,
Williams & Zipser 1989, who named it; it is how Jordan 1986 trained his network), the
network's *own* y_{t-1} (free running), or, at every step and row independently, the
truth with probability r and its own output otherwise (scheduled sampling, Bengio,
Vinyals, Jaitly & Shazeer 2015, who lower r from 1 towards 0 as training goes):

    m_t          True: feed the truth at step t (drawn with probability r, or given)
    f_{t-1}    = d_{t-1} where m_t, else y_{t-1}        (d_{-1} = y_{-1}: the initial output)
    state_{t-1} <- state_{t-1} with its fed-back output replaced by f_{t-1}
    y_t        = cell(x_t, state_{t-1})

Teacher-forced, the fed-back output is known before the run: it is an *input*,
d_{t-1} riding beside x_t, and the whole sequence is one traced node
(:mod:`tinygrad_rnn.nn.trace_scan`) whose step does not read the previous output at
all (a Jordan cell then has no recurrence left). Mixed, the mask m_t rides in the
input too and the step picks with ``where``: still one traced node. Free running is
the cell itself. In every case the values and gradients are those of the plain
Python loop above (tests/test_output_fed.py holds them equal); in the mixed case
no gradient flows into y_{t-1} at the steps fed the truth.

A network trained only teacher-forced never sees its own mistakes fed back, so its
multi-step free-running forecasts can drift (exposure bias); examples/jordan_teacher_forcing.py
measures it.
"""
import numpy as np

from .. import backend, creation
from ..tensor import Tensor, not_a_tensor
from ..xp import concatenate, split, where
from .cells import RecurrentCell, check_state
from .module import Module
from .recurrent import check_lengths, unroll
from .trace_scan import named
from .variants import ElmanJordanCell, JordanCell, OutputFedCell


def teacher_mask(teacher_forcing, steps, batch, name="teacher_forcing"):
    """Where the truth is fed: a host bool array (steps, batch), True = the truth.

    ``teacher_forcing`` is a probability r in [0, 1] (each step of each row fed the truth
    with probability r, drawn from the generator behind ``tg.manual_seed``; 1 and 0 draw
    nothing), or a bool array or Tensor (steps, batch) giving the choice itself."""
    if isinstance(teacher_forcing, (bool, np.bool_)):
        raise TypeError(f"{name}: teacher_forcing must be a probability in [0, 1] or a bool mask of shape "
                        f"({steps}, {batch}), got the bool {teacher_forcing}")
    if isinstance(teacher_forcing, (int, float, np.integer, np.floating)):
        ratio = float(teacher_forcing)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{name}: teacher_forcing must be in [0, 1], got {teacher_forcing}")
        if ratio in (0.0, 1.0):
            return np.full((steps, batch), ratio == 1.0)
        return creation.default_generator().random((steps, batch)) < ratio
    mask = teacher_forcing.numpy() if isinstance(teacher_forcing, Tensor) else teacher_forcing
    if not isinstance(mask, np.ndarray) and not hasattr(mask, "__cuda_array_interface__"):
        raise TypeError(f"{name}: teacher_forcing must be a probability in [0, 1] or a bool mask of shape "
                        f"({steps}, {batch}), got a {type(teacher_forcing).__name__}")
    mask = backend.to_device(mask, "cpu")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name}: a teacher_forcing mask must be bool (True = feed the truth), got dtype {mask.dtype}")
    if mask.shape != (steps, batch):
        raise ValueError(f"{name}: the teacher_forcing mask has shape {mask.shape}, expected ({steps}, {batch}), "
                         "one choice per step and row")
    return mask


class TeacherForcedCell(RecurrentCell):
    """An output-fed ``cell`` driven by a given previous output: its input at step t is
    [x_t | d_{t-1}] (or [x_t | d_{t-1} | m_t] when ``mixed``), and its step feeds the cell
    d_{t-1} (where m_t, else the cell's own y_{t-1}) in place of y_{t-1}. It shares the
    cell's parameters and state; :func:`teacher_forced_unroll` builds its input."""

    def __init__(self, cell, mixed):
        if not isinstance(cell, OutputFedCell):
            raise TypeError(f"TeacherForcedCell: cell must be an output-fed cell (JordanCell, ElmanJordanCell), "
                            f"got {type(cell).__name__}")
        self.cell, self.mixed = cell, bool(mixed)
        self.fed_width = cell.output_size + (1 if self.mixed else 0)
        self.input_size = cell.input_size + self.fed_width
        self.hidden_size = cell.hidden_size
        self.state_names = cell.state_names

    def project(self, x):
        """The cell's projection of x, with the fed-back outputs (and mask) passed through."""
        x_in, fed = split(x, [self.cell.input_size, self.fed_width], axis=-1)
        return concatenate([self.cell.project(x_in), fed], axis=-1)

    def step(self, p, state):
        sizes = [p.shape[-1] - self.fed_width, self.cell.output_size] + ([1] if self.mixed else [])
        p_x, truth, *coin = split(p, sizes, axis=-1)
        fed = where(coin[0] > 0.5, truth, self.cell.fed_back(state)) if self.mixed else truth
        return self.cell.step(p_x, self.cell.with_fed_back(state, named(fed, "fed")))

    def initial_state(self, batch, like):
        return self.cell.initial_state(batch, like)

    def output(self, state):
        return self.cell.output(state)


def teacher_forced_unroll(cell, x, targets, teacher_forcing=1.0, state=None, lengths=None, per_step=False):
    """Run the output-fed ``cell`` over x (T, B, I), feeding back the targets (T, B, O) where
    ``teacher_forcing`` says (see :func:`teacher_mask`) and its own outputs elsewhere.
    Returns (outputs (T, B, O), final state), as :func:`~tinygrad_rnn.nn.unroll`: the
    target fed at step t is d_{t-1}, and at t = 0 the initial output (zeros when ``state``
    is None). ``lengths`` as for ``unroll``; ``per_step`` records one node per op and step."""
    name = "teacher_forced_unroll"
    if not isinstance(cell, OutputFedCell):
        raise TypeError(f"{name}: cell must be an output-fed cell (JordanCell, ElmanJordanCell), "
                        f"got {type(cell).__name__}")
    if not isinstance(x, Tensor):
        raise not_a_tensor(name, "x", x)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{name}: x must have shape (steps >= 1, batch, {cell.input_size}), got {x.shape}")
    steps, batch = x.shape[0], x.shape[1]
    state = check_state(cell, x[0], state)
    _check_targets(name, targets, (steps, batch, cell.output_size), x)
    use = teacher_mask(teacher_forcing, steps, batch, name)
    if not use.any():
        return unroll(cell, x, state, lengths, per_step=per_step)
    mixed = not use.all()
    previous = concatenate([cell.fed_back(state).unsqueeze(0), targets[:-1]], axis=0)
    pieces = [x, previous]
    if mixed:
        pieces.append(creation.tensor(use[..., None].astype(x.dtype), dtype=x.dtype, device=x.device))
    return unroll(TeacherForcedCell(cell, mixed), concatenate(pieces, axis=2), state, lengths, per_step=per_step)


def _check_targets(name, targets, shape, like):
    if not isinstance(targets, Tensor):
        raise not_a_tensor(name, f"targets (expected shape {shape})", targets)
    if targets.shape != shape:
        raise ValueError(f"{name}: targets has shape {targets.shape}, expected {shape} (steps, batch, output_size), "
                         "the true output of every step")
    if targets.dtype != like.dtype or targets.device != like.device:
        raise TypeError(f"{name}: targets are {targets.dtype.name} on {targets.device}, expected "
                        f"{like.dtype.name} on {like.device} like the input")


class Jordan(Module):
    """An output-fed recurrent layer (Jordan 1986), trained with teacher forcing,
    free running, or a mix (scheduled sampling); ``hidden_feedback=True`` adds the Elman
    recurrence h_{t-1} -> h_t (back projections, :class:`~tinygrad_rnn.nn.ElmanJordanCell`):

        h_t = tanh(x_t W_ih^T + b_ih [+ h_{t-1} W_hh^T] + f_{t-1} W_yh^T)
        y_t = act(h_t W_hy^T + b_hy)
        f_{t-1} = d_{t-1} (the target) where the truth is fed, else y_{t-1}

    See :mod:`tinygrad_rnn.nn.teacher_forcing` for when the truth is fed and why every
    case is one traced whole-sequence node.

    Args:
        input_size, hidden_size: features of x_t and of h_t.
        output_size: features of y_t (default hidden_size).
        bias: with ``bias_ih`` and ``bias_hy`` (default True).
        output_nonlinearity: "tanh" (default) or "identity".
        hidden_feedback: also feed h_{t-1} back (an ElmanJordanCell; default False, a JordanCell).
        batch_first: input, output, targets and mask are (B, T, ...) instead of (T, B, ...).
        per_step: record every step's ops as graph nodes of their own.
        device, dtype: of the parameters.
    Inputs: ``input``; ``hx`` (optional initial state: y_0, or (h_0, y_0) with hidden_feedback,
    each part (1, B, ·); zeros when None); ``targets`` (optional: the true outputs d_t; without
    them the layer runs free); ``teacher_forcing`` (a probability in [0, 1], default 1: always
    the truth; or a bool mask, True where the truth is fed); ``lengths`` (optional, B ints, as
    for :class:`~tinygrad_rnn.nn.LSTM`).
    Outputs: ``(output, h_n)``: every y_t, and the final state (each part (1, B, ·)).
    Shape: input (T, B, I) (or (B, T, I) with batch_first, or (T, I) unbatched); targets and
        output (T, B, O) likewise; mask (T, B) (or (B, T), or (T,)).
    Parameters: those of the cell with the suffix ``_l0``, as :class:`~tinygrad_rnn.nn.Recurrent`
        names them: ``weight_ih_l0`` (H, I), [``weight_hh_l0`` (H, H)], ``weight_yh_l0`` (H, O),
        ``weight_hy_l0`` (O, H), ``bias_ih_l0`` (H), ``bias_hy_l0`` (O).

    Example::

        net = nn.Jordan(1, 8, output_size=1, output_nonlinearity="identity")
        x, d = tg.randn(20, 4, 1), tg.randn(20, 4, 1)
        y, y_n = net(x, targets=d)                          # teacher forcing: (20, 4, 1), (1, 4, 1)
        y, _ = net(x, targets=d, teacher_forcing=0.25)      # the truth at a quarter of the steps
        y, _ = net(x)                                       # free running
    """

    def __init__(self, input_size, hidden_size, output_size=None, bias=True, output_nonlinearity="tanh",
                 hidden_feedback=False, batch_first=False, *, per_step=False, device=None, dtype=None):
        make = ElmanJordanCell if hidden_feedback else JordanCell
        cell = make(input_size, hidden_size, output_size, bias, output_nonlinearity, device=device, dtype=dtype)
        self.input_size, self.hidden_size, self.output_size = cell.input_size, cell.hidden_size, cell.output_size
        self.hidden_feedback, self.batch_first, self.per_step = hidden_feedback, batch_first, per_step
        self._cells = [cell]                # not a sub-module: its parameters are registered below
        for pname, p in cell.named_parameters():
            setattr(self, f"{pname}_l0", p)

    @property
    def cell(self):
        """The JordanCell (or ElmanJordanCell) that holds this layer's parameters."""
        return self._cells[0]

    def extra_repr(self):
        options = [f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}"]
        if self.cell.output_nonlinearity != "tanh":
            options.append(f"output_nonlinearity={self.cell.output_nonlinearity!r}")
        for key in ("hidden_feedback", "batch_first"):
            if getattr(self, key):
                options.append(f"{key}=True")
        return ", ".join(options)

    def forward(self, input, hx=None, targets=None, teacher_forcing=1.0, lengths=None):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise not_a_tensor(name, "input", input)
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(batch, seq, feature)" if self.batch_first else "(seq, batch, feature)"
            raise ValueError(f"{name}: input has shape {input.shape}, expected 3 dims {layout} or 2 (seq, feature) "
                             f"with {self.input_size} features")
        if targets is None and not _always_the_truth(teacher_forcing):
            raise ValueError(f"{name}: teacher_forcing={teacher_forcing!r} needs targets (the true outputs to feed)")
        unbatched = input.ndim == 2
        if unbatched:               # a batch of one: (T, ...) -> (T, 1, ...); hx parts (1, .) -> (1, 1, .)
            input, targets, teacher_forcing = (_batch_of_one(v) for v in (input, targets, teacher_forcing))
            hx = None if hx is None else _map_parts(hx, _batch_of_one)
        elif self.batch_first:
            input, targets, teacher_forcing = (_swap_time_and_batch(v) for v in (input, targets, teacher_forcing))
        if input.shape[0] == 0:
            raise ValueError(f"{name}: input has no time steps; expected at least one")
        state = self._initial_state(hx, name)
        lengths = check_lengths(lengths, input.shape[0], input.shape[1], name)
        if targets is None:
            out, final = unroll(self.cell, input, state, lengths, per_step=self.per_step)
        else:
            out, final = teacher_forced_unroll(self.cell, input, targets, teacher_forcing, state, lengths,
                                               self.per_step)
        if unbatched:               # PyTorch's unbatched shapes: output (T, O), h_n parts (1, .)
            return out.squeeze(1), final
        return (out.swapaxes(0, 1) if self.batch_first else out), _map_parts(final, lambda p: p.unsqueeze(0))

    def _initial_state(self, hx, name):
        """The cell's state from hx, each part (1, B, .), or None."""
        if hx is None:
            return None
        parts = hx if isinstance(hx, tuple) else (hx,)
        several = len(self.cell.state_names) > 1
        if len(parts) != len(self.cell.state_names) or isinstance(hx, tuple) != several:
            raise ValueError(f"{name}: hx must be {'a tuple (h_0, y_0)' if several else 'y_0, one Tensor'}, "
                             f"got {f'a tuple of {len(parts)}' if isinstance(hx, tuple) else 'one Tensor'}")
        for i, part in enumerate(parts):
            if not isinstance(part, Tensor):
                raise not_a_tensor(name, f"hx part {i}", part)
            if part.ndim != 3 or part.shape[0] != 1:
                raise ValueError(f"{name}: hx part {i} has shape {part.shape}, expected (1, batch, size) "
                                 "(one layer, one direction)")
        return _map_parts(hx, lambda p: p.squeeze(0))


def _always_the_truth(teacher_forcing):
    return (isinstance(teacher_forcing, (int, float, np.integer, np.floating))
            and not isinstance(teacher_forcing, (bool, np.bool_)) and teacher_forcing == 1.0)


def _batch_of_one(value):
    """A (T, ...) tensor or (T,) mask with a batch axis of one after time; numbers and None as they are."""
    if isinstance(value, Tensor):
        return value.unsqueeze(1)
    return value[:, None] if isinstance(value, np.ndarray) and value.ndim >= 1 else value


def _swap_time_and_batch(value):
    """A (B, T, ...) tensor or (B, T) mask as (T, B, ...); numbers and None as they are."""
    if isinstance(value, Tensor) or (isinstance(value, np.ndarray) and value.ndim >= 2):
        return value.swapaxes(0, 1)
    return value


def _map_parts(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)
