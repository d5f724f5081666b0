"""The Elman RNN cell: its equation, its composed step, and its hand-tuned kernel.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),    act = tanh or relu

(Elman 1990; with relu and ``init.eye_(weight_hh)`` it is the IRNN of Le, Jaitly &
Hinton 2015.) ``RNNCell.step`` is that as graph ops; :class:`RNNKernel` runs the
whole sequence on arrays, each step one matmul into a preallocated buffer and one
in-place activation.
"""
from .. import backend
from .cells import GatedCell, GateLayout
from .kernels import context_of, input_grads, needs_context, projection
from .trace_scan import Kernel, carry, mask_outputs, masked_steps, named, step_mask

GATES = GateLayout(h="tanh")


class RNNKernel(Kernel):
    """All T steps of an Elman layer on arrays; backward da_t = dh_t act'(a_t),
    dh_{t-1} = da_t W_hh, and dL/dW_hh = sum_t da_t^T h_{t-1} as one matmul."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w = params["weight_hh"]
        bias = None if params["bias_ih"] is None else params["bias_ih"] + params["bias_hh"]
        n = w.shape[1]
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0] = h0
        hs[1:] = projection(xp, x, params["weight_ih"], bias, context=context_of(params))
        w_t = xp.ascontiguousarray(w.T)
        rec = xp.empty((batch, n), x.dtype)
        start = masked_steps(valid)
        ctx.nonlinearity = cell.nonlinearity
        tanh = cell.nonlinearity == "tanh"
        for t in range(steps):
            new = hs[t + 1]
            xp.matmul(hs[t], w_t, out=rec)
            new += rec
            if tanh:
                xp.tanh(new, out=new)
            else:
                xp.maximum(new, 0, out=new)
            mask = step_mask(valid, start, t)
            if mask is not None:
                carry(xp, new, hs[t], mask)
        ctx.start, ctx.states = start, (hs,)
        return mask_outputs(xp, hs[1:], valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w = ctx.saved_tensors[0], ctx.params["weight_hh"]
        xp, valid, start, (hs,) = ctx.xp, ctx.valid, ctx.start, ctx.states
        steps, n = x.shape[0], w.shape[1]
        slope = 1 - hs[1:] * hs[1:] if ctx.nonlinearity == "tanh" else (hs[1:] > 0).astype(x.dtype)
        da_all = xp.empty_like(slope)
        dh = d_final[0].copy()
        reads_out = d_out is not None
        for t in range(steps - 1, -1, -1):
            mask = step_mask(valid, start, t)
            if reads_out:
                dh += d_out[t] if mask is None else d_out[t] * mask
            da = da_all[t]
            xp.multiply(dh, slope[t], out=da)
            if mask is not None:
                da *= mask
                dh = xp.where(mask, da @ w, dh)
            else:
                xp.matmul(da, w, out=dh)
        grads = input_grads(da_all, x, ctx.params["weight_ih"], need_x, need_params["weight_ih"],
                            needs_context(need_params))
        if need_params["weight_hh"]:
            grads["weight_hh"] = da_all.reshape(-1, n).T @ hs[:-1].reshape(-1, n)
        if need_params["bias_ih"] or need_params["bias_hh"]:
            db = da_all.reshape(-1, n).sum(axis=0)
            grads["bias_ih"], grads["bias_hh"] = db, db
        dx = grads.pop("x", None)
        return dx, (dh if need_parts[0] else None,), grads


class RNNCell(GatedCell):
    """Elman cell, PyTorch's ``nn.RNNCell``: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh).

    Args:
        input_size, hidden_size: features of x and of h.
        bias: with ``bias_ih`` and ``bias_hh`` (H each; default True).
        nonlinearity: "tanh" (default) or "relu".
        fused: a call and a sequence run through :class:`RNNKernel` (default); False runs the
            composed ``step`` (one graph node per op when called, traced for a sequence).
        device, dtype: of the parameters.
    Inputs: ``x``, ``h`` (optional, zeros when None).  Outputs: ``h'``.
    Shape: x (B, I) or (I,), h (B, H) or (H,).
    Parameters: ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.RNNCell(3, 8, nonlinearity="relu")
        nn.init.eye_(cell.weight_hh)            # the IRNN of Le, Jaitly & Hinton (2015)
        h = cell(tg.randn(4, 3))                # (4, 8)
    """

    gates = GATES
    own_kernel = RNNKernel

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", fused=True, *,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, fused, device=device, dtype=dtype)

    def step(self, p, h):
        a = p + h @ self.weight_hh.T
        return named(a.tanh() if self.nonlinearity == "tanh" else a.relu(), "h")

    def extra_repr(self):
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else ", nonlinearity='relu'")
