"""Conditioning a recurrent layer on one fixed vector c: at every step, as the initial state, or both.

Goodfellow, Bengio & Courville (2016, *Deep Learning* §10.2.4) give three ways to make a
sequence depend on a single vector c (an image's features, the summary of a source
sentence): c as an extra input at every step, c as the initial state h_0, or both.

**At every step.** Concatenating c onto every x_t gives the same pre-activations as adding
c W_ctx^T to every step's projected input, since a matmul splits over the columns it reads:

    [x_t ; c] [W_ih | W_ctx]^T  =  x_t W_ih^T + c W_ctx^T

So a layer built with ``context_size=C`` owns W_ctx (G*H, C) per layer and direction, projects
the context once per call, one (B, C) x (C, G*H) matmul, and adds the (B, G*H) result q to the
projection of all T steps (broadcast over time). Nothing is concatenated per step, and each
layer and direction stays one whole-sequence node: the cell's hand-tuned kernel, which adds q
where it projects the inputs, or the traced step, where q is a loop-invariant input of
``project``. :class:`ContextCell` is a cell with q added, made for one call.

**As the initial state.** :class:`InitialState` maps c to the layer's ``hx``,
h_0 = tanh(c W^T + b) for every layer and direction, as the decoder of Cho et al. (2014,
"Learning phrase representations using RNN encoder-decoder") starts from h'_0 = tanh(V' c).

**Both.** Give the layer ``hx=InitialState(...)(c)`` and ``context=c``.
"""
from .. import creation
from ..function import no_grad
from ..tensor import Tensor, not_a_tensor
from .cells import RecurrentCell, check_size
from .kernels import PROJECTED_CONTEXT
from .layers import Linear


class ContextCell(RecurrentCell):
    """``cell`` with a projected context q (B, P) added to its projected input at every step:
    ``project(x) = cell.project(x) + q`` for x (T, B, I) or (B, I); the step, the state and the
    output are the cell's own. A layer makes one per call; it holds no parameters of its own.

    It runs as one whole-sequence node through the cell's kernel when the kernel adds a
    projected context itself (``takes_context``, as the built-in RNN, LSTM and GRU kernels
    do), else through the traced step."""

    def __init__(self, cell, projected):
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"ContextCell: cell must be a RecurrentCell, got {type(cell).__name__}")
        self.cell, self.projected = cell, projected
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.state_names = cell.state_names
        inner = cell.kernel
        self.kernel = _ContextKernel(inner) if getattr(inner, "takes_context", False) else None

    def project(self, x):
        return self.cell.project(x) + self.projected

    def step(self, p, state):
        return self.cell.step(p, state)

    def initial_state(self, batch, like):
        return self.cell.initial_state(batch, like)

    def output(self, state):
        return self.cell.output(state)


class _ContextKernel:
    """A cell's hand-tuned kernel given the projected context as one more parameter (its
    ``PROJECTED_CONTEXT``), which the kernel adds to every step's projected input."""

    def __init__(self, kernel):
        self.kernel = kernel

    def parameters(self, cell):
        return list(self.kernel.parameters(cell.cell)) + [(PROJECTED_CONTEXT, cell.projected)]

    def forward(self, ctx, cell, x, parts, params, valid):
        return self.kernel.forward(ctx, cell.cell, x, parts, params, valid)

    def backward(self, ctx, d_out, d_final, need_x, need_parts, need_params):
        return self.kernel.backward(ctx, d_out, d_final, need_x, need_parts, need_params)


def projected_width(cell, input_size, owner):
    """P, the features of ``cell.project`` for inputs of ``input_size`` features (G*H for a gated
    cell): the rows a context weight needs. Found by projecting one zero input."""
    like = next(iter(cell.parameters()), None)
    dtype, device = (like.dtype, like.device) if like is not None else (None, "cpu")
    with no_grad():
        p = cell.project(creation.zeros(1, 1, input_size, dtype=dtype, device=device))
    if not isinstance(p, Tensor) or p.ndim != 3 or p.shape[:2] != (1, 1):
        raise ValueError(f"{owner}: context_size needs the cell's project to map (T, B, {input_size}) to "
                         f"(T, B, P), got {getattr(p, 'shape', type(p).__name__)} for (1, 1, {input_size})")
    return p.shape[2]


def check_context(owner, context, context_size, x, unbatched=False):
    """The context as (B, C) for a time-major input x (T, B, I), or None when the layer has no
    context_size; errors name what was wrong. ``unbatched``: x came as (T, I) and the context
    as (C,)."""
    if context_size is None:
        if context is not None:
            raise ValueError(f"{owner}: context was given but the layer was built without context_size; build it "
                             "with context_size=C to condition it on a (batch, C) vector")
        return None
    if context is None:
        raise ValueError(f"{owner}: the layer was built with context_size={context_size}, so every call needs "
                         f"context= of shape {'(' if unbatched else '(batch, '}{context_size})")
    if not isinstance(context, Tensor):
        raise not_a_tensor(owner, "context", context)
    expected = (context_size,) if unbatched else (x.shape[1], context_size)
    if context.shape != expected:
        layout = "(context_size,) for an unbatched input" if unbatched else "(batch, context_size)"
        raise ValueError(f"{owner}: context has shape {context.shape}, expected {expected} {layout}")
    if context.dtype != x.dtype:
        raise TypeError(f"{owner}: context is {context.dtype.name}, expected {x.dtype.name} like the input")
    if context.device != x.device:
        raise ValueError(f"{owner}: context is on {context.device}, the input on {x.device}")
    return context.unsqueeze(0) if unbatched else context


class InitialState(Linear):
    """A context vector mapped to a recurrent layer's initial state, for conditioning on c
    through h_0 (Goodfellow et al. 2016 §10.2.4; Cho et al. 2014 start their decoder from
    h'_0 = tanh(V' c)):

        h_0^{(k, d)} = tanh(c W_{k,d}^T + b_{k,d})    for every layer k and direction d
                                                    (and every state part: the LSTM's c_0 likewise)

    Args:
        context_size: C.  hidden_size: H of the layer.
        num_layers, bidirectional: of the layer (defaults 1, False).
        state_parts: parts of the cell's state (1; 2 for an LSTM's (h, c)).
        bias: with b (default True).  device, dtype: of the parameters.
    Shape: context (B, C) -> hx (num_layers*D, B, H), or a tuple of ``state_parts`` of them.
    Parameters: ``weight`` (state_parts*num_layers*D*H, C), ``bias``, U(-1/sqrt(C), 1/sqrt(C)) as Linear.

    Example::

        lstm = nn.LSTM(3, 8, num_layers=2, context_size=5)
        to_state = nn.InitialState(5, 8, num_layers=2, state_parts=2)
        c = tg.randn(4, 5)
        out, (h_n, c_n) = lstm(tg.randn(6, 4, 3), to_state(c), context=c)     # both ways at once
    """

    def __init__(self, context_size, hidden_size, num_layers=1, bidirectional=False, state_parts=1, bias=True, *,
                 device=None, dtype=None):
        name = type(self).__name__
        self.context_size = check_size(name, "context_size", context_size)
        self.hidden_size = check_size(name, "hidden_size", hidden_size)
        self.num_layers = check_size(name, "num_layers", num_layers)
        self.state_parts = check_size(name, "state_parts", state_parts)
        self.bidirectional = bool(bidirectional)
        self.count = self.num_layers * (2 if self.bidirectional else 1)
        super().__init__(self.context_size, self.state_parts * self.count * self.hidden_size, bias,
                         device=device, dtype=dtype)

    def forward(self, context):
        if not isinstance(context, Tensor):
            raise not_a_tensor(type(self).__name__, "context", context)
        if context.ndim != 2 or context.shape[1] != self.context_size:
            raise ValueError(f"{type(self).__name__}: context has shape {context.shape}, expected "
                             f"(batch, {self.context_size})")
        states = super().forward(context).tanh().reshape(context.shape[0], self.state_parts, self.count,
                                                         self.hidden_size)
        parts = tuple(states[:, s].swapaxes(0, 1) for s in range(self.state_parts))
        return parts if self.state_parts > 1 else parts[0]

    def extra_repr(self):
        options = [f"{self.context_size}, {self.hidden_size}"]
        for key, default in (("num_layers", 1), ("bidirectional", False), ("state_parts", 1)):
            if getattr(self, key) != default:
                options.append(f"{key}={getattr(self, key)}")
        return ", ".join(options + ([] if self.bias is not None else ["bias=False"]))
