"""The LSTM cell: its equations, its composed step, and its hand-tuned kernel.

Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of
Gers et al. 2000), PyTorch's equations and gate order, rows stacked i | f | g | o:

    z = x W_ih^T + b_ih + h W_hh^T + b_hh
    i, f, o = sigmoid(z_i, z_f, z_o),   g = tanh(z_g)
    c' = f * c + i * g
    h' = o * tanh(c')

``LSTMCell.step`` is that, as graph ops: what a student reads, what the tracer
turns into one whole-sequence node, and the reference every other form is held
to. :class:`LSTMKernel` is the same sequence written out by hand on arrays, with
the tricks a tracer cannot find: the rows of the weights that feed sigmoid gates
are halved once per call, so ONE tanh activates all four gates of a step
(sigmoid(a) = (1 + tanh(a/2)) / 2), and the projection of all steps is written
straight into the buffer the gates are computed in. ``benchmarks/rnn_step.py``
shows what it still pays over the traced step.
"""
from .. import backend
from ..function import graph_retained
from .cells import GatedCell, GateLayout
from .kernels import (KernelPlan, context_of, gate_scales, keep_plan, kept_plan, lease_plan, plan_key, projection,
                      row_grads)
from .trace_scan import Kernel, carry, fresh_outputs, masked_steps

GATES = GateLayout(i="sigmoid", f="sigmoid", g="tanh", o="sigmoid")
_CHUNK = 1 << 15            # elements per gate in a chunk of steps of the backward pass


class LSTMKernel(Kernel):
    """All T steps of an LSTM layer on arrays, with backpropagation through time by hand:

        dc_t += dh_t o (1 - tanh^2 c_t)
        dz_o = dh_t tanh(c_t) o (1 - o)        dz_i = dc_t g i (1 - i)
        dz_f = dc_t c_{t-1} f (1 - f)          dz_g = dc_t i (1 - g^2)
        dc_{t-1} = dc_t f,    dh_{t-1} = dz W_hh

    The local derivatives are computed a chunk of steps at a time, just before the loop
    reaches them (while they are in cache: computed for all T at once, they cost per step
    3x more at T = 10,000 than at T = 100); dL/dW_hh, dL/dW_ih, dL/db and dL/dx are a matmul
    or a sum over the T*B rows of dz, taken a block of steps at a time as the loop leaves it
    (:class:`~tinygrad_rnn.nn.kernels.RowGrads`). The buffers and the views each step reads
    are a :class:`_Plan`, kept for the next call of the same shape
    (:class:`~tinygrad_rnn.nn.kernels.Plans`)."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, c0 = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w_ih, w = params["weight_ih"], params["weight_hh"]
        bias = None if params["bias_ih"] is None else params["bias_ih"] + params["bias_hh"]
        n = w.shape[1]
        plan = lease_plan(ctx, cell, plan_key(x, n), lambda: _Plan(xp, steps, batch, x.shape[2], n, x.dtype),
                          steps)
        hs, cs = plan.hs, plan.cs
        hs[0], cs[0] = h0, c0
        projection(xp, x, w_ih, bias, plan.acts, plan.w_ih_t, plan.column_scale, context_of(params))  # then the gates
        xp.multiply(w.T, plan.column_scale, out=plan.w_t)
        w_t, rec, ig, scale, shift = plan.w_t, plan.rec, plan.ig, plan.scale, plan.shift
        start = masked_steps(valid)
        add, matmul, multiply, tanh = xp.add, xp.matmul, xp.multiply, xp.tanh
        for t, (h, z, i, f, g, o, c, c_next, tanh_c, h_next) in enumerate(plan.steps()):
            matmul(h, w_t, out=rec)
            add(z, rec, out=z)
            tanh(z, out=z)                                  # tanh(z_g), tanh(z / 2) for the others
            multiply(z, scale, out=z)
            add(z, shift, out=z)                            # i, f, o = sigmoid(z)
            multiply(f, c, out=c_next)
            multiply(i, g, out=ig)
            add(c_next, ig, out=c_next)
            tanh(c_next, out=tanh_c)
            multiply(o, tanh_c, out=h_next)
            if start is not None and t >= start:
                mask = valid[t][:, None]
                carry(xp, h_next, h, mask)
                carry(xp, c_next, c, mask)
        ctx.start = start
        keep_plan(ctx, plan)
        return fresh_outputs(xp, hs, valid, start), hs[steps].copy(), cs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w_ih, w = ctx.saved_tensors[0], ctx.params["weight_ih"], ctx.params["weight_hh"]
        xp, valid, start, plan = ctx.xp, ctx.valid, ctx.start, kept_plan(ctx, _Plan)
        if getattr(ctx, "gates_overwritten", False):
            raise RuntimeError("LSTMKernel: a backward pass through this node stopped part way after writing "
                               "over its saved gates (it did not keep the graph); run the forward pass again")
        in_place = not graph_retained()
        ctx.gates_overwritten = in_place
        back = plan.backward(in_place)
        dh, dc, tmp = back.dh, back.dc, back.tmp
        xp.copyto(dh, d_final[0])
        xp.copyto(dc, d_final[1])
        reads_out, need_h0 = d_out is not None, need_parts[0]  # reads_out False when only h_n, c_n are used
        rows = row_grads(xp, x, plan.hs, w_ih, need_x, need_params, back.dz)
        add, matmul, multiply = xp.add, xp.matmul, xp.multiply
        for (first, stop), locals_of_chunk, steps_back in back.chunks:   # the last chunk first: its local
            _local_derivatives(xp, *locals_of_chunk)                    # derivatives stay in cache for its loop
            for t, dz_rows, dz_o, dz_ifg, local_o, local_ifg, dc_from_h, forget in steps_back:
                if start is not None and t >= start:
                    _masked_step(xp, valid[t][:, None], None if d_out is None else d_out[t], w, back,
                                 (dz_rows, dz_o, dz_ifg, local_o, local_ifg, dc_from_h, forget))
                    continue
                if reads_out:
                    add(dh, d_out[t], out=dh)
                multiply(dh, dc_from_h, out=tmp)
                add(dc, tmp, out=dc)                         # dc_t
                multiply(local_o, dh, out=dz_o)
                multiply(local_ifg, dc, out=dz_ifg)
                multiply(dc, forget, out=dc)                 # dc_{t-1}
                if t or need_h0:
                    matmul(dz_rows, w, out=dh)               # dh_{t-1}
            rows.done(first)
        dx, grads = rows.result()
        return dx, (dh.copy() if need_h0 else None, dc.copy() if need_parts[1] else None), grads


def _masked_step(xp, mask, d_out_t, w, back, views):
    """One step back where some rows (``mask`` False) are past their length: those rows add
    nothing to the gradients and pass dh and dc on unchanged."""
    dz_rows, dz_o, dz_ifg, local_o, local_ifg, dc_from_h, forget = views
    dh, dc = back.dh, back.dc
    if d_out_t is not None:
        dh += d_out_t * mask
    dc_in = dc.copy()
    dc += dh * dc_from_h
    xp.multiply(local_o, dh, out=dz_o)
    xp.multiply(local_ifg, dc, out=dz_ifg)
    dc *= forget
    dz_rows *= mask
    carry(xp, dc, dc_in, mask)
    xp.copyto(dh, dz_rows @ w, where=mask)


class _Plan(KernelPlan):
    """An LSTM layer's buffers for one shape, and the views each step reads.

    acts (T, B, 4H): the projected inputs, then the pre-activations, then the gates; hs, cs
    (T+1, B, H): the states; w_t (H, 4H): W_hh^T with its sigmoid columns halved; scale and
    shift (B, 4H): 0.5 and 0.5 on sigmoid columns, 1 and 0 on g. The backward pass's own
    buffers (:class:`_BackwardPlan`) are made at its first backward."""

    __slots__ = ("w_ih_t", "acts", "hs", "cs", "tanh_c", "column_scale", "scale", "shift", "w_t", "rec", "ig")
    kept = ("acts", "hs", "cs", "tanh_c")    # what its backward reads (see kernels.keep_plan)

    def __init__(self, xp, steps, batch, inputs, n, dtype):
        self.w_ih_t = xp.empty((inputs, 4 * n), dtype)                   # W_ih^T (sigmoid columns halved)
        self.acts = xp.empty((steps, batch, 4 * n), dtype)
        self.hs, self.cs = xp.empty((steps + 1, batch, n), dtype), xp.empty((steps + 1, batch, n), dtype)
        self.tanh_c = xp.empty((steps, batch, n), dtype)
        self.column_scale, self.scale, self.shift = gate_scales(xp, GATES, n, batch, dtype)
        self.w_t = xp.empty((n, 4 * n), dtype)
        self.rec, self.ig = xp.empty((batch, 4 * n), dtype), xp.empty((batch, n), dtype)
        self._start(steps)

    def _views(self):
        n = self.hs.shape[2]
        rows = [GATES.rows(name, n) for name in GATES.names]
        acts, hs, cs = self.acts, self.hs, self.cs
        return [(hs[t], acts[t], *(acts[t][:, r] for r in rows), cs[t], cs[t + 1], self.tanh_c[t], hs[t + 1])
                for t in range(acts.shape[0])]

    def _make_backward(self, in_place):
        """dz is written over the gates when ``in_place`` (a backward after which the node is
        freed), else into a buffer of its own."""
        return _BackwardPlan(self, self.acts if in_place else None)


class _BackwardPlan:
    """dz (T, B, 4H): each step's dz (the gates' own buffer, a chunk of steps after their local
    derivatives were taken, when given); dh, dc, tmp (B, H); and for a chunk of S steps, gate-major
    so that the local derivatives are computed on contiguous arrays: local (4, S, B, H), i f g o
    then each gate's d(pre-activation) per unit of dc (i, f, g) or dh (o); dc_from_h (S, B, H),
    o (1 - tanh^2 c_t); forget (S, B, H), f. ``chunks``: per chunk, the last first, its steps
    (first, stop), the arguments of :func:`_local_derivatives` and the views of each of its steps,
    the last first."""

    __slots__ = ("dz", "local", "dc_from_h", "forget", "scratch", "dh", "dc", "tmp", "chunks")

    def __init__(self, plan, dz=None):
        acts = plan.acts
        steps, batch, width = acts.shape
        n = width // 4
        xp = backend.get_array_module(acts)
        self.dz = xp.empty((steps, batch, width), acts.dtype) if dz is None else dz
        by_gate = self.dz.reshape(steps, batch, 4, n).transpose(0, 2, 1, 3)     # dz[t] as (4, B, H)
        size = min(steps, max(1, _CHUNK // (batch * n)))
        self.local = xp.empty((4, size, batch, n), acts.dtype)
        self.dc_from_h, self.forget, self.scratch = (xp.empty((size, batch, n), acts.dtype) for _ in range(3))
        self.dh, self.dc, self.tmp = (xp.empty((batch, n), acts.dtype) for _ in range(3))
        self.chunks = []
        for stop in range(steps, 0, -size):
            first = max(0, stop - size)
            m = stop - first
            gates = acts[first:stop].reshape(m, batch, 4, n).transpose(2, 0, 1, 3)
            locals_of_chunk = (gates, plan.tanh_c[first:stop], plan.cs[first:stop], self.local[:, :m],
                               self.dc_from_h[:m], self.forget[:m], self.scratch[:m])
            self.chunks.append(((first, stop), locals_of_chunk, [
                (t, self.dz[t], by_gate[t, 3], by_gate[t, :3], self.local[3, t - first], self.local[:3, t - first],
                 self.dc_from_h[t - first], self.forget[t - first]) for t in range(stop - 1, first - 1, -1)]))


def _local_derivatives(xp, gates, tanh_c, c_prev, local, dc_from_h, forget, scratch):
    """For a chunk of S steps, from the gates (4, S, B, H) and tanh(c_t), c_{t-1} (S, B, H):
    local = each gate's d(pre-activation) per unit of the gradient that drives it,
    g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2) per unit of dc_t and tanh(c_t) o (1 - o) per
    unit of dh_t; dc_from_h = o (1 - tanh^2 c_t), what dh_t adds to dc_t; forget = f."""
    xp.copyto(local, gates)
    i, f, g, o = local
    xp.multiply(tanh_c, tanh_c, out=dc_from_h)
    xp.subtract(1, dc_from_h, out=dc_from_h)
    xp.multiply(dc_from_h, o, out=dc_from_h)
    xp.subtract(1, o, out=scratch)
    xp.multiply(scratch, tanh_c, out=scratch)
    xp.multiply(o, scratch, out=o)
    xp.copyto(forget, f)
    xp.subtract(1, f, out=scratch)
    xp.multiply(scratch, c_prev, out=scratch)
    xp.multiply(f, scratch, out=f)
    xp.subtract(1, i, out=scratch)
    xp.multiply(scratch, g, out=scratch)
    xp.multiply(g, g, out=g)
    xp.subtract(1, g, out=g)
    xp.multiply(g, i, out=g)
    xp.multiply(i, scratch, out=i)


class LSTMCell(GatedCell):
    """LSTM cell, PyTorch's ``nn.LSTMCell`` (gates i | f | g | o; equations in the module docstring).

    Args:
        input_size, hidden_size: features of x and of h and c.
        bias: with ``bias_ih`` and ``bias_hh`` (4H each; default True).
        fused: a call and a sequence run through :class:`LSTMKernel` (default); False runs the
            composed ``step`` (one graph node per op when called, traced for a sequence).
        device, dtype: of the parameters.
    Inputs: ``x``, ``state`` = (h, c) (optional, zeros when None).  Outputs: ``(h', c')``.
    Shape: x (B, I) or (I,), h and c (B, H) or (H,).
    Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H), U(-1/sqrt(H), 1/sqrt(H)).

    Example::

        cell = nn.LSTMCell(3, 8)
        state = None
        for x_t in tg.randn(5, 4, 3):
            state = cell(x_t, state)            # (h, c), each (4, 8)
    """

    gates = GATES
    own_kernel = LSTMKernel
    state_names = ("h", "c")

    def step(self, p, state):
        h, c = state
        i, f, g, o = GATES.activate(p + h @ self.weight_hh.T)
        c = f * c + i * g
        return o * c.tanh(), c
