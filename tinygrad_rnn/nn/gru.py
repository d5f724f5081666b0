"""The GRU cell: its equations, its composed step, and its hand-tuned kernel.

Gated recurrent unit (Cho et al. 2014), PyTorch's equations and gate order, rows
stacked r | z | n:

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    h' = (1 - z) * n + z * h

``GRUCell.step`` is that, as graph ops; :class:`GRUKernel` is the whole sequence by
hand on arrays (one tanh for r and z together, the projection of all steps in
one matmul, dL/dW_hh a matmul over the rows of a block of steps at a time, as the
backward loop leaves them: :class:`~tinygrad_rnn.nn.kernels.RowGrads`).
"""
from .. import backend, creation
from .cells import GatedCell, GateLayout, project_input
from .kernels import (KernelPlan, context_of, gate_scales, keep_plan, kept_plan, lease_plan, plan_key, projection,
                      row_grads)
from .trace_scan import Kernel, carry, fresh_outputs, masked_steps, named

GATES = GateLayout(r="sigmoid", z="sigmoid", n="tanh")


_CHUNK = 1 << 15            # elements per gate in a chunk of steps of the backward pass


class GRUKernel(Kernel):
    """All T steps of a GRU layer on arrays, with backpropagation through time by hand;
    with q = h W_hn^T + b_hn and p_n = x W_in^T + b_in:

        dp_n = dh_t (1 - z)(1 - n^2)          dq = dp_n r
        dz_r = dp_n q r (1 - r)               dz_z = dh_t (h_{t-1} - n) z (1 - z)
        dh_{t-1} = dh_t z + [dz_r, dz_z, dq] W_hh

    The input side gets [dz_r, dz_z, dp_n], the recurrent side [dz_r, dz_z, dq]: one
    (T, B, 4H) buffer holds dq | dz_r | dz_z | dp_n per step, so that each side is a run of
    three blocks (the recurrent side's rows of W_hh taken in the order n | r | z) and each
    pair of neighbouring blocks is one multiply by a pair of local derivatives. b_hr and
    b_hz are added with the input projection (they sum with it before the sigmoid); b_hn
    stays in the step, inside r * (...). The buffers and the views each step reads are a
    :class:`_Plan`, kept for the next call of the same shape (:class:`~tinygrad_rnn.nn.kernels.Plans`)."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w_ih, w, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        n = w.shape[1]
        plan = lease_plan(ctx, cell, plan_key(x, n), lambda: _Plan(xp, steps, batch, x.shape[2], n, x.dtype),
                          steps)
        bias, b_hn = None, None
        if b_ih is not None:
            bias = b_ih.copy()
            bias[:2 * n] += b_hh[:2 * n]
            b_hn = b_hh[2 * n:]
        projection(xp, x, w_ih, bias, plan.p, plan.w_ih_t, plan.column_scale, context_of(params))
        xp.multiply(w.T, plan.column_scale, out=plan.w_t)
        hs, w_t, scale, shift = plan.hs, plan.w_t, plan.scale, plan.shift
        hs[0] = h0
        start = masked_steps(valid)
        add, matmul, multiply, subtract, tanh = xp.add, xp.matmul, xp.multiply, xp.subtract, xp.tanh
        for t, (h, h_next, rec, q, a, p, r, z, cand, p_n, h_minus_n) in enumerate(plan.steps()):
            matmul(h, w_t, out=rec)                            # h W_hh^T (r, z halved); its last block is q
            if b_hn is not None:
                add(q, b_hn, out=q)
            add(p, rec, out=a)
            tanh(a, out=a)
            multiply(a, scale, out=a)
            add(a, shift, out=a)                               # r | z = sigmoid, one tanh of halves; the
            multiply(r, q, out=cand)                           # third block is overwritten with n:
            add(cand, p_n, out=cand)
            tanh(cand, out=cand)
            subtract(h, cand, out=h_minus_n)
            multiply(h_minus_n, z, out=h_next)
            add(h_next, cand, out=h_next)                      # h' = n + z (h - n)
            if start is not None and t >= start:
                carry(xp, h_next, h, valid[t][:, None])
        ctx.start = start
        keep_plan(ctx, plan)
        return fresh_outputs(xp, hs, valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w_ih, w = ctx.saved_tensors[0], ctx.params["weight_ih"], ctx.params["weight_hh"]
        xp, valid, start, plan = ctx.xp, ctx.valid, ctx.start, kept_plan(ctx, _Plan)
        back = plan.backward()
        n = w.shape[1]
        w_back, dh, rec = back.w_back, back.dh, back.rec
        w_back[:n], w_back[n:] = w[2 * n:], w[:2 * n]           # rows n | r | z, as dq | dz_r | dz_z
        xp.copyto(dh, d_final[0])
        reads_out, need_h0 = d_out is not None, need_parts[0]
        recurrent, d_input = back.d[..., :3 * n], back.d[..., n:]   # [dq, dz_r, dz_z]; [dz_r, dz_z, dp_n]
        rows = row_grads(xp, x, plan.hs, w_ih, need_x, need_params, d_input, recurrent)
        add, matmul, multiply = xp.add, xp.matmul, xp.multiply
        for first, locals_of_chunk, steps_back in back.chunks:  # the last chunk first
            _local_derivatives(xp, *locals_of_chunk)
            for t, dz_z_dp_n, dq_dz_r, dp_n, d_hh, coef_z_n, r_coef_r, z in steps_back:
                if start is not None and t >= start:
                    mask = valid[t][:, None]
                    if reads_out:
                        dh += d_out[t] * mask
                    multiply(coef_z_n, dh, out=dz_z_dp_n)
                    dz_z_dp_n *= mask
                    multiply(r_coef_r, dp_n, out=dq_dz_r)
                    xp.copyto(dh, dh * z + d_hh @ w_back, where=mask)
                    continue
                if reads_out:
                    add(dh, d_out[t], out=dh)
                multiply(coef_z_n, dh, out=dz_z_dp_n)           # dz_z, dp_n
                multiply(r_coef_r, dp_n, out=dq_dz_r)           # dq, dz_r
                if t or need_h0:
                    matmul(d_hh, w_back, out=rec)
                    multiply(dh, z, out=dh)
                    add(dh, rec, out=dh)                        # dh_{t-1}
            rows.done(first)
        dx, grads = rows.result()
        for name in ("weight_hh", "bias_hh"):           # rows n | r | z back to r | z | n
            if name in grads:
                grads[name] = _rows_rzn(xp, grads[name], n)
        return dx, (dh.copy() if need_h0 else None,), grads


def _rows_rzn(xp, g, n):
    """Rows n | r | z of ``g`` (the recurrent side's order) put back in the order r | z | n."""
    return xp.concatenate([g[n:], g[:n]])


def _local_derivatives(xp, rz, q, cand, h_minus_n, local, scratch):
    """For a chunk of S steps, gate-major, from r and z (2, S, B, H) and q, n, h_{t-1} - n
    (S, B, H): local (5, S, B, H) = r, coef_r = q r (1 - r) (dz_r per dp_n),
    coef_z = (h_{t-1} - n) z (1 - z) (dz_z per dh), coef_n = (1 - z)(1 - n^2) (dp_n per dh), z."""
    xp.copyto(local[::4], rz)
    r, coef_r, coef_z, coef_n, z = local
    xp.subtract(1, z, out=scratch)
    xp.multiply(scratch, z, out=coef_z)
    xp.multiply(coef_z, h_minus_n, out=coef_z)
    xp.multiply(cand, cand, out=coef_n)
    xp.subtract(1, coef_n, out=coef_n)
    xp.multiply(coef_n, scratch, out=coef_n)
    xp.subtract(1, r, out=coef_r)
    xp.multiply(coef_r, r, out=coef_r)
    xp.multiply(coef_r, q, out=coef_r)


class _Plan(KernelPlan):
    """A GRU layer's buffers for one shape, and the views each step reads: p (T, B, 3H), the
    projected inputs (r and z columns halved); rec (T, B, 3H), h W_hh^T per step, its last block
    q; acts (T, B, 3H), r | z | n; h_minus_n (T, B, H); hs (T+1, B, H); w_t (H, 3H), W_hh^T with
    r and z columns halved; scale and shift (B, 3H), 0.5 and 0.5 on r and z."""

    __slots__ = ("w_ih_t", "p", "rec", "acts", "h_minus_n", "hs", "column_scale", "scale", "shift", "w_t")
    kept = ("p", "rec", "acts", "h_minus_n", "hs")    # what its backward reads (see kernels.keep_plan)

    def __init__(self, xp, steps, batch, inputs, n, dtype):
        self.w_ih_t = xp.empty((inputs, 3 * n), dtype)                   # W_ih^T (r, z columns halved)
        self.p, self.rec, self.acts = (xp.empty((steps, batch, 3 * n), dtype) for _ in range(3))
        self.h_minus_n = xp.empty((steps, batch, n), dtype)
        self.hs = xp.empty((steps + 1, batch, n), dtype)
        self.column_scale, self.scale, self.shift = gate_scales(xp, GATES, n, batch, dtype)
        self.w_t = xp.empty((n, 3 * n), dtype)
        self._start(steps)

    def _views(self):
        n = self.hs.shape[2]
        hs, rec, acts, p = self.hs, self.rec, self.acts, self.p
        return [(hs[t], hs[t + 1], rec[t], rec[t][:, 2 * n:], acts[t], p[t], acts[t][:, :n], acts[t][:, n:2 * n],
                 acts[t][:, 2 * n:], p[t][:, 2 * n:], self.h_minus_n[t]) for t in range(p.shape[0])]

    def _make_backward(self, variant):
        return _BackwardPlan(self)


class _BackwardPlan:
    """d (T, B, 4H): dq | dz_r | dz_z | dp_n per step; w_back (3H, H): W_hh's rows n | r | z;
    dh, rec (B, H); per chunk of S steps, the last first, its first step, the arguments of
    :func:`_local_derivatives` (into local (5, S, B, H)) and the views of each step, the last first."""

    __slots__ = ("d", "w_back", "dh", "rec", "local", "scratch", "chunks")

    def __init__(self, plan):
        steps, batch, width = plan.p.shape
        n = width // 3
        xp = backend.get_array_module(plan.p)
        dtype = plan.p.dtype
        self.d = xp.empty((steps, batch, 4 * n), dtype)
        blocks = self.d.reshape(steps, batch, 4, n).transpose(0, 2, 1, 3)    # d[t] as (4, B, H)
        self.w_back = xp.empty((3 * n, n), dtype)
        self.dh, self.rec = xp.empty((batch, n), dtype), xp.empty((batch, n), dtype)
        size = min(steps, max(1, _CHUNK // (batch * n)))
        self.local, self.scratch = xp.empty((5, size, batch, n), dtype), xp.empty((size, batch, n), dtype)
        self.chunks = []
        for stop in range(steps, 0, -size):
            first = max(0, stop - size)
            m = stop - first
            rz = plan.acts[first:stop].reshape(m, batch, 3, n)[:, :, :2].transpose(2, 0, 1, 3)
            locals_of_chunk = (rz, plan.rec[first:stop, :, 2 * n:], plan.acts[first:stop, :, 2 * n:],
                               plan.h_minus_n[first:stop], self.local[:, :m], self.scratch[:m])
            self.chunks.append((first, locals_of_chunk, [
                (t, blocks[t, 2:], blocks[t, :2], self.d[t][:, 3 * n:], self.d[t][:, :3 * n],
                 self.local[2:4, t - first], self.local[0:2, t - first], self.local[4, t - first])
                for t in range(stop - 1, first - 1, -1)]))


class GRUCell(GatedCell):
    """GRU cell, PyTorch's ``nn.GRUCell`` (gates r | z | n; equations in the module docstring).

    Args:
        input_size, hidden_size: features of x and of h.
        bias: with ``bias_ih`` and ``bias_hh`` (3H each; default True).
        fused: a call and a sequence run through :class:`GRUKernel` (default); False runs the
            composed ``step`` (one graph node per op when called, traced for a sequence).
        device, dtype: of the parameters.
    Inputs: ``x``, ``h`` (optional, zeros when None).  Outputs: ``h'``.
    Shape: x (B, I) or (I,), h (B, H) or (H,).
    Parameters: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh`` (3H), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.GRUCell(3, 8)
        h = cell(tg.randn(4, 3))                # (4, 8)
        h = cell(tg.randn(4, 3), h)
    """

    gates = GATES
    own_kernel = GRUKernel

    def project(self, x):
        """x W_ih^T + b_ih (b_hh stays in the step: b_hn sits inside r * (...))."""
        return project_input(x, self.weight_ih, self.bias_ih)

    def step(self, p, h):
        p_r, p_z, p_n = GATES.split(p)
        h_r, h_z, h_n = GATES.split(h @ self.weight_hh.T + self._recurrent_bias(h))
        r = named((p_r + h_r).sigmoid(), "r")
        z = named((p_z + h_z).sigmoid(), "z")
        n = named((p_n + r * h_n).tanh(), "n")
        return (1 - z) * n + z * h

    def _recurrent_bias(self, h):
        if self.bias_hh is not None:
            return self.bias_hh
        return creation.zeros(3 * self.hidden_size, dtype=h.dtype, device=h.device)
