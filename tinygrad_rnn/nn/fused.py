"""Fused time steps of the RNN, LSTM and GRU cells: one Function per step each,
with a hand-written backward.

Each step takes the input projection ``p`` of its time step (x W_ih^T plus the
biases that can be folded in, computed for all steps at once by the layer), the
previous state and the recurrent weight, and does the recurrent matmul and the
whole elementwise update in one node. The activation helpers below work on arrays
and on Tensors alike: forward calls them on arrays, and a backward under
create_graph=True calls them again on Tensors to recompute what it needs, so
second derivatives stay exact without saving intermediates.
"""
from .. import backend
from ..function import Function
from ..ops.shape import add_tangents, lift, zero_filled


def sigmoid(xp, x):
    """1 / (1 + e^-x), as (1 + tanh(x/2)) / 2: never overflows, arrays or Tensors."""
    return 0.5 * xp.tanh(0.5 * x) + 0.5


def recurrent_tangent(h, w, th, tw):
    """The tangent of h W^T: dh W^T + h dW^T (tangents (K, ...) or None)."""
    return add_tangents(None if th is None else th @ w.T, None if tw is None else h @ tw.swapaxes(-1, -2))


def lstm_gates(xp, p, h, w):
    """The activated gates i, f, g, o of z = p + h W^T (rows of W stacked i|f|g|o)."""
    z = p + h @ w.T
    n = h.shape[-1]
    return (sigmoid(xp, z[:, :n]), sigmoid(xp, z[:, n:2 * n]), xp.tanh(z[:, 2 * n:3 * n]),
            sigmoid(xp, z[:, 3 * n:]))


class LSTMStep(Function):
    """(h', c') from p = x W_ih^T + b_ih + b_hh, h, c and W_hh:
    c' = f c + i g,  h' = o tanh(c')."""

    @staticmethod
    def forward(ctx, p, h, c, w):
        xp = backend.get_array_module(p)
        i, f, g, o = lstm_gates(xp, p, h, w)
        c_new = f * c + i * g
        tc = xp.tanh(c_new)
        ctx.save_for_backward(p, h, c, w)
        ctx.activations = i, f, g, o, tc
        return o * tc, c_new

    @staticmethod
    def backward(ctx, dh_new, dc_new):
        p, h, c, w = ctx.saved_tensors
        xp = ctx.xp
        if ctx.create_graph:
            i, f, g, o = lstm_gates(xp, p, h, w)
            tc = xp.tanh(f * c + i * g)
        else:
            i, f, g, o, tc = ctx.activations
        dc = dc_new + dh_new * o * (1 - tc * tc)
        dz = xp.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                             dh_new * tc * o * (1 - o)], axis=1)
        _, need_h, need_c, need_w = ctx.needs_input_grad
        return dz, dz @ w if need_h else None, dc * f if need_c else None, dz.T @ h if need_w else None

    @staticmethod
    def jvp(ctx, tp, th, tc, tw):
        """dz = dp + dh W^T + h dW^T;  dc' = df c + f dc + di g + i dg;  dh' = do tanh(c') + o (1 - tanh^2 c') dc'."""
        p, h, c, w = ctx.saved_tensors
        i, f, g, o, tc_new = ctx.activations
        n = h.shape[-1]
        tz, tc = zero_filled([add_tangents(tp, recurrent_tangent(h, w, th, tw)), tc], [p.shape, c.shape], ctx.xp)
        ti, tf = tz[..., :n] * (i * (1 - i)), tz[..., n:2 * n] * (f * (1 - f))
        tg, to = tz[..., 2 * n:3 * n] * (1 - g * g), tz[..., 3 * n:] * (o * (1 - o))
        dc_new = tf * c + f * tc + ti * g + i * tg
        return to * tc_new + (o * (1 - tc_new * tc_new)) * dc_new, dc_new


def gru_gates(xp, p, h, w, b):
    """r, z, n and the recurrent part of n, from p = x W_ih^T + b_ih and h W_hh^T + b_hh (rows r|z|n)."""
    gh = h @ w.T + b
    k = h.shape[-1]
    r = sigmoid(xp, p[:, :k] + gh[:, :k])
    z = sigmoid(xp, p[:, k:2 * k] + gh[:, k:2 * k])
    gh_n = gh[:, 2 * k:]
    return r, z, xp.tanh(p[:, 2 * k:] + r * gh_n), gh_n


class GRUStep(Function):
    """h' = (1 - z) n + z h with n = tanh(p_n + r (h W_hn^T + b_hn)), from p, h, W_hh, b_hh."""

    @staticmethod
    def forward(ctx, p, h, w, b):
        r, z, n, gh_n = gru_gates(backend.get_array_module(p), p, h, w, b)
        ctx.save_for_backward(p, h, w, b)
        ctx.activations = r, z, n, gh_n
        return n + z * (h - n)

    @staticmethod
    def backward(ctx, dh_new):
        p, h, w, b = ctx.saved_tensors
        xp = ctx.xp
        r, z, n, gh_n = gru_gates(xp, p, h, w, b) if ctx.create_graph else ctx.activations
        dn = dh_new * (1 - z) * (1 - n * n)
        dr = dn * gh_n * r * (1 - r)
        dz = dh_new * (h - n) * z * (1 - z)
        dp = xp.concatenate([dr, dz, dn], axis=1)
        dgh = xp.concatenate([dr, dz, dn * r], axis=1)
        _, need_h, need_w, need_b = ctx.needs_input_grad
        dh = dh_new * z + dgh @ w if need_h else None
        return dp, dh, dgh.T @ h if need_w else None, dgh.sum(axis=0) if need_b else None

    @staticmethod
    def jvp(ctx, tp, th, tw, tb):
        """d(gh) = dh W^T + h dW^T + db;  dr, dz = (dp + d(gh)) s(1 - s) per gate;
        dn = (dp_n + dr gh_n + r d(gh_n)) (1 - n^2);  dh' = dn + dz (h - n) + z (dh - dn)."""
        p, h, w, b = ctx.saved_tensors
        r, z, n, gh_n = ctx.activations
        k = h.shape[-1]
        tgh = add_tangents(recurrent_tangent(h, w, th, tw), lift(tb, h.ndim))
        tp, tgh, th = zero_filled([tp, tgh, th], [p.shape, p.shape, h.shape], ctx.xp)
        tr = (tp[..., :k] + tgh[..., :k]) * (r * (1 - r))
        tz = (tp[..., k:2 * k] + tgh[..., k:2 * k]) * (z * (1 - z))
        tn = (tp[..., 2 * k:] + tr * gh_n + r * tgh[..., 2 * k:]) * (1 - n * n)
        return tn + tz * (h - n) + z * (th - tn)


class RNNStep(Function):
    """h' = act(p + h W_hh^T) with p = x W_ih^T + b_ih + b_hh, act tanh or relu."""

    @staticmethod
    def forward(ctx, p, h, w, nonlinearity):
        xp = backend.get_array_module(p)
        a = p + h @ w.T
        out = xp.tanh(a) if nonlinearity == "tanh" else xp.maximum(a, 0)
        ctx.nonlinearity = nonlinearity
        ctx.save_for_backward(p, h, w, out)
        return out

    @staticmethod
    def backward(ctx, dh_new):
        p, h, w, out = ctx.saved_tensors
        if ctx.nonlinearity == "tanh":
            da = dh_new * (1 - out * out)
        else:
            da = ctx.xp.where(out > 0, dh_new, 0)
        _, need_h, need_w, _ = ctx.needs_input_grad
        return da, da @ w if need_h else None, da.T @ h if need_w else None, None

    @staticmethod
    def jvp(ctx, tp, th, tw, _):
        """da = dp + dh W^T + h dW^T;  dh' = act'(a) da."""
        p, h, w, out = ctx.saved_tensors
        da = add_tangents(tp, recurrent_tangent(h, w, th, tw))
        if ctx.nonlinearity == "tanh":
            return da * (1 - out * out)
        return ctx.xp.where(out > 0, da, 0)
