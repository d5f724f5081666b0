"""Whole-sequence fused ops: all T steps of an RNN, LSTM or GRU layer in one graph node.

A layer's time loop as one ``Function`` (PyTorch's ``nn.LSTM`` and cuDNN work the
same way). Forward runs the recurrence on preallocated arrays; backward is
backpropagation through time written out by hand:

* the local derivatives of every gate are computed for all steps at once, after
  the loop, as a few large vectorised ops;
* each step backward is then one (B, G*H) x (G*H, H) matmul and a few small
  elementwise ops;
* dL/dW_hh is ONE matmul over all T*B rows at the end, not one per step.

Inputs are the layer's inputs x (T, B, I), its weights and the initial state. The
input projections of all steps are one (T*B, I) x (I, G*H) matmul, written
straight into the buffer the gates are computed in; the rows of the weights that
feed sigmoid gates are halved once per call, so that one tanh activates every
gate of a step (sigmoid(a) = (1 + tanh(a / 2)) / 2). ``valid`` (T, B) bool, or
None, gives variable lengths: where it is False the state is carried unchanged
and the output is exactly zero (the semantics of ``tinygrad_rnn.nn.unroll``).

Under ``create_graph=True`` the backward recomputes the sequence with the
per-step fused ops of :mod:`tinygrad_rnn.nn.fused` on Tensors and differentiates
that, so gradients of any order stay exact.
"""
import numpy as np

from .. import backend
from ..engine import grad as graph_grad
from ..function import Function
from ..tensor import Tensor
from ..xp import stack, unbind, where
from . import fused


def _masked_steps(valid):
    """The first step at which some row is no longer valid (None when there is none)."""
    if valid is None:
        return None
    ended = np.nonzero(~backend.to_device(valid, "cpu").all(axis=1))[0]
    return int(ended[0]) if ended.size else None


def _step_mask(valid, start, t):
    """valid[t] as a (B, 1) column once some row has ended (t >= start), else None: the fast path."""
    return None if start is None or t < start else valid[t][:, None]


def _halving(xp, width, sigmoid_rows, dtype):
    """Per gate row: 0.5 where the gate is a sigmoid (computed as tanh of half its input), else 1."""
    scale = xp.ones(width, dtype)
    for rows in sigmoid_rows:
        scale[rows] = 0.5
    return scale


def _projection(xp, x, w_ih, b, scale):
    """(x W_ih^T + b) * scale for all T*B rows at once: (T, B, I) -> (T, B, G*H), a new array
    (``scale`` None: no scaling)."""
    steps, batch, features = x.shape
    w_t = w_ih.T if scale is None else w_ih.T * scale
    out = (x.reshape(steps * batch, features) @ w_t).reshape(steps, batch, -1)
    if b is not None:
        out += b if scale is None else b * scale
    return out


def _input_grads(dz, x, w_ih, needs):
    """dL/dx, dL/dW_ih, dL/db from dz (T, B, G*H), the gradient at the projected inputs."""
    steps, batch, features = x.shape
    flat = dz.reshape(steps * batch, -1)
    need_x, need_w, need_b = needs
    dx = (flat @ w_ih).reshape(x.shape) if need_x else None
    dw = flat.T @ x.reshape(steps * batch, features) if need_w else None
    return dx, dw, flat.sum(axis=0) if need_b else None


def _graph_projection(x, w_ih, b):
    """The same projection as graph ops (for the create_graph recomputation)."""
    steps, batch, features = x.shape
    p = x.reshape(steps * batch, features) @ w_ih.T
    return (p if b is None else p + b).reshape(steps, batch, -1)


def _recompute(ctx, grads, run):
    """Backward under create_graph: rerun the steps on Tensors and differentiate them."""
    inputs = ctx.saved_tensors
    outputs = run(*inputs)
    wanted = [i for i, (t, need) in enumerate(zip(inputs, ctx.needs_input_grad)) if need and t is not None]
    found = graph_grad(outputs, [inputs[i] for i in wanted], grad_outputs=list(grads), create_graph=True,
                       allow_unused=True)
    result = [None] * len(ctx.needs_input_grad)
    for i, g in zip(wanted, found):
        result[i] = g
    return tuple(result)


def _run_steps(step, p, state, valid):
    """The per-step form: ``step(p_t, state) -> state``, with the masking of ``unroll``."""
    outputs = []
    for t, p_t in enumerate(unbind(p, axis=0)):
        new = step(p_t, state)
        new_parts = new if isinstance(new, tuple) else (new,)
        if valid is not None and not bool(valid[t].all()):
            mask = Tensor._make(valid[t][:, None], False, None, 0)
            old_parts = state if isinstance(state, tuple) else (state,)
            new_parts = tuple(where(mask, n, o) for n, o in zip(new_parts, old_parts))
            outputs.append(where(mask, new_parts[0], 0.0))
        else:
            outputs.append(new_parts[0])
        state = new_parts if isinstance(new, tuple) else new_parts[0]
    parts = state if isinstance(state, tuple) else (state,)
    return (stack(outputs, axis=0),) + tuple(parts)


def _mask_outputs(xp, hs, valid, start):
    """Outputs from the states hs[1:], zero where ``valid`` is False."""
    if start is None:
        return hs[1:]
    out = hs[1:].copy()
    out[start:] = xp.where(valid[start:, :, None], out[start:], 0)
    return out


def _carry(xp, new, old, mask):
    """Rows where ``mask`` is False keep ``old``."""
    xp.copyto(new, old, where=~mask)


class LSTMScan(Function):
    """outputs (T, B, H), h_T, c_T of an LSTM from x (T, B, I), W_ih (4H, I), b = b_ih + b_hh (4H,) or None,
    h_0, c_0 and W_hh (4H, H); per step z = x_t W_ih^T + b + h W_hh^T, rows i | f | g | o,
    i, f, o = sigmoid, g = tanh, c' = f c + i g, h' = o tanh(c')."""

    @staticmethod
    def forward(ctx, x, w_ih, b, h0, c0, w, valid):
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        n = w.shape[1]
        width = 4 * n
        scale = _halving(xp, width, (slice(0, 2 * n), slice(3 * n, 4 * n)), x.dtype)
        shift = 1 - scale                                      # 0.5 on sigmoid rows, 0 on g
        acts = _projection(xp, x, w_ih, b, scale)              # becomes the activated i | f | g | o of every step
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        cs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0], cs[0] = h0, c0
        w_t = xp.ascontiguousarray(w.T * scale)
        rec, ig = xp.empty((batch, width), x.dtype), xp.empty((batch, n), x.dtype)
        start = _masked_steps(valid)
        for t in range(steps):
            z = acts[t]
            xp.matmul(hs[t], w_t, out=rec)
            z += rec
            xp.tanh(z, out=z)
            z *= scale
            z += shift
            xp.multiply(z[:, n:2 * n], cs[t], out=cs[t + 1])
            xp.multiply(z[:, :n], z[:, 2 * n:3 * n], out=ig)
            cs[t + 1] += ig
            xp.tanh(cs[t + 1], out=hs[t + 1])
            hs[t + 1] *= z[:, 3 * n:]
            mask = _step_mask(valid, start, t)
            if mask is not None:
                _carry(xp, hs[t + 1], hs[t], mask)
                _carry(xp, cs[t + 1], cs[t], mask)
        ctx.save_for_backward(x, w_ih, b, h0, c0, w)
        ctx.valid, ctx.start, ctx.cache = valid, start, (acts, hs, cs)
        return _mask_outputs(xp, hs, valid, start), hs[steps].copy(), cs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, dh_last, dc_last):
        if ctx.create_graph:
            return _recompute(ctx, (d_out, dh_last, dc_last), lambda x, w_ih, b, h0, c0, w: _run_steps(
                lambda p_t, s: fused.LSTMStep.apply(p_t, s[0], s[1], w), _graph_projection(x, w_ih, b),
                (h0, c0), ctx.valid))
        x, w_ih, b, h0, c0, w = ctx.saved_tensors
        xp, valid, start = ctx.xp, ctx.valid, ctx.start
        acts, hs, cs = ctx.cache
        steps, batch, width = acts.shape
        n = width // 4
        i, f, g, o = (acts[..., k * n:(k + 1) * n] for k in range(4))
        dz_all = xp.empty((steps, batch, 4, n), acts.dtype)  # first d(gate pre-activation) / (dc or dh) ...
        _product_into(xp, dz_all[:, :, 0], i, g)               # g i (1 - i)
        _product_into(xp, dz_all[:, :, 1], f, cs[:-1])         # c f (1 - f)
        block = dz_all[:, :, 2]                                # i (1 - g^2)
        xp.multiply(g, g, out=block)
        xp.subtract(1, block, out=block)
        block *= i
        tanh_c = dz_all[:, :, 3]
        xp.tanh(cs[1:], out=tanh_c)
        dc_from_h = tanh_c * tanh_c                            # dc += dh o (1 - tanh^2 c')
        xp.subtract(1, dc_from_h, out=dc_from_h)
        dc_from_h *= o
        _product_into(xp, tanh_c, o, tanh_c)                   # tanh(c') o (1 - o)
        dh, dc, tmp = dh_last.copy(), dc_last.copy(), xp.empty_like(dh_last)
        reads_out = bool(d_out.any())                          # False when only the final state is used
        for t in range(steps - 1, -1, -1):                     # ... then, step by step, the gradients themselves
            mask = _step_mask(valid, start, t)
            if reads_out:
                dh += d_out[t] if mask is None else d_out[t] * mask
            dc_in = None if mask is None else dc.copy()
            xp.multiply(dh, dc_from_h[t], out=tmp)
            dc += tmp
            dz = dz_all[t]
            dz[:, :3] *= dc[:, None]
            dz[:, 3] *= dh
            dc *= f[t]
            dz = dz.reshape(batch, width)
            if mask is not None:
                dz *= mask
                _carry(xp, dc, dc_in, mask)
                dh = xp.where(mask, dz @ w, dh)
            else:
                xp.matmul(dz, w, out=dh)
        dz_all = dz_all.reshape(steps, batch, width)
        need_x, need_w_ih, need_b, need_h, need_c, need_w, _ = ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(dz_all, x, w_ih, (need_x, need_w_ih, need_b))
        dw = dz_all.reshape(-1, width).T @ hs[:-1].reshape(-1, n) if need_w else None
        return dx, dw_ih, db, dh if need_h else None, dc if need_c else None, dw, None


def _product_into(xp, out, s, other):
    """out = other * s (1 - s): a sigmoid output's derivative times ``other`` (``out`` may be ``other``)."""
    if out is other:
        out *= s
    else:
        xp.multiply(other, s, out=out)
    out -= out * s


class GRUScan(Function):
    """outputs (T, B, H), h_T of a GRU from x (T, B, I), W_ih (3H, I), b_ih (3H,) or None, h_0, W_hh (3H, H)
    and b_hh (3H,); per step p = x_t W_ih^T + b_ih, gh = h W_hh^T + b_hh, rows r | z | n,
    r, z = sigmoid(p + gh), n = tanh(p_n + r gh_n), h' = n + z (h - n)."""

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, h0, w, b, valid):
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        n = w.shape[1]
        scale = _halving(xp, 3 * n, (slice(0, 2 * n),), x.dtype)
        p = _projection(xp, x, w_ih, b_ih, scale)
        acts = xp.empty((steps, batch, 4 * n), x.dtype)       # r | z | n | gh_n of every step
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0] = h0
        w_t, b_half = xp.ascontiguousarray(w.T * scale), b * scale
        gh = xp.empty((batch, 3 * n), x.dtype)
        start = _masked_steps(valid)
        for t in range(steps):
            a = acts[t]
            xp.matmul(hs[t], w_t, out=gh)
            gh += b_half
            gates = a[:, :2 * n]
            xp.add(p[t, :, :2 * n], gh[:, :2 * n], out=gates)
            xp.tanh(gates, out=gates)
            gates *= 0.5
            gates += 0.5
            a[:, 3 * n:] = gh[:, 2 * n:]
            cand = a[:, 2 * n:3 * n]
            xp.multiply(a[:, :n], gh[:, 2 * n:], out=cand)
            cand += p[t, :, 2 * n:]
            xp.tanh(cand, out=cand)
            new = hs[t + 1]
            xp.subtract(hs[t], cand, out=new)
            new *= a[:, n:2 * n]
            new += cand
            mask = _step_mask(valid, start, t)
            if mask is not None:
                _carry(xp, new, hs[t], mask)
        ctx.save_for_backward(x, w_ih, b_ih, h0, w, b)
        ctx.valid, ctx.start, ctx.cache = valid, start, (acts, hs)
        return _mask_outputs(xp, hs, valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, dh_last):
        if ctx.create_graph:
            return _recompute(ctx, (d_out, dh_last), lambda x, w_ih, b_ih, h0, w, b: _run_steps(
                lambda p_t, h: fused.GRUStep.apply(p_t, h, w, b), _graph_projection(x, w_ih, b_ih), h0,
                ctx.valid))
        x, w_ih, b_ih, h0, w, b = ctx.saved_tensors
        xp, valid, start = ctx.xp, ctx.valid, ctx.start
        acts, hs = ctx.cache
        steps, batch, _ = acts.shape
        n = hs.shape[2]
        r, z, cand, gh_n = (acts[..., k * n:(k + 1) * n] for k in range(4))
        coef_n = (1 - z) * (1 - cand * cand)                 # dn = dh' (1 - z)(1 - n^2)
        coef_r = gh_n * r * (1 - r)                          # dr = dn gh_n r (1 - r)
        coef_z = (hs[:-1] - cand) * z * (1 - z)              # dz = dh' (h - n) z (1 - z)
        d_gh = xp.empty((steps, batch, 3 * n), x.dtype)      # [dr, dz, dn r]: the recurrent side
        d_pn = xp.empty((steps, batch, n), x.dtype)          # dn: the input side of the candidate
        dh, rec = dh_last.copy(), xp.empty_like(dh_last)
        reads_out = bool(d_out.any())
        for t in range(steps - 1, -1, -1):
            mask = _step_mask(valid, start, t)
            if reads_out:
                dh += d_out[t] if mask is None else d_out[t] * mask
            dg = d_gh[t]
            xp.multiply(dh, coef_n[t], out=d_pn[t])
            xp.multiply(d_pn[t], coef_r[t], out=dg[:, :n])
            xp.multiply(dh, coef_z[t], out=dg[:, n:2 * n])
            xp.multiply(d_pn[t], r[t], out=dg[:, 2 * n:])
            if mask is not None:
                dg *= mask
                d_pn[t] *= mask
                dh = xp.where(mask, dh * z[t] + dg @ w, dh)
            else:
                xp.matmul(dg, w, out=rec)
                dh *= z[t]
                dh += rec
        del coef_n, coef_r, coef_z
        need_x, need_w_ih, need_b_ih, need_h, need_w, need_b, _ = ctx.needs_input_grad
        dp = d_gh.copy()                                     # the input side: [dr, dz, dn]
        dp[..., 2 * n:] = d_pn
        dx, dw_ih, db_ih = _input_grads(dp, x, w_ih, (need_x, need_w_ih, need_b_ih))
        dw = d_gh.reshape(-1, 3 * n).T @ hs[:-1].reshape(-1, n) if need_w else None
        db = d_gh.sum(axis=(0, 1)) if need_b else None
        return dx, dw_ih, db_ih, dh if need_h else None, dw, db, None


class RNNScan(Function):
    """outputs (T, B, H), h_T of an Elman RNN from x (T, B, I), W_ih (H, I), b = b_ih + b_hh or None, h_0
    and W_hh (H, H); per step h' = act(x_t W_ih^T + b + h W_hh^T), act = tanh or relu."""

    @staticmethod
    def forward(ctx, x, w_ih, b, h0, w, nonlinearity, valid):
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        n = w.shape[1]
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0] = h0
        hs[1:] = _projection(xp, x, w_ih, b, None)
        w_t = xp.ascontiguousarray(w.T)
        rec = xp.empty((batch, n), x.dtype)
        start = _masked_steps(valid)
        for t in range(steps):
            new = hs[t + 1]
            xp.matmul(hs[t], w_t, out=rec)
            new += rec
            if nonlinearity == "tanh":
                xp.tanh(new, out=new)
            else:
                xp.maximum(new, 0, out=new)
            mask = _step_mask(valid, start, t)
            if mask is not None:
                _carry(xp, new, hs[t], mask)
        ctx.save_for_backward(x, w_ih, b, h0, w)
        ctx.nonlinearity, ctx.valid, ctx.start, ctx.hs = nonlinearity, valid, start, hs
        return _mask_outputs(xp, hs, valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, dh_last):
        if ctx.create_graph:
            return _recompute(ctx, (d_out, dh_last), lambda x, w_ih, b, h0, w: _run_steps(
                lambda p_t, h: fused.RNNStep.apply(p_t, h, w, ctx.nonlinearity), _graph_projection(x, w_ih, b),
                h0, ctx.valid))
        x, w_ih, b, h0, w = ctx.saved_tensors
        xp, valid, start, hs = ctx.xp, ctx.valid, ctx.start, ctx.hs
        steps, n = x.shape[0], w.shape[1]
        slope = 1 - hs[1:] * hs[1:] if ctx.nonlinearity == "tanh" else (hs[1:] > 0).astype(x.dtype)
        da_all = xp.empty_like(slope)
        dh = dh_last.copy()
        reads_out = bool(d_out.any())
        for t in range(steps - 1, -1, -1):
            mask = _step_mask(valid, start, t)
            if reads_out:
                dh += d_out[t] if mask is None else d_out[t] * mask
            da = da_all[t]
            xp.multiply(dh, slope[t], out=da)
            if mask is not None:
                da *= mask
                dh = xp.where(mask, da @ w, dh)
            else:
                xp.matmul(da, w, out=dh)
        need_x, need_w_ih, need_b, need_h, need_w, _, _ = ctx.needs_input_grad
        dx, dw_ih, db = _input_grads(da_all, x, w_ih, (need_x, need_w_ih, need_b))
        dw = da_all.reshape(-1, n).T @ hs[:-1].reshape(-1, n) if need_w else None
        return dx, dw_ih, db, dh if need_h else None, dw, None, None
