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

* every array of the step lives in a ``Workspace`` that the next call with the
  same kind, shapes and dtype reuses, together with the views of it that each
  time step uses: a second call allocates nothing but what it returns, so it
  pays no page faults for fresh buffers and builds no views in its loops;
* for the LSTM and the GRU, one buffer holds the rows [h_{t-1} | 1 | x_t] of
  every step, so the input projections of all T steps, biases included, are
  ONE matmul (T*B, 1+I) x (1+I, G*H), and the gradients of W_hh, the biases
  and W_ih are ONE matmul (G*H, T*B) x (T*B, H+1+I) (two for the GRU, whose
  two sides differ in one gate); the RNN, with nothing but whole-array ufuncs
  in its steps, keeps its states contiguous and its inputs where they are;
* each step forward does one (B, H) x (H, G*H) matmul and a few ufuncs with
  ``out=``, as many as possible on whole contiguous (B, G*H) rows: a gate's
  block of columns is a strided view, and NumPy pays for those row by row;
* sigmoid(a) = 0.5 * tanh(a / 2) + 0.5, so halving the rows of the weights
  that feed sigmoid gates lets ONE tanh, then one multiply and one add with
  constant (B, G*H) arrays, activate every gate of a step;
* the local derivatives of the gates are computed in the backward pass a chunk
  of steps at a time, gate by gate in contiguous scratch arrays, just before
  the steps of the chunk use them (while they are in cache); each step backward
  is then one (B, G*H) x (G*H, H) matmul and a handful of multiplies.

Parameters are a dict with PyTorch's names (``weight_ih_l0`` (G*H, I),
``weight_hh_l0`` (G*H, H), ``bias_ih_l0``, ``bias_hh_l0`` (G*H)), as in the
``state_dict`` of ``tinygrad_rnn.nn.LSTM`` or ``torch.nn.LSTM``; the gradients
come back under the same names plus ``"x"``. All arrays keep the dtype of x.

Use ``train_step(kind, x, params, v, ws=ws)`` for one step, or ``FORWARD[kind]``
and ``BACKWARD[kind]`` to time the two passes apart; pass the same ``Workspace``
to every call to reuse its buffers (without one, each call makes its own).
"""
import numpy as np

NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
CHUNK = 1 << 15            # elements of one gate in a chunk of steps of the backward pass


class Workspace:
    """The buffers of a step, kept for the next call with the same kind, shapes and dtype.

    A workspace holds one step in flight: a forward fills it, and the backward of that
    forward consumes it. A later forward on the same workspace overwrites the buffers, so
    it makes the earlier cache stale, and passing that cache to a backward raises instead
    of silently mixing two steps. What the functions return (h_T, the gradients) is always
    a fresh array, never a view of the workspace.
    """

    def __init__(self):
        self._plans = {}
        self._ticket = None

    def plan(self, key, build):
        """The buffers for ``key`` (kind, shapes, dtype), made by ``build()`` the first time."""
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build()
        return plan

    def issue(self):
        """A ticket for the step a forward is about to write; it voids the previous one."""
        self._ticket = object()
        return self._ticket

    def redeem(self, ticket):
        """Check that ``ticket`` is still the current step's, and void it (a backward consumes its step)."""
        if ticket is not self._ticket:
            raise RuntimeError("numpy_rnn: this cache is stale: its workspace has since been used by another "
                               "forward or backward pass")
        self._ticket = None

    def clear(self):
        """Free every buffer."""
        self._plans.clear()
        self._ticket = None


def _begin(ws, key, build):
    """The workspace (a private one when ``ws`` is None), its buffers for ``key`` and a ticket."""
    ws = Workspace() if ws is None else ws
    plan = ws.plan(key, build)
    return ws, plan, ws.issue()


def _weights(params, dtype):
    """W_ih, W_hh, b_ih, b_hh as C-contiguous arrays of ``dtype`` (no copy when they already are)."""
    return [np.ascontiguousarray(params[name], dtype=dtype) for name in NAMES]


def _chunks(steps, batch, hidden):
    """(start, stop) ranges of steps, the last first, of about CHUNK elements per (T, B, H) array."""
    size = max(1, CHUNK // (batch * hidden))
    return [(max(0, stop - size), stop) for stop in range(steps, 0, -size)], size


class _Rows:
    """The rows buffer of the LSTM and the GRU: xh[t] = [h_{t-1} | 1 | x_t] (B, H+1+I) for t < T, and h_T.

    Its matrix views (T*B rows): ``rows`` [h_{t-1} | 1 | x_t], ``h1`` [h_{t-1} | 1] and ``x1`` [1 | x_t]
    (the input projection and the weight gradients read them); ``h[t]`` (B, H) is h_{t-1}, ``h[T]`` h_T."""

    def __init__(self, steps, batch, inputs, hidden, dtype):
        self.hidden = hidden
        self.xh = np.empty((steps + 1, batch, hidden + 1 + inputs), dtype)
        flat = self.xh.reshape((steps + 1) * batch, -1)
        self.rows = flat[:steps * batch]
        self.h1, self.x1 = self.rows[:, :hidden + 1], self.rows[:, hidden:]
        self.h = [self.xh[t, :, :hidden] for t in range(steps + 1)]

    def load(self, x):
        """h_0 = 0, the ones column and this call's inputs: every call rewrites all that it reads."""
        hidden, steps = self.hidden, x.shape[0]
        self.xh[0, :, :hidden] = 0
        self.xh[:steps, :, hidden] = 1
        self.xh[:steps, :, hidden + 1:] = x


def _weight_grads(hh, ih, hidden, order_hh=slice(None)):
    """The weight and bias gradients, fresh arrays, from hh = d^T [h_{t-1} | 1] (gradients of W_hh and b_hh,
    their gate rows in the order ``order_hh``) and ih = d^T [1 | x_t] (those of b_ih and W_ih)."""
    return {"weight_hh_l0": hh[order_hh, :hidden].copy(), "bias_hh_l0": hh[order_hh, hidden].copy(),
            "weight_ih_l0": ih[:, 1:].copy(), "bias_ih_l0": ih[:, 0].copy()}


def _affine_rows(batch, blocks, dtype):
    """Constant (B, G*H) arrays scale, shift that turn tanh(z / 2) into sigmoid(z) = 0.5 tanh(z / 2) + 0.5
    on the sigmoid blocks (``blocks``: True for a sigmoid gate, per gate) and leave the others as they are."""
    hidden_scale = np.concatenate([np.full(h, 0.5 if sig else 1.0) for sig, h in blocks])
    scale = np.broadcast_to(hidden_scale.astype(dtype), (batch, hidden_scale.size)).copy()
    return scale, np.where(scale == 0.5, 0.5, 0.0).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Elman RNN:  h_t = act(a_t),  a_t = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T,  act = tanh or relu
#
# BPTT:  da_t = (dh_t + da_{t+1} W_hh) * act'(a_t),  with act'= 1 - h_t^2 (tanh) or [h_t > 0] (relu)
#        dW_ih = sum_t da_t^T x_t,  dW_hh = sum_t da_t^T h_{t-1},  db_ih = db_hh = sum_t da_t,
#        dx_t = da_t W_ih
# ---------------------------------------------------------------------------------------------

class _RNNPlan:
    """The buffers of an RNN step and the views each time step uses: hs (T+1, B, H), hs[t + 1] = h_t
    (first x_t W_ih^T + b); da (T, B, H). The states stay contiguous here, not in the rows buffer
    of the gated kinds: an RNN step has no gate blocks, so all its ufuncs run on whole arrays."""

    def __init__(self, steps, batch, hidden, dtype):
        self.hs = np.empty((steps + 1, batch, hidden), dtype)
        self.hs_rows = self.hs.reshape((steps + 1) * batch, hidden)
        self.da = np.empty((steps, batch, hidden), dtype)
        self.da_rows = self.da.reshape(steps * batch, hidden)
        self.bias = np.empty(hidden, dtype)
        self.wh = np.empty((hidden, hidden), dtype)             # W_hh^T
        self.rec = np.empty((batch, hidden), dtype)
        self.dh = np.empty((batch, hidden), dtype)
        self.forward_steps = [(self.hs[t], self.hs[t + 1]) for t in range(steps)]
        self.backward_steps = [(self.da[t], t > 0) for t in range(steps - 1, -1, -1)]


def rnn_forward(x, params, nonlinearity="tanh", ws=None):
    """h_T (B, H) and what the backward pass needs."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    steps, batch, _ = x.shape
    w_ih, w_hh, b_ih, b_hh = _weights(params, x.dtype)
    hidden = w_hh.shape[1]
    ws, plan, ticket = _begin(ws, ("rnn", x.shape, hidden, x.dtype), lambda: _RNNPlan(steps, batch, hidden, x.dtype))
    x = np.ascontiguousarray(x).reshape(steps * batch, -1)
    hs = plan.hs
    hs[0] = 0
    np.matmul(x, w_ih.T, plan.hs_rows[batch:])
    np.add(b_ih, b_hh, plan.bias)
    np.add(hs[1:], plan.bias, hs[1:])                           # every x_t W_ih^T + b, in one matmul
    plan.wh[...] = w_hh.T
    wh, rec = plan.wh, plan.rec
    for h, h_next in plan.forward_steps:
        np.matmul(h, wh, rec)
        np.add(h_next, rec, h_next)
        if nonlinearity == "tanh":
            np.tanh(h_next, h_next)
        else:
            np.maximum(h_next, 0, out=h_next)
    return hs[steps].copy(), (ws, ticket, plan, nonlinearity, x, w_ih, w_hh)


def rnn_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T."""
    ws, ticket, plan, nonlinearity, x, w_ih, w_hh = cache
    ws.redeem(ticket)
    steps, batch, _ = plan.da.shape
    hs, da = plan.hs[1:], plan.da
    if nonlinearity == "tanh":                                  # act'(a_t) for all t at once
        np.multiply(hs, hs, da)
        np.subtract(1, da, da)
    else:
        np.sign(hs, da)                                         # h_t >= 0: 1 where h_t > 0, else 0
    grad_h = plan.dh
    np.copyto(grad_h, dh)
    for d, more in plan.backward_steps:
        np.multiply(d, grad_h, d)                               # da_t
        if more:
            np.matmul(d, w_hh, grad_h)                          # dh_{t-1} (only the recurrence feeds it)
    d = plan.da_rows
    bias = d.sum(axis=0)
    return {"x": np.matmul(d, w_ih).reshape(steps, batch, -1), "weight_ih_l0": np.matmul(d.T, x),
            "bias_ih_l0": bias, "weight_hh_l0": np.matmul(d.T, plan.hs_rows[:steps * batch]), "bias_hh_l0": bias.copy()}


# ---------------------------------------------------------------------------------------------
# LSTM, PyTorch's gate order i | f | g | o:
#   z = x_t W_ih^T + b_ih + b_hh + h_{t-1} W_hh^T;   i, f, o = sigmoid(z_i, z_f, z_o),  g = tanh(z_g)
#   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
#
# BPTT, with dh_t and dc_t the gradients reaching h_t and c_t:
#   dc_t  += dh_t * o (1 - tanh(c_t)^2)
#   dz_o   = dh_t * tanh(c_t) * o (1 - o)      dz_i = dc_t * g * i (1 - i)
#   dz_f   = dc_t * c_{t-1} * f (1 - f)        dz_g = dc_t * i * (1 - g^2)
#   dc_{t-1} = dc_t * f,   dh_{t-1} = dz W_hh
# ---------------------------------------------------------------------------------------------

class _LSTMPlan:
    """The buffers of an LSTM step and the views each time step uses.

    z (T, B, 4H): the pre-activations, then the gates, then dz; cs (T+1, B, H): cs[t + 1] = c_t;
    tanh_c (T, B, H). The backward pass works through chunks of S steps with gate-major scratch:
    local (4, S, B, H) = the local derivatives of i, f, g, o; dc_from_h, forget (S, B, H)."""

    def __init__(self, steps, batch, inputs, hidden, dtype):
        n = hidden
        self.io = _Rows(steps, batch, inputs, hidden, dtype)
        self.z = np.empty((steps, batch, 4 * n), dtype)
        self.z_rows = self.z.reshape(steps * batch, 4 * n)
        self.cs = np.empty((steps + 1, batch, n), dtype)
        self.tanh_c = np.empty((steps, batch, n), dtype)
        self.scale, self.shift = _affine_rows(batch, [(True, n), (True, n), (False, n), (True, n)], dtype)
        self.column_scale = self.scale[0].copy()
        self.wx = np.empty((1 + inputs, 4 * n), dtype)          # [b_ih + b_hh; W_ih^T], sigmoid columns halved
        self.wh = np.empty((n, 4 * n), dtype)                   # W_hh^T, likewise
        self.rec = np.empty((batch, 4 * n), dtype)
        self.tmp = np.empty((batch, n), dtype)
        self.dh, self.dc = np.empty((batch, n), dtype), np.empty((batch, n), dtype)
        self.grad_w = np.empty((4 * n, n + 1 + inputs), dtype)
        h, z, cs, tc = self.io.h, self.z, self.cs, self.tanh_c
        self.forward_steps = [(h[t], z[t], *(z[t][:, k * n:(k + 1) * n] for k in range(4)), cs[t], cs[t + 1],
                               tc[t], h[t + 1]) for t in range(steps)]
        self._backward_plan(steps, batch, n, dtype)

    def _backward_plan(self, steps, batch, n, dtype):
        ranges, size = _chunks(steps, batch, n)
        self.local = np.empty((4, size, batch, n), dtype)
        self.dc_from_h, self.forget, self.scratch = (np.empty((size, batch, n), dtype) for _ in range(3))
        by_gate = self.z.reshape(steps, batch, 4, n).transpose(0, 2, 1, 3)     # z[t] as (4, B, H), gate by gate
        self.chunks = []
        for start, stop in ranges:
            m = stop - start
            gates = self.z[start:stop].reshape(m, batch, 4, n).transpose(2, 0, 1, 3)
            prelude = (gates, self.tanh_c[start:stop], self.cs[start:stop], self.local[:, :m],
                       self.dc_from_h[:m], self.forget[:m], self.scratch[:m])
            steps_back = [(self.z[t], self.z[t][:, 3 * n:], by_gate[t, :3], self.local[3, t - start],
                           self.local[:3, t - start], self.dc_from_h[t - start], self.forget[t - start], t > 0)
                          for t in range(stop - 1, start - 1, -1)]
            self.chunks.append((prelude, steps_back))


def lstm_forward(x, params, ws=None):
    """h_T (B, H) and what the backward pass needs."""
    steps, batch, inputs = x.shape
    w_ih, w_hh, b_ih, b_hh = _weights(params, x.dtype)
    hidden = w_hh.shape[1]
    ws, plan, ticket = _begin(ws, ("lstm", x.shape, hidden, x.dtype),
                              lambda: _LSTMPlan(steps, batch, inputs, hidden, x.dtype))
    plan.io.load(x)
    plan.cs[0] = 0
    np.add(b_ih, b_hh, plan.wx[0])
    plan.wx[1:] = w_ih.T
    plan.wx *= plan.column_scale                                # halve the sigmoid columns
    np.multiply(w_hh.T, plan.column_scale, plan.wh)
    np.matmul(plan.io.x1, plan.wx, plan.z_rows)                 # every x_t W_ih^T + b, in one matmul
    wh, rec, tmp, scale, shift = plan.wh, plan.rec, plan.tmp, plan.scale, plan.shift
    for h, z, i, f, g, o, c, c_next, tc, h_next in plan.forward_steps:
        np.matmul(h, wh, rec)
        np.add(z, rec, z)
        np.tanh(z, z)                                           # tanh(z_g), tanh(z / 2) for the others
        np.multiply(z, scale, z)
        np.add(z, shift, z)                                     # i, f, o = sigmoid(z)
        np.multiply(f, c, c_next)
        np.multiply(i, g, tmp)
        np.add(c_next, tmp, c_next)                             # c_t = f c_{t-1} + i g
        np.tanh(c_next, tc)
        np.multiply(o, tc, h_next)                              # h_t = o tanh(c_t)
    return plan.io.h[steps].copy(), (ws, ticket, plan, w_ih, w_hh)


def _lstm_locals(gates, tanh_c, c_prev, local, dc_from_h, forget, s):
    """The local derivatives of a chunk of steps, gate-major: local = i, f, g, o, overwritten with
    dz / dc for i, f, g and dz / dh for o; dc_from_h = dc_t / dh_t; forget = f."""
    np.copyto(local, gates)
    i, f, g, o = local
    np.multiply(tanh_c, tanh_c, dc_from_h)
    np.subtract(1, dc_from_h, dc_from_h)
    np.multiply(dc_from_h, o, dc_from_h)                        # o (1 - tanh(c_t)^2)
    np.subtract(1, o, s)
    np.multiply(s, tanh_c, s)
    np.multiply(o, s, o)                                        # tanh(c_t) o (1 - o)
    np.copyto(forget, f)
    np.subtract(1, f, s)
    np.multiply(s, c_prev, s)
    np.multiply(f, s, f)                                        # c_{t-1} f (1 - f)
    np.subtract(1, i, s)
    np.multiply(s, g, s)                                        # g (1 - i)
    np.multiply(g, g, g)
    np.subtract(1, g, g)
    np.multiply(g, i, g)                                        # i (1 - g^2)
    np.multiply(i, s, i)                                        # g i (1 - i)


def lstm_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T."""
    ws, ticket, plan, w_ih, w_hh = cache
    ws.redeem(ticket)
    steps, hidden = plan.z.shape[0], plan.io.hidden
    grad_h, dc, tmp = plan.dh, plan.dc, plan.tmp
    np.copyto(grad_h, dh)
    dc[...] = 0
    for prelude, steps_back in plan.chunks:                     # the last steps first
        _lstm_locals(*prelude)
        for z, dz_o, dz_ifg, local_o, local_ifg, dc_from_h, forget, more in steps_back:
            np.multiply(grad_h, dc_from_h, tmp)
            np.add(dc, tmp, dc)                                 # dc_t
            np.multiply(local_o, grad_h, dz_o)
            np.multiply(local_ifg, dc, dz_ifg)
            np.multiply(dc, forget, dc)                         # dc_{t-1}
            if more:
                np.matmul(z, w_hh, grad_h)                      # dh_{t-1}
    out = plan.grad_w
    np.matmul(plan.z_rows.T, plan.io.rows, out)                 # dz^T [h_{t-1} | 1 | x_t]: every weight and bias
    grads = _weight_grads(out[:, :hidden + 1], out[:, hidden:], hidden)
    grads["x"] = np.matmul(plan.z_rows, w_ih).reshape(steps, -1, w_ih.shape[1])
    return grads


# ---------------------------------------------------------------------------------------------
# GRU, PyTorch's gate order r | z | n:
#   r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr),   z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
#   n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}
#
# BPTT, with dh_t the gradient reaching h_t, q = h W_hn^T + b_hn and p_n = x W_in^T + b_in:
#   dp_n = dh_t * (1 - z) (1 - n^2)         dq = dp_n * r
#   dz_r = dp_n * q * r (1 - r)             dz_z = dh_t * (h_{t-1} - n) * z (1 - z)
#   dh_{t-1} = dh_t * z + [dz_r, dz_z, dq] W_hh
# The input side gets [dz_r, dz_z, dp_n], the recurrent side [dz_r, dz_z, dq]: one (T, B, 4H) buffer
# holds dq | dz_r | dz_z | dp_n, so that each side is a run of three blocks.
# ---------------------------------------------------------------------------------------------

class _GRUPlan:
    """The buffers of a GRU step and the views each time step uses.

    p (T, B, 3H): x W_ih^T + b_ih; rec (T, B, 3H): [h, 1] [W_hh^T; b_hh], its last block q;
    gates (T, B, 3H): r, z (and a block computed in passing and not used); n, h_minus_n (T, B, H);
    d (T, B, 4H): dq | dz_r | dz_z | dp_n. The backward pass works through chunks of S steps with
    gate-major scratch: local (5, S, B, H) = r, coef_r, coef_z, coef_n, z, so that [r, coef_r] and
    [coef_z, coef_n] are pairs that one multiply each turns into [dq, dz_r] and [dz_z, dp_n]."""

    def __init__(self, steps, batch, inputs, hidden, dtype):
        n = hidden
        self.io = _Rows(steps, batch, inputs, hidden, dtype)
        self.p, self.rec, self.gates = (np.empty((steps, batch, 3 * n), dtype) for _ in range(3))
        self.p_rows = self.p.reshape(steps * batch, 3 * n)
        self.n, self.h_minus_n = np.empty((steps, batch, n), dtype), np.empty((steps, batch, n), dtype)
        self.d = np.empty((steps, batch, 4 * n), dtype)
        self.d_rows = self.d.reshape(steps * batch, 4 * n)
        self.scale, self.shift = _affine_rows(batch, [(True, n), (True, n), (False, n)], dtype)
        self.column_scale = self.scale[0].copy()
        self.wx = np.empty((1 + inputs, 3 * n), dtype)          # [b_ih; W_ih^T], r and z columns halved
        self.wh = np.empty((n + 1, 3 * n), dtype)               # [W_hh^T; b_hh], likewise
        self.w_hh_back = np.empty((3 * n, n), dtype)            # W_hh with its rows in the order n | r | z
        self.tmp = np.empty((batch, n), dtype)
        self.dh, self.back_rec = np.empty((batch, n), dtype), np.empty((batch, n), dtype)
        self.grad_hh, self.grad_ih = np.empty((3 * n, n + 1), dtype), np.empty((3 * n, 1 + inputs), dtype)
        self.order_hh = np.arange(3 * n).reshape(3, n)[[1, 2, 0]].ravel()   # rows dq | dz_r | dz_z as r | z | n
        xh = self.io.xh
        self.forward_steps = [(xh[t, :, :n + 1], self.rec[t], self.p[t], self.gates[t], self.gates[t][:, :n],
                               self.gates[t][:, n:2 * n], self.rec[t][:, 2 * n:], self.p[t][:, 2 * n:], self.n[t],
                               self.io.h[t], self.h_minus_n[t], self.io.h[t + 1]) for t in range(steps)]
        self._backward_plan(steps, batch, n, dtype)

    def _backward_plan(self, steps, batch, n, dtype):
        ranges, size = _chunks(steps, batch, n)
        self.local = np.empty((5, size, batch, n), dtype)
        self.scratch = np.empty((size, batch, n), dtype)
        pairs = self.d.reshape(steps, batch, 4, n).transpose(0, 2, 1, 3)      # d[t] as (4, B, H), block by block
        self.chunks = []
        for start, stop in ranges:
            m = stop - start
            rz = self.gates[start:stop].reshape(m, batch, 3, n)[:, :, :2].transpose(2, 0, 1, 3)
            prelude = (rz, self.rec[start:stop, :, 2 * n:], self.n[start:stop], self.h_minus_n[start:stop],
                       self.local[:, :m], self.scratch[:m])
            steps_back = [(pairs[t, 2:], pairs[t, 0:2], self.d[t][:, 3 * n:], self.d[t][:, :3 * n],
                           self.local[2:4, t - start], self.local[0:2, t - start], self.local[4, t - start], t > 0)
                          for t in range(stop - 1, start - 1, -1)]
            self.chunks.append((prelude, steps_back))


def gru_forward(x, params, ws=None):
    """h_T (B, H) and what the backward pass needs."""
    steps, batch, inputs = x.shape
    w_ih, w_hh, b_ih, b_hh = _weights(params, x.dtype)
    hidden = w_hh.shape[1]
    ws, plan, ticket = _begin(ws, ("gru", x.shape, hidden, x.dtype),
                              lambda: _GRUPlan(steps, batch, inputs, hidden, x.dtype))
    plan.io.load(x)
    plan.wx[0] = b_ih
    plan.wx[1:] = w_ih.T
    plan.wx *= plan.column_scale                                # halve the r and z columns
    plan.wh[:-1] = w_hh.T
    plan.wh[-1] = b_hh
    plan.wh *= plan.column_scale
    np.matmul(plan.io.x1, plan.wx, plan.p_rows)                 # every x_t W_ih^T + b_ih, in one matmul
    wh, tmp, scale, shift = plan.wh, plan.tmp, plan.scale, plan.shift
    for h1, rec, p, a, r, z, q, p_n, n, h, h_minus_n, h_next in plan.forward_steps:
        np.matmul(h1, wh, rec)                                  # h W_hh^T + b_hh; its last block is q
        np.add(p, rec, a)
        np.tanh(a, a)
        np.multiply(a, scale, a)
        np.add(a, shift, a)                                     # r, z (the third block is not used)
        np.multiply(r, q, tmp)
        np.add(p_n, tmp, n)
        np.tanh(n, n)                                           # n
        np.subtract(h, n, h_minus_n)
        np.multiply(h_minus_n, z, tmp)
        np.add(n, tmp, h_next)                                  # h_t = n + z (h_{t-1} - n)
    return plan.io.h[steps].copy(), (ws, ticket, plan, w_ih, w_hh)


def _gru_locals(gates_rz, q, n, h_minus_n, local, s):
    """The local derivatives of a chunk of steps, gate-major: local = r, coef_r = dz_r / dp_n,
    coef_z = dz_z / dh, coef_n = dp_n / dh, z."""
    np.copyto(local[::4], gates_rz)
    r, coef_r, coef_z, coef_n, z = local
    np.subtract(1, z, s)
    np.multiply(s, z, coef_z)
    np.multiply(coef_z, h_minus_n, coef_z)                      # (h_{t-1} - n) z (1 - z)
    np.multiply(n, n, coef_n)
    np.subtract(1, coef_n, coef_n)
    np.multiply(coef_n, s, coef_n)                              # (1 - z) (1 - n^2)
    np.subtract(1, r, coef_r)
    np.multiply(coef_r, r, coef_r)
    np.multiply(coef_r, q, coef_r)                              # q r (1 - r)


def gru_backward(cache, dh):
    """The gradients for x and the parameters, given dL/dh_T."""
    ws, ticket, plan, w_ih, w_hh = cache
    ws.redeem(ticket)
    steps, hidden = plan.d.shape[0], plan.io.hidden
    w_back = plan.w_hh_back
    w_back[:hidden], w_back[hidden:] = w_hh[2 * hidden:], w_hh[:2 * hidden]    # rows n | r | z, as dq | dz_r | dz_z
    grad_h, rec = plan.dh, plan.back_rec
    np.copyto(grad_h, dh)
    for prelude, steps_back in plan.chunks:                     # the last steps first
        _gru_locals(*prelude)
        for dz_z_dp_n, dq_dz_r, dp_n, d_hh, coef_z_n, r_coef_r, z, more in steps_back:
            np.multiply(coef_z_n, grad_h, dz_z_dp_n)            # dz_z, dp_n
            np.multiply(r_coef_r, dp_n, dq_dz_r)                # dq, dz_r
            if more:
                np.matmul(d_hh, w_back, rec)
                np.multiply(grad_h, z, grad_h)
                np.add(grad_h, rec, grad_h)                     # dh_{t-1}
    d_hh, d_ih = plan.d_rows[:, :3 * hidden], plan.d_rows[:, hidden:]
    np.matmul(d_hh.T, plan.io.h1, plan.grad_hh)                 # [dW_hh | db_hh], rows n | r | z
    np.matmul(d_ih.T, plan.io.x1, plan.grad_ih)                 # [db_ih | dW_ih]
    grads = _weight_grads(plan.grad_hh, plan.grad_ih, hidden, plan.order_hh)
    grads["x"] = np.matmul(d_ih, w_ih).reshape(steps, -1, w_ih.shape[1])
    return grads


FORWARD = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}


def train_step(kind, x, params, v, nonlinearity="tanh", ws=None):
    """loss = sum(h_T * v) and its gradients: (loss, {"x": ..., "weight_ih_l0": ..., ...}).

    kind: "rnn", "lstm" or "gru"; x (T, B, I); v (B, H); nonlinearity only for "rnn";
    ws: a Workspace to reuse across calls (None: a private one for this call)."""
    if kind not in FORWARD:
        raise ValueError(f"train_step: kind must be one of {sorted(FORWARD)}, got {kind!r}")
    if x.ndim != 3:
        raise ValueError(f"train_step: x has {x.ndim} dims, expected 3 (seq, batch, feature)")
    extra = (nonlinearity,) if kind == "rnn" else ()
    h_last, cache = FORWARD[kind](x, params, *extra, ws=ws)
    loss = np.sum(h_last * v)
    return loss, BACKWARD[kind](cache, v)
