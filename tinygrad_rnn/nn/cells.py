"""Recurrent cells: one time step as graph ops, with the state carried by the caller.

A cell splits its step in two so that a layer can batch the input side:
``project(x)`` maps inputs of any number of leading dims (all T steps at once,
one matmul) and ``step(p, state)`` does the recurrent part of one step. Writing
a new cell means subclassing :class:`RecurrentCell` and defining ``step`` (and
``project``, ``initial_state`` and ``output`` where the defaults do not fit);
:class:`tinygrad_rnn.nn.Recurrent` then runs it with every option of the
built-in layers (layers, directions, lengths, dropout, batch_first), all T steps
as one node traced from ``step`` (:mod:`tinygrad_rnn.nn.trace_scan`).

The built-in cells live one per file, each with its equations, its composed step
and its hand-tuned kernel: :mod:`~tinygrad_rnn.nn.rnn`, :mod:`~tinygrad_rnn.nn.lstm`,
:mod:`~tinygrad_rnn.nn.gru`. This module holds what they and new cells share.
"""
import math

from .. import creation
from ..function import is_recording
from ..tensor import Tensor, not_a_tensor
from ..xp import split
from . import init
from .module import Module, Parameter, check_size  # noqa: F401 (check_size is imported from here too)
from . import trace_scan
from .trace_scan import named


def project_input(x, weight, bias=None):
    """x W^T + b for x of shape (*, I): one (N, I) x (I, G*H) matmul over all leading dims."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features, expected {weight.shape[1]}")
    flat = x.reshape(-1, x.shape[-1]) @ weight.T
    if bias is not None:
        flat = flat + bias
    return flat.reshape(x.shape[:-1] + (weight.shape[0],))


def uniform_parameter(shape, hidden_size, device, dtype):
    """A parameter drawn from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for recurrent weights."""
    bound = 1.0 / math.sqrt(hidden_size)
    return Parameter(init.uniform_(creation.zeros(*shape, dtype=dtype, device=device or "cpu"), -bound, bound))


class GateLayout:
    """The gates of a cell in the order their rows are stacked in its weights, and the
    activation of each: the one place a cell names its layout.

    ``GateLayout(i="sigmoid", f="sigmoid", g="tanh", o="sigmoid")`` is the LSTM's
    i | f | g | o. ``split(z)`` cuts the last axis of z (B, G*H) into the G gate blocks;
    ``activate(z)`` also applies each gate's activation and names the result after
    the gate (:func:`~tinygrad_rnn.nn.trace_scan.named`), which is how the study
    tools find gate values; ``rows(name, H)`` is a gate's slice of the G*H rows, for kernels.
    """

    def __init__(self, **activations):
        for name, act in activations.items():
            if act not in ("sigmoid", "tanh"):
                raise ValueError(f"GateLayout: gate {name!r} has activation {act!r}, expected 'sigmoid' or 'tanh'")
        self.names = tuple(activations)
        self.activations = dict(activations)

    def __len__(self):
        return len(self.names)

    def split(self, z):
        """The gate blocks of z (..., G*H), in layout order."""
        return split(z, z.shape[-1] // len(self.names), axis=-1)

    def activate(self, z):
        """Each gate block of z through its activation, named after its gate."""
        return tuple(named(block.sigmoid() if self.activations[name] == "sigmoid" else block.tanh(), name)
                     for name, block in zip(self.names, self.split(z)))

    def rows(self, name, hidden_size):
        """The slice of the G*H stacked rows that belongs to gate ``name``."""
        k = self.names.index(name)
        return slice(k * hidden_size, (k + 1) * hidden_size)

    def sigmoid_rows(self, hidden_size):
        """The slices of the rows whose gate is a sigmoid."""
        return [self.rows(name, hidden_size) for name in self.names if self.activations[name] == "sigmoid"]


class RecurrentCell(Module):
    """Base class of cells. State: a Tensor (B, H), or a tuple of them.

    A subclass may set ``kernel`` to a hand-tuned whole-sequence form of its step
    (:class:`tinygrad_rnn.nn.trace_scan.Kernel`); without one, sequences run as the
    traced step. ``state_names`` names the parts of the state (``("h", "c")``)."""

    input_size = hidden_size = None
    kernel = None
    state_names = ("h",)        # a name per state part, for the study tools
    _CACHES = ("_kernel_program", "_kernel_plans", "_last_trace")   # kept for speed, rebuilt on demand

    def __getstate__(self):
        """The cell's attributes without what it keeps between calls for speed (kernel buffers,
        its last traced program): a copy (``copy.deepcopy``) starts without them."""
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHES}

    def project(self, x):
        """The input side of the step for inputs (*, input_size); the identity by default."""
        return x

    def step(self, p, state):
        """The new state from the projected input ``p`` (B, ...) and ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must define step(p, state)")

    def initial_state(self, batch, like):
        """Zeros of shape (batch, hidden_size) on ``like``'s device and dtype, one per name in
        ``state_names`` (a tuple when there are several)."""
        zeros = creation.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device)
        return zeros if len(self.state_names) == 1 else (zeros,) * len(self.state_names)

    def output(self, state):
        """What the layer outputs at each step: the state itself, or its first part."""
        return state[0] if isinstance(state, tuple) else state

    def forward(self, x, state=None):
        """One step on x (B, input_size) or (input_size,); returns the new state. A cell with a
        kernel runs it over one step (one graph node), except inside a step being traced (a
        decoder step calling its cells), where the tracer must see the composed step's ops."""
        if not isinstance(x, Tensor):
            raise not_a_tensor(type(self).__name__, "input", x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has shape {x.shape}, expected "
                             f"(batch, {self.input_size}) or ({self.input_size},)")
        unbatched = x.ndim == 1
        if unbatched:
            x = x.reshape(1, -1)
            if state is not None:
                _checked_parts(self, state)
                state = _map_state(state, lambda s: s.reshape(1, -1))
        state = check_state(self, x, state)
        if self.kernel is not None and not is_recording():   # the kernel over one step: one node per call
            _, new = trace_scan.scan(self, x.reshape((1,) + x.shape), state, None)
        else:
            new = self.step(self.project(x), state)
        return _map_state(new, lambda s: s.reshape(-1)) if unbatched else new


def check_state(cell, x, state, name=None, batch=None):
    """The state to start from: the cell's initial state when None, else ``state`` checked
    against it (a Tensor or a tuple like it, each part of its shape, dtype and device), after
    checking that x is a floating tensor of the cell's parameters' dtype. x: (B, ...), or any
    shape when ``batch`` gives B."""
    name = name or type(cell).__name__
    batch = x.shape[0] if batch is None else batch
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: input has dtype {x.dtype.name}, expected a floating dtype (convert with .float())")
    for pname, p in cell.named_parameters():
        if p.dtype != x.dtype:
            raise TypeError(f"{name}: input is {x.dtype.name} but parameter {pname} is {p.dtype.name}; convert "
                            f"one of them (x.astype(...), or module.to(dtype=...)) so that they match")
    reference = cell.initial_state(batch, x)
    if state is None:
        return reference
    given, expected = _checked_parts(cell, state, name), _parts(reference)
    if isinstance(state, tuple) != isinstance(reference, tuple) or len(given) != len(expected):
        kind = f"a tuple of {len(expected)} tensors" if isinstance(reference, tuple) else "a Tensor"
        got = f"a tuple of {len(given)}" if isinstance(state, tuple) else "a Tensor"
        raise ValueError(f"{name}: the state must be {kind}, like initial_state gives, got {got}")
    for i, (s, r) in enumerate(zip(given, expected)):
        if s.shape != r.shape or s.dtype != r.dtype or s.device != r.device:
            raise ValueError(f"{name}: state part {i} is {s.shape} {s.dtype.name} on {s.device}, expected "
                             f"{r.shape} {r.dtype.name} on {r.device} (batch {batch}, like the input)")
    return state


def _checked_parts(cell, state, name=None):
    parts = _parts(state)
    for i, s in enumerate(parts):
        if not isinstance(s, Tensor):
            raise not_a_tensor(name or type(cell).__name__, f"state part {i}", s)
    return parts


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _map_state(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


class GatedCell(RecurrentCell):
    """A cell with ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H) and optional ``bias_ih``,
    ``bias_hh`` (G*H) for the G gates of ``gates`` (a :class:`GateLayout`), PyTorch's
    parameter names. ``fused=True`` runs sequences through the class's hand-tuned
    kernel, when it has one and ``step`` and ``project`` are the class's own."""

    gates = GateLayout(h="tanh")
    own_kernel = None

    def __init__(self, input_size, hidden_size, bias=True, fused=True, *, device=None, dtype=None):
        name = type(self).__name__
        input_size = check_size(name, "input_size", input_size)
        hidden_size = check_size(name, "hidden_size", hidden_size)
        self.input_size, self.hidden_size, self.fused = input_size, hidden_size, fused
        rows = len(self.gates) * hidden_size
        self.weight_ih = uniform_parameter((rows, input_size), hidden_size, device, dtype)
        self.weight_hh = uniform_parameter((rows, hidden_size), hidden_size, device, dtype)
        self.bias_ih = uniform_parameter((rows,), hidden_size, device, dtype) if bias else None
        self.bias_hh = uniform_parameter((rows,), hidden_size, device, dtype) if bias else None

    @property
    def kernel(self):
        """The hand-tuned kernel, where it computes exactly this cell's step: ``fused`` and
        neither ``step`` nor ``project`` overridden below the class that defines the kernel."""
        owner = next((c for c in type(self).__mro__ if "own_kernel" in vars(c)), None)
        if (not self.fused or self.own_kernel is None or type(self).step is not owner.step
                or type(self).project is not owner.project):
            return None
        return self.own_kernel

    def _folded_bias(self):
        return None if self.bias_ih is None else self.bias_ih + self.bias_hh

    def project(self, x):
        """x W_ih^T + b_ih + b_hh: both biases fold into the input side."""
        return project_input(x, self.weight_ih, self._folded_bias())

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")
