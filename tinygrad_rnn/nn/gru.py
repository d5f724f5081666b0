"""The GRU cell: its equations, its composed step, and its hand-tuned kernel.

Gated recurrent unit (Cho et al. 2014), PyTorch's equations and gate order, rows
stacked r | z | n:

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
    h' = (1 - z) * n + z * h

``GRUCell.step`` is that, as graph ops; :class:`GRUKernel` is the whole sequence by
hand on arrays (one tanh for r and z together, the projection of all steps in
one matmul, dL/dW_hh in one matmul over all steps).
"""
from .. import backend, creation
from .cells import GatedCell, GateLayout, project_input
from .kernels import (context_of, fresh_outputs, half_sigmoid_rows, input_grads, lease_plan, needs_context, plan_key,
                      projection)
from .trace_scan import Kernel, carry, masked_steps, named

GATES = GateLayout(r="sigmoid", z="sigmoid", n="tanh")


class GRUKernel(Kernel):
    """All T steps of a GRU layer on arrays, with backpropagation through time by hand;
    with q = h W_hn^T + b_hn and p_n = x W_in^T + b_in:

        dp_n = dh_t (1 - z)(1 - n^2)          dq = dp_n r
        dz_r = dp_n q r (1 - r)               dz_z = dh_t (h_{t-1} - n) z (1 - z)
        dh_{t-1} = dh_t z + [dz_r, dz_z, dq] W_hh

    The input side gets [dz_r, dz_z, dp_n], the recurrent side [dz_r, dz_z, dq]. b_hr and
    b_hz are added with the input projection (they sum with it before the sigmoid); only
    b_hn stays in the step. The buffers and the views each step reads are a :class:`_Plan`,
    kept for the next call of the same shape (:class:`~tinygrad_rnn.nn.kernels.Plans`)."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w_ih, w, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        n = w.shape[1]
        plan = lease_plan(ctx, cell, plan_key(x, n), lambda: _Plan(xp, steps, batch, x.shape[2], n, x.dtype))
        bias, b_hn = None, None
        if b_ih is not None:
            bias = b_ih.copy()
            bias[:2 * n] += b_hh[:2 * n]
            b_hn = b_hh[2 * n:]
        projection(xp, x, w_ih, bias, plan.p, plan.w_ih_t, plan.column_scale, context_of(params))
        xp.multiply(w.T, plan.column_scale, out=plan.w_t)
        hs, w_t, gh, gh_rz, gh_n = plan.hs, plan.w_t, plan.gh, plan.gh_rz, plan.gh_n
        hs[0] = h0
        start = masked_steps(valid)
        add, matmul, multiply, subtract, tanh = xp.add, xp.matmul, xp.multiply, xp.subtract, xp.tanh
        for t, (h, h_next, rz, p_rz, q, cand, r, z, p_n) in enumerate(plan.forward_steps):
            matmul(h, w_t, out=gh)
            add(p_rz, gh_rz, out=rz)
            tanh(rz, out=rz)                                # r | z = sigmoid, by one tanh of halves
            multiply(rz, 0.5, out=rz)
            add(rz, 0.5, out=rz)
            if b_hn is not None:
                add(gh_n, b_hn, out=q)
            else:
                xp.copyto(q, gh_n)
            multiply(r, q, out=cand)
            add(cand, p_n, out=cand)
            tanh(cand, out=cand)
            subtract(h, cand, out=h_next)                   # h' = n + z (h - n)
            multiply(h_next, z, out=h_next)
            add(h_next, cand, out=h_next)
            if start is not None and t >= start:
                carry(xp, h_next, h, valid[t][:, None])
        ctx.start, ctx.plan, ctx.states = start, plan, (hs,)
        return fresh_outputs(xp, hs, valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w_ih, w = ctx.saved_tensors[0], ctx.params["weight_ih"], ctx.params["weight_hh"]
        xp, valid, start, plan = ctx.xp, ctx.valid, ctx.start, ctx.plan
        back = plan.backward()
        steps, batch, _ = x.shape
        _coefficients(xp, plan, back)
        dh, rec = back.dh, back.rec
        xp.copyto(dh, d_final[0])
        reads_out = d_out is not None
        add, matmul, multiply = xp.add, xp.matmul, xp.multiply
        for t, dg, d_pn, dz_r, dz_z, dq, coef_n, coef_r, coef_z, r, z in back.steps:
            if start is not None and t >= start:
                mask = valid[t][:, None]
                if reads_out:
                    dh += d_out[t] * mask
                multiply(dh, coef_n, out=d_pn)
                d_pn *= mask
                multiply(d_pn, coef_r, out=dz_r)
                multiply(dh, coef_z, out=dz_z)
                dz_z *= mask
                multiply(d_pn, r, out=dq)
                xp.copyto(dh, dh * z + dg @ w, where=mask)
                continue
            if reads_out:
                add(dh, d_out[t], out=dh)
            multiply(dh, coef_n, out=d_pn)
            multiply(d_pn, coef_r, out=dz_r)
            multiply(dh, coef_z, out=dz_z)
            multiply(d_pn, r, out=dq)
            matmul(dg, w, out=rec)
            multiply(dh, z, out=dh)
            add(dh, rec, out=dh)
        d_gh, dp = back.d_gh, back.dp                        # recurrent side [dz_r, dz_z, dq]; input side
        dp[..., :2 * dh.shape[1]] = d_gh[..., :2 * dh.shape[1]]   # [dz_r, dz_z, dp_n]
        grads = input_grads(dp, x, w_ih, need_x, need_params["weight_ih"], needs_context(need_params))
        if need_params["bias_ih"]:
            grads["bias_ih"] = dp.reshape(steps * batch, -1).sum(axis=0)
        if need_params["weight_hh"]:
            grads["weight_hh"] = d_gh.reshape(steps * batch, -1).T @ plan.hs[:-1].reshape(steps * batch, -1)
        if need_params["bias_hh"]:
            grads["bias_hh"] = d_gh.sum(axis=(0, 1))
        dx = grads.pop("x", None)
        return dx, (dh.copy() if need_parts[0] else None,), grads


def _coefficients(xp, plan, back):
    """Per step, what dh_t turns into along each path (all T at once, in the backward plan):
    coef_n = (1 - z)(1 - n^2), coef_r = q r (1 - r), coef_z = (h_{t-1} - n) z (1 - z)."""
    r, z, cand, q = plan.r, plan.z, plan.cand, plan.q
    coef_n, coef_r, coef_z = back.coef_n, back.coef_r, back.coef_z
    xp.subtract(plan.hs[:-1], cand, out=coef_z)
    xp.multiply(cand, cand, out=coef_n)
    xp.subtract(1, coef_n, out=coef_n)
    xp.subtract(1, z, out=coef_r)                        # 1 - z, for a moment
    xp.multiply(coef_n, coef_r, out=coef_n)
    xp.multiply(coef_z, z, out=coef_z)
    xp.multiply(coef_z, coef_r, out=coef_z)
    xp.subtract(1, r, out=coef_r)
    xp.multiply(coef_r, r, out=coef_r)
    xp.multiply(coef_r, q, out=coef_r)


class _Plan:
    """A GRU layer's buffers for one shape, and the views each step reads: p (T, B, 3H), the
    projected inputs (r and z columns halved); acts (T, B, 4H), each step's r | z | n | q;
    hs (T+1, B, H); w_t (H, 3H): W_hh^T, r and z columns halved; gh (B, 3H), h W_hh^T."""

    def __init__(self, xp, steps, batch, inputs, n, dtype):
        self.w_ih_t = xp.empty((inputs, 3 * n), dtype)                   # W_ih^T (sigmoid columns halved)
        self.p, self.acts = xp.empty((steps, batch, 3 * n), dtype), xp.empty((steps, batch, 4 * n), dtype)
        self.hs = xp.empty((steps + 1, batch, n), dtype)
        self.column_scale = half_sigmoid_rows(xp, GATES, n, dtype)
        self.w_t, self.gh = xp.empty((n, 3 * n), dtype), xp.empty((batch, 3 * n), dtype)
        self.gh_rz, self.gh_n = self.gh[:, :2 * n], self.gh[:, 2 * n:]
        self.r, self.z, self.cand, self.q = (self.acts[..., k * n:(k + 1) * n] for k in range(4))
        self.forward_steps = [(self.hs[t], self.hs[t + 1], self.acts[t][:, :2 * n], self.p[t][:, :2 * n],
                               self.q[t], self.cand[t], self.r[t], self.z[t], self.p[t][:, 2 * n:])
                              for t in range(steps)]
        self._backward = None

    def backward(self):
        if self._backward is None:
            self._backward = _BackwardPlan(self)
        return self._backward


class _BackwardPlan:
    """d_gh (T, B, 3H): [dz_r, dz_z, dq] per step; dp (T, B, 3H): [dz_r, dz_z, dp_n], its dp_n
    written by the loop, the rest copied after; coef_n, coef_r, coef_z (T, B, H); dh, rec (B, H);
    the views of each step, the last first."""

    def __init__(self, plan):
        steps, batch, width = plan.p.shape
        n = width // 3
        xp = backend.get_array_module(plan.p)
        dtype = plan.p.dtype
        self.d_gh, self.dp = xp.empty((steps, batch, 3 * n), dtype), xp.empty((steps, batch, 3 * n), dtype)
        self.coef_n, self.coef_r, self.coef_z = (xp.empty((steps, batch, n), dtype) for _ in range(3))
        self.dh, self.rec = xp.empty((batch, n), dtype), xp.empty((batch, n), dtype)
        self.steps = [(t, self.d_gh[t], self.dp[t][:, 2 * n:], self.d_gh[t][:, :n], self.d_gh[t][:, n:2 * n],
                       self.d_gh[t][:, 2 * n:], self.coef_n[t], self.coef_r[t], self.coef_z[t], plan.r[t], plan.z[t])
                      for t in range(steps - 1, -1, -1)]


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
