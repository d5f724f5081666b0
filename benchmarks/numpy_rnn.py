"""One training step of a single-layer RNN, LSTM or GRU, written out by hand in NumPy.

This is the reference the benchmark measures tinygrad_rnn against: the same
computation with no graph, no Tensor objects and no per-op bookkeeping, so its
time is about the limit any NumPy framework can reach. It also serves the tests
as a second, independent implementation of PyTorch's equations.

The step: for x (T, B, I) and a fixed weight v (B, H),

    loss = sum(h_T * v)

where h_T is the last hidden state of the layer started from zero state. The
gradients of the loss with respect to x and every parameter are computed by
backpropagation through time (BPTT).

How it stays fast:

* the input projections of all T steps are ONE matmul (T*B, I) x (I, G*H);
* each step forward does one (B, H) x (H, G*H) matmul and a few in-place
  elementwise ufuncs on preallocated buffers (``out=``), nothing else;
* the local derivatives of the gates are computed after the forward pass for
  all steps at once (a few large vectorised ufuncs), so each step backward is
  one (B, G*H) x (G*H, H) matmul for dh and a handful of small multiplies;
* the gradients of W_ih, W_hh, the biases and x are one matmul (or one sum)
  each over all T*B rows at the end;
* sigmoid(a) = 0.5 * tanh(a / 2) + 0.5, so halving the rows of the weights
  that feed sigmoid gates lets ONE tanh call activate every gate of a step.

Parameters are a dict with PyTorch's names (``weight_ih_l0`` (G*H, I),
``weight_hh_l0`` (G*H, H), ``bias_ih_l0``, ``bias_hh_l0`` (G*H)), as in the
``state_dict`` of ``tinygrad_rnn.nn.LSTM`` or ``torch.nn.LSTM``; the gradients
come back under the same names plus ``"x"``. All arrays keep the dtype of x.

Use ``train_step(kind, x, params, v)`` for one step, or ``FORWARD[kind]`` and
``BACKWARD[kind]`` to time the two passes apart.
"""
import numpy as np

NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _weights(params, dtype):
    """W_ih, W_hh, b_ih, b_hh as arrays of ``dtype`` (no copy when they already are)."""
    return [np.asarray(params[name], dtype=dtype) for name in NAMES]


def _gate_rows(a, order):
    """Reorder the gate blocks (first axis, G blocks of H rows) of a weight or bias."""
    return a.reshape(len(order), -1, *a.shape[1:])[list(order)].reshape(a.shape)


# ---------------------------------------------------------------------------------------------
# Elman RNN:  h_t = act(a_t),  a_t = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T,  act = tanh or relu
#
# BPTT:  da_t = (dh_t + da_{t+1} W_hh) * act'(a_t),  with act'= 1 - h_t^2 (tanh) or [h_t > 0] (relu)
#        dW_ih = sum_t da_t^T x_t,  dW_hh = sum_t da_t^T h_{t-1},  db_ih = db_hh = sum_t da_t,
#        dx_t = da_t W_ih
# ---------------------------------------------------------------------------------------------

def rnn_forward(x, params, nonlinearity="tanh"):
    """h_T (B, H) and what the backward pass needs."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    steps, batch, _ = x.shape
    w_ih, w_hh, b_ih, b_hh = _weights(params, x.dtype)
    hidden = w_hh.shape[1]
    hs = np.empty((steps + 1, batch, hidden), x.dtype)          # hs[0] = h_0 = 0, hs[t + 1] = h_t
    hs[0] = 0
    np.matmul(x.reshape(steps * batch, -1), w_ih.T, out=hs[1:].reshape(steps * batch, hidden))
    hs[1:] += b_ih + b_hh                                       # every x_t W_ih^T + b, in one matmul
    w_t = np.ascontiguousarray(w_hh.T)
    rec = np.empty((batch, hidden), x.dtype)
    act = np.tanh if nonlinearity == "tanh" else (lambda a, out: np.maximum(a, 0, out=out))
    for t in range(steps):
        h = hs[t + 1]
        np.matmul(hs[t], w_t, out=rec)
        h += rec
        act(h, out=h)
    return hs[steps], (x, w_ih, w_hh, hs, nonlinearity)


def rnn_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T."""
    x, w_ih, w_hh, hs, nonlinearity = cache
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    if nonlinearity == "tanh":                                   # act'(a_t) for all t at once
        da = 1 - hs[1:] * hs[1:]
    else:
        da = (hs[1:] > 0).astype(x.dtype)
    dh = dh.astype(x.dtype, copy=True)
    for t in range(steps - 1, -1, -1):
        d = da[t]
        d *= dh                                                 # da_t
        if t:
            np.matmul(d, w_hh, out=dh)                          # dh_{t-1} (only the recurrence feeds it)
    da = da.reshape(steps * batch, hidden)
    grads = _input_grads(x, w_ih, da)
    return {**grads, **_recurrent_grads(hs, da, grads["bias_ih_l0"])}


def _input_grads(x, w_ih, d):
    """Gradients of x, W_ih and b_ih from d = dL/d(x W_ih^T + b_ih) of all steps, (T*B, G*H)."""
    steps, batch, _ = x.shape
    return {"x": (d @ w_ih).reshape(x.shape),
            "weight_ih_l0": d.T @ x.reshape(steps * batch, -1),
            "bias_ih_l0": d.sum(axis=0)}


def _recurrent_grads(hs, d, bias_grad=None):
    """Gradients of W_hh and b_hh from d = dL/d(h_{t-1} W_hh^T + b_hh) of all steps, (T*B, G*H).
    ``bias_grad``: the sum of d when the caller has it already (both biases sit in one sum)."""
    return {"weight_hh_l0": d.T @ hs[:-1].reshape(d.shape[0], -1),
            "bias_hh_l0": d.sum(axis=0) if bias_grad is None else bias_grad.copy()}


# ---------------------------------------------------------------------------------------------
# LSTM, PyTorch's gate order i | f | g | o:
#   z = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T;   i, f, o = sigmoid(z_i, z_f, z_o),  g = tanh(z_g)
#   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
#
# BPTT, with dh_t and dc_t the gradients reaching h_t and c_t:
#   dc_t  += dh_t * o * (1 - tanh(c_t)^2)
#   dz_o   = dh_t * tanh(c_t) * o (1 - o)      dz_i = dc_t * g * i (1 - i)
#   dz_f   = dc_t * c_{t-1} * f (1 - f)        dz_g = dc_t * i * (1 - g^2)
#   dc_{t-1} = dc_t * f,   dh_{t-1} = dz W_hh
#
# Inside, the gate blocks are stored o | i | f | g: the sigmoid gates (o, i, f) are then
# contiguous for the forward and the gates driven by dc (i, f, g) contiguous for the backward.
# ---------------------------------------------------------------------------------------------

LSTM_ORDER = (3, 0, 1, 2)          # internal block k holds PyTorch's block LSTM_ORDER[k]
LSTM_BACK = (1, 2, 3, 0)           # and back


def lstm_forward(x, params):
    """h_T (B, H) and what the backward pass needs."""
    steps, batch, _ = x.shape
    w_ih, w_hh, b_ih, b_hh = (_gate_rows(a, LSTM_ORDER) for a in _weights(params, x.dtype))
    hidden = w_hh.shape[1]
    scale = np.repeat(np.array([0.5, 0.5, 0.5, 1.0], x.dtype), hidden)   # halve the sigmoid rows
    # all input projections in one matmul; gates[t] (B, 4, H) becomes the activated o, i, f, g
    gates = (x.reshape(steps * batch, -1) @ (w_ih * scale[:, None]).T).reshape(steps, batch, 4, hidden)
    gates += ((b_ih + b_hh) * scale).reshape(4, hidden)
    w_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    hs = np.zeros((steps + 1, batch, hidden), x.dtype)          # hs[t + 1] = h_t, cs likewise
    cs = np.zeros((steps + 1, batch, hidden), x.dtype)
    tanh_c = np.empty((steps, batch, hidden), x.dtype)
    rec = np.empty((batch, 4 * hidden), x.dtype)
    ig = np.empty((batch, hidden), x.dtype)
    for t in range(steps):
        z = gates[t]
        z2 = z.reshape(batch, 4 * hidden)
        np.matmul(hs[t], w_t, out=rec)
        z2 += rec
        np.tanh(z2, out=z2)                                     # tanh(z_g), tanh(z/2) for the others
        s = z[:, :3]
        s *= 0.5
        s += 0.5                                                # o, i, f = sigmoid(z)
        np.multiply(z[:, 2], cs[t], out=cs[t + 1])
        np.multiply(z[:, 1], z[:, 3], out=ig)
        cs[t + 1] += ig                                         # c_t = f c_{t-1} + i g
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(z[:, 0], tanh_c[t], out=hs[t + 1])          # h_t = o tanh(c_t)
    return hs[steps], (x, w_ih, w_hh, gates, hs, cs, tanh_c)


def lstm_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T (it consumes the cache)."""
    x, w_ih, w_hh, gates, hs, cs, tanh_c = cache
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    o, i, f, g = (gates[:, :, k] for k in range(4))
    # local derivatives of all steps at once, written over the gates (block by block, each
    # block read by the later ones before it is overwritten): dz = local * (dh or dc)
    dc_from_h = o * (1 - tanh_c * tanh_c)                      # dc_t += dh_t * dc_from_h
    forget = f.copy()
    o *= tanh_c * (1 - o)                                      # dz_o / dh
    dz_g = i * (1 - g * g)
    i *= g * (1 - i)                                           # dz_i / dc
    g[...] = dz_g                                              # dz_g / dc
    f *= cs[:-1] * (1 - f)                                     # dz_f / dc
    dh = dh.astype(x.dtype, copy=True)
    dc = np.zeros_like(dh)
    tmp = np.empty_like(dh)
    for t in range(steps - 1, -1, -1):
        dz = gates[t]
        np.multiply(dh, dc_from_h[t], out=tmp)
        dc += tmp
        dz[:, 0] *= dh
        dz[:, 1:] *= dc[:, None]
        dc *= forget[t]                                        # dc_{t-1}
        if t:
            np.matmul(dz.reshape(batch, 4 * hidden), w_hh, out=dh)   # dh_{t-1}
    dz = gates.reshape(steps * batch, 4 * hidden)
    grads = _input_grads(x, w_ih, dz)
    grads.update(_recurrent_grads(hs, dz, grads["bias_ih_l0"]))
    return {name: grad if name == "x" else _gate_rows(grad, LSTM_BACK) for name, grad in grads.items()}


# ---------------------------------------------------------------------------------------------
# GRU, PyTorch's gate order r | z | n:
#   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr),   z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
#   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}
#
# BPTT, with dh_t the gradient reaching h_t, q = h W_hn^T + b_hn and p_n = x W_in^T + b_in:
#   dp_n = dh_t * (1 - z) (1 - n^2)         dq = dp_n * r
#   dz_r = dp_n * q * r (1 - r)             dz_z = dh_t * (h_{t-1} - n) * z (1 - z)
#   dh_{t-1} = dh_t * z + [dz_r, dz_z, dq] W_hh
# The input side gets [dz_r, dz_z, dp_n], the recurrent side [dz_r, dz_z, dq].
# ---------------------------------------------------------------------------------------------

def gru_forward(x, params):
    """h_T (B, H) and what the backward pass needs."""
    steps, batch, _ = x.shape
    w_ih, w_hh, b_ih, b_hh = _weights(params, x.dtype)
    hidden = w_hh.shape[1]
    scale = np.repeat(np.array([0.5, 0.5, 1.0], x.dtype), hidden)       # halve the sigmoid rows
    gates = (x.reshape(steps * batch, -1) @ (w_ih * scale[:, None]).T).reshape(steps, batch, 3, hidden)
    bias = b_ih * scale
    bias[:2 * hidden] += b_hh[:2 * hidden] * 0.5                # b_hr, b_hz fold into the input side
    gates += bias.reshape(3, hidden)
    b_hn = b_hh[2 * hidden:]
    w_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    hs = np.zeros((steps + 1, batch, hidden), x.dtype)
    q = np.empty((steps, batch, hidden), x.dtype)              # h W_hn^T + b_hn of every step
    rec = np.empty((batch, 3, hidden), x.dtype)
    tmp = np.empty((batch, hidden), x.dtype)
    for t in range(steps):
        a = gates[t]
        np.matmul(hs[t], w_t, out=rec.reshape(batch, 3 * hidden))
        rz = a[:, :2]
        rz += rec[:, :2]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5                                               # r, z
        np.add(rec[:, 2], b_hn, out=q[t])
        n = a[:, 2]
        np.multiply(a[:, 0], q[t], out=tmp)
        n += tmp
        np.tanh(n, out=n)                                       # n
        np.subtract(hs[t], n, out=tmp)
        tmp *= a[:, 1]
        np.add(n, tmp, out=hs[t + 1])                           # h_t = n + z (h_{t-1} - n)
    return hs[steps], (x, w_ih, w_hh, gates, hs, q)


def gru_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T."""
    x, w_ih, w_hh, gates, hs, q = cache
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    r, z, n = (gates[:, :, k] for k in range(3))
    dpn_dh = (1 - z) * (1 - n * n)                              # dp_n = dh * dpn_dh
    dzz_dh = (hs[:-1] - n) * z * (1 - z)                        # dz_z = dh * dzz_dh
    dzr_dpn = q * r * (1 - r)                                   # dz_r = dp_n * dzr_dpn
    d_hh = np.empty_like(gates)                                 # [dz_r, dz_z, dq] of every step
    dp_n = np.empty_like(q)
    dh = dh.astype(x.dtype, copy=True)
    rec = np.empty_like(dh)
    for t in range(steps - 1, -1, -1):
        d = d_hh[t]
        np.multiply(dh, dpn_dh[t], out=dp_n[t])
        np.multiply(dp_n[t], dzr_dpn[t], out=d[:, 0])
        np.multiply(dh, dzz_dh[t], out=d[:, 1])
        np.multiply(dp_n[t], r[t], out=d[:, 2])
        if t:
            np.matmul(d.reshape(batch, 3 * hidden), w_hh, out=rec)
            dh *= z[t]
            dh += rec                                           # dh_{t-1}
    d = d_hh.reshape(steps * batch, 3 * hidden)
    grads = _recurrent_grads(hs, d)
    d_hh[:, :, 2] = dp_n                                        # now the input side's [dz_r, dz_z, dp_n]
    return {**_input_grads(x, w_ih, d), **grads}


FORWARD = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}


def train_step(kind, x, params, v, nonlinearity="tanh"):
    """loss = sum(h_T * v) and its gradients: (loss, {"x": ..., "weight_ih_l0": ..., ...}).

    kind: "rnn", "lstm" or "gru"; x (T, B, I); v (B, H); nonlinearity only for "rnn"."""
    if kind not in FORWARD:
        raise ValueError(f"train_step: kind must be one of {sorted(FORWARD)}, got {kind!r}")
    if x.ndim != 3:
        raise ValueError(f"train_step: x has {x.ndim} dims, expected 3 (seq, batch, feature)")
    extra = (nonlinearity,) if kind == "rnn" else ()
    h_last, cache = FORWARD[kind](x, params, *extra)
    loss = np.sum(h_last * v)
    return loss, BACKWARD[kind](cache, v)
