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
from .kernels import context_of, half_sigmoid_rows, input_grads, needs_context, projection
from .trace_scan import Kernel, carry, mask_outputs, masked_steps, named, step_mask

GATES = GateLayout(r="sigmoid", z="sigmoid", n="tanh")


class GRUKernel(Kernel):
    """All T steps of a GRU layer on arrays, with backpropagation through time by hand;
    with q = h W_hn^T + b_hn and p_n = x W_in^T + b_in:

        dp_n = dh_t (1 - z)(1 - n^2)          dq = dp_n r
        dz_r = dp_n q r (1 - r)               dz_z = dh_t (h_{t-1} - n) z (1 - z)
        dh_{t-1} = dh_t z + [dz_r, dz_z, dq] W_hh

    The input side gets [dz_r, dz_z, dp_n], the recurrent side [dz_r, dz_z, dq]."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w_ih, w, b_ih, b = params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        n = w.shape[1]
        r_rows, z_rows, n_rows = (GATES.rows(name, n) for name in GATES.names)
        if b is None:
            b = xp.zeros(3 * n, x.dtype)
        scale = half_sigmoid_rows(xp, GATES, n, x.dtype)
        p = projection(xp, x, w_ih, b_ih, scale, context_of(params))
        acts = xp.empty((steps, batch, 4 * n), x.dtype)       # r | z | n | q of every step
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0] = h0
        w_t, b_half = xp.ascontiguousarray(w.T * scale), b * scale
        gh = xp.empty((batch, 3 * n), x.dtype)
        start = masked_steps(valid)
        for t in range(steps):
            a = acts[t]
            xp.matmul(hs[t], w_t, out=gh)
            gh += b_half
            gates = a[:, :2 * n]                               # r | z, activated by one tanh
            xp.add(p[t, :, :2 * n], gh[:, :2 * n], out=gates)
            xp.tanh(gates, out=gates)
            gates *= 0.5
            gates += 0.5
            a[:, 3 * n:] = gh[:, n_rows]
            cand = a[:, n_rows]
            xp.multiply(a[:, r_rows], gh[:, n_rows], out=cand)
            cand += p[t, :, n_rows]
            xp.tanh(cand, out=cand)
            new = hs[t + 1]
            xp.subtract(hs[t], cand, out=new)
            new *= a[:, z_rows]
            new += cand
            mask = step_mask(valid, start, t)
            if mask is not None:
                carry(xp, new, hs[t], mask)
        ctx.start, ctx.cache, ctx.states = start, acts, (hs,)
        return mask_outputs(xp, hs[1:], valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w_ih, w = ctx.saved_tensors[0], ctx.params["weight_ih"], ctx.params["weight_hh"]
        xp, valid, start = ctx.xp, ctx.valid, ctx.start
        acts, (hs,) = ctx.cache, ctx.states
        steps, batch, _ = acts.shape
        n = hs.shape[2]
        r, z, cand, q = (acts[..., k * n:(k + 1) * n] for k in range(4))
        coef_n = (1 - z) * (1 - cand * cand)                 # dp_n = dh' (1 - z)(1 - n^2)
        coef_r = q * r * (1 - r)                             # dz_r = dp_n q r (1 - r)
        coef_z = (hs[:-1] - cand) * z * (1 - z)              # dz_z = dh' (h - n) z (1 - z)
        d_gh = xp.empty((steps, batch, 3 * n), x.dtype)      # [dz_r, dz_z, dq]: the recurrent side
        d_pn = xp.empty((steps, batch, n), x.dtype)          # dp_n: the input side of the candidate
        dh, rec = d_final[0].copy(), xp.empty_like(d_final[0])
        reads_out = d_out is not None
        for t in range(steps - 1, -1, -1):
            mask = step_mask(valid, start, t)
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
        dp = d_gh.copy()                                     # the input side: [dz_r, dz_z, dp_n]
        dp[..., 2 * n:] = d_pn
        grads = input_grads(dp, x, w_ih, need_x, need_params["weight_ih"], needs_context(need_params))
        if need_params["bias_ih"]:
            grads["bias_ih"] = dp.reshape(-1, 3 * n).sum(axis=0)
        if need_params["weight_hh"]:
            grads["weight_hh"] = d_gh.reshape(-1, 3 * n).T @ hs[:-1].reshape(-1, n)
        if need_params["bias_hh"]:
            grads["bias_hh"] = d_gh.sum(axis=(0, 1))
        dx = grads.pop("x", None)
        return dx, (dh if need_parts[0] else None,), grads


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
