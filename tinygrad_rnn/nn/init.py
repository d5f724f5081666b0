"""Initialisers: fill a tensor in place (outside the graph) and return it.

Draws come from tinygrad_rnn's generator (``tg.manual_seed``), made on the host so
that a seed gives the same weights on every device. Fans follow PyTorch: for a
(out, in) weight, fan_in = in and fan_out = out.
"""
import math

import numpy as np

from .. import backend
from ..creation import default_generator


def _fill(tensor, values):
    tensor.data = backend.to_device(np.asarray(values, dtype=tensor.dtype).reshape(tensor.shape), tensor.device)
    return tensor


def _fans(tensor, name):
    if tensor.ndim < 2:
        raise ValueError(f"{name}: fans need a tensor of at least 2 dims, got shape {tensor.shape}")
    receptive = int(np.prod(tensor.shape[2:]))
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """U(a, b)."""
    if a > b:
        raise ValueError(f"uniform_: a ({a}) must not exceed b ({b})")
    return _fill(tensor, (generator or default_generator()).uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """N(mean, std^2)."""
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    return _fill(tensor, (generator or default_generator()).normal(mean, std, tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def eye_(tensor):
    """The identity (2-D only); with ``IRNN`` init (Le et al. 2015) it starts a ReLU RNN as a memory."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: needs a 2-D tensor, got shape {tensor.shape}")
    return _fill(tensor, np.eye(*tensor.shape))


def orthogonal_(tensor, gain=1.0, blocks=1, generator=None):
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian one
    (Saxe et al. 2014), times ``gain``. With ``blocks = k`` the rows are cut into k
    equal blocks (the gates of a recurrent weight) and each is orthogonal on its own."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dims, got shape {tensor.shape}")
    rows, cols = tensor.shape[0], int(np.prod(tensor.shape[1:]))
    if rows % blocks:
        raise ValueError(f"orthogonal_: {rows} rows do not split into {blocks} equal blocks")
    rng = generator or default_generator()
    parts = [_orthogonal(rows // blocks, cols, rng) for _ in range(blocks)]
    return _fill(tensor, gain * np.concatenate(parts, axis=0))


def _orthogonal(rows, cols, rng):
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))        # makes the draw uniform over orthogonal matrices
    return q if rows >= cols else q.T


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = _fans(tensor, "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2) with std = gain sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def calculate_gain(nonlinearity, param=None):
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0)}
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in gains:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; "
                         f"expected one of {sorted(gains) + ['leaky_relu']}")
    return gains[nonlinearity]


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b) with b = gain sqrt(3 / fan) (He et al. 2015)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor, "kaiming_uniform_")
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def lstm_forget_bias_(module, value=1.0):
    """Set the forget-gate bias of every LSTM cell in ``module`` to ``value`` (split as
    b_ih = value, b_hh = 0 on the f rows). A positive forget bias lets gradients flow
    through the cell state from the start (Gers et al. 2000; Jozefowicz et al. 2015)."""
    hidden = getattr(module, "hidden_size", None)
    found = False
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith(("bias_ih", "bias_hh")):
            if hidden is None or p.shape != (4 * hidden,):
                raise ValueError(f"lstm_forget_bias_: {name} has shape {p.shape}, expected (4 * hidden_size,) "
                                 "of an LSTM")
            rows = np.asarray(backend.to_device(p.data, "cpu")).copy()
            rows[hidden:2 * hidden] = value if leaf.startswith("bias_ih") else 0.0
            _fill(p, rows)
            found = True
    if not found:
        raise ValueError(f"lstm_forget_bias_: {type(module).__name__} has no LSTM biases")
    return module


def irnn_(module, gain=1.0, input_std=1e-3, generator=None):
    """IRNN initialisation (Le, Jaitly & Hinton 2015) of a ReLU RNN: recurrent weights
    ``gain * I``, biases 0, input weights N(0, input_std^2)."""
    found = False
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("weight_hh"):
            eye_(p)
            p.data = p.data * gain
            found = True
        elif leaf.startswith("weight_ih"):
            normal_(p, 0.0, input_std, generator)
        elif leaf.startswith("bias"):
            zeros_(p)
    if not found:
        raise ValueError(f"irnn_: {type(module).__name__} has no weight_hh parameters")
    return module
