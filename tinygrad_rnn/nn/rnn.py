"""The Elman RNN cell: its equation, its composed step, and its hand-tuned kernel.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),    act = tanh or relu

(Elman 1990; with relu and ``init.eye_(weight_hh)`` it is the IRNN of Le, Jaitly &
Hinton 2015.) ``RNNCell.step`` is that as graph ops; :class:`RNNKernel` runs the
whole sequence on arrays, each step one matmul into a preallocated buffer and one
in-place activation.
"""
from .. import backend
from .cells import GatedCell, GateLayout
from .kernels import KernelPlan, context_of, keep_plan, kept_plan, lease_plan, plan_key, projection, row_grads
from .trace_scan import Kernel, carry, fresh_outputs, masked_steps, named

GATES = GateLayout(h="tanh")


class RNNKernel(Kernel):
    """All T steps of an Elman layer on arrays; backward da_t = dh_t act'(a_t),
    dh_{t-1} = da_t W_hh, and dL/dW_hh = sum_t da_t^T h_{t-1} as a matmul per block of steps
    (:class:`~tinygrad_rnn.nn.kernels.RowGrads`). The buffers and the views each step reads
    are a :class:`_Plan`, kept for the next call of the same shape
    (:class:`~tinygrad_rnn.nn.kernels.Plans`)."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w = params["weight_hh"]
        bias = None if params["bias_ih"] is None else params["bias_ih"] + params["bias_hh"]
        n = w.shape[1]
        plan = lease_plan(ctx, cell, plan_key(x, n), lambda: _Plan(xp, steps, batch, x.shape[2], n, x.dtype),
                          steps)
        hs, rec, w_t = plan.hs, plan.rec, plan.w_t
        hs[0] = h0
        projection(xp, x, params["weight_ih"], bias, hs[1:], plan.w_ih_t, context=context_of(params))
        xp.copyto(w_t, w.T)
        start = masked_steps(valid)
        ctx.nonlinearity = cell.nonlinearity
        relu = cell.nonlinearity == "relu"
        add, matmul, maximum, tanh = xp.add, xp.matmul, xp.maximum, xp.tanh
        for t, (h, new) in enumerate(plan.steps()):
            matmul(h, w_t, out=rec)
            add(new, rec, out=new)
            if relu:
                maximum(new, 0, out=new)
            else:
                tanh(new, out=new)
            if start is not None and t >= start:
                carry(xp, new, h, valid[t][:, None])
        ctx.start = start
        keep_plan(ctx, plan)
        return fresh_outputs(xp, hs, valid, start), hs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w = ctx.saved_tensors[0], ctx.params["weight_hh"]
        xp, valid, start, plan = ctx.xp, ctx.valid, ctx.start, kept_plan(ctx, _Plan)
        hs, da_all, dh = plan.hs, plan.da, plan.dh
        if ctx.nonlinearity == "tanh":                          # act'(a_t) for all t, made da_t in the loop
            xp.multiply(hs[1:], hs[1:], out=da_all)
            xp.subtract(1, da_all, out=da_all)
        else:
            xp.sign(hs[1:], out=da_all)                         # relu: h_t >= 0, so 1 where h_t > 0, else 0
        xp.copyto(dh, d_final[0])
        reads_out, need_h0 = d_out is not None, need_parts[0]
        rows = row_grads(xp, x, hs, ctx.params["weight_ih"], need_x, need_params, da_all)
        add, matmul, multiply, done = xp.add, xp.matmul, xp.multiply, rows.done
        for t, da in plan.backward():
            if start is not None and t >= start:
                mask = valid[t][:, None]
                if reads_out:
                    dh += d_out[t] * mask
                da *= dh
                da *= mask
                xp.copyto(dh, da @ w, where=mask)
                done(t)
                continue
            if reads_out:
                add(dh, d_out[t], out=dh)
            multiply(da, dh, out=da)
            if t or need_h0:
                matmul(da, w, out=dh)
            done(t)
        dx, grads = rows.result()
        return dx, (dh.copy() if need_h0 else None,), grads


class _Plan(KernelPlan):
    """An RNN layer's buffers for one shape, and the views each step reads: hs (T+1, B, H),
    hs[t + 1] first the projected input of step t, then h_t; da (T, B, H), act'(a_t), then
    da_t; w_t = W_hh^T; rec and dh (B, H)."""

    __slots__ = ("w_ih_t", "hs", "da", "w_t", "rec", "dh")
    kept = ("hs", "da", "dh")    # what its backward reads (see kernels.keep_plan)

    def __init__(self, xp, steps, batch, inputs, n, dtype):
        self.w_ih_t = xp.empty((inputs, n), dtype)                   # W_ih^T
        self.hs, self.da = xp.empty((steps + 1, batch, n), dtype), xp.empty((steps, batch, n), dtype)
        self.w_t, self.rec, self.dh = xp.empty((n, n), dtype), xp.empty((batch, n), dtype), xp.empty((batch, n), dtype)
        self._start(steps)

    def _views(self):
        return [(self.hs[t], self.hs[t + 1]) for t in range(self.da.shape[0])]

    def _make_backward(self, variant):
        """The views each backward step reads, the last step first."""
        return [(t, self.da[t]) for t in range(self.da.shape[0] - 1, -1, -1)]


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
