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
from .cells import GatedCell, GateLayout
from .kernels import context_of, derivative_times, half_sigmoid_rows, input_grads, needs_context, projection
from .trace_scan import Kernel, carry, mask_outputs, masked_steps, step_mask

GATES = GateLayout(i="sigmoid", f="sigmoid", g="tanh", o="sigmoid")
_FROM_C = slice(0, 3)       # the blocks of i, f, g: the gates whose gradient comes through dc
_FROM_H = 3                 # the block of o: its gradient comes through dh
_CHUNK = 1 << 15            # elements per gate in a chunk of steps of the backward pass


class LSTMKernel(Kernel):
    """All T steps of an LSTM layer on arrays, with backpropagation through time by hand:

        dc_t += dh_t o (1 - tanh^2 c_t)
        dz_o = dh_t tanh(c_t) o (1 - o)        dz_i = dc_t g i (1 - i)
        dz_f = dc_t c_{t-1} f (1 - f)          dz_g = dc_t i (1 - g^2)
        dc_{t-1} = dc_t f,    dh_{t-1} = dz W_hh

    The local derivatives are computed a chunk of steps at a time, just before the loop
    reaches them (while they are in cache: computed for all T at once, they cost per step
    3x more at T = 10,000 than at T = 100); dL/dW_hh, dL/dW_ih and dL/dx are one matmul
    each over all T*B rows."""

    takes_context = True        # a projected context among its parameters is added at every step

    @staticmethod
    def forward(ctx, cell, x, parts, params, valid):
        h0, c0 = parts
        xp = backend.get_array_module(x)
        steps, batch, _ = x.shape
        w_ih, w = params["weight_ih"], params["weight_hh"]
        bias = None if params["bias_ih"] is None else params["bias_ih"] + params["bias_hh"]
        n = w.shape[1]
        i, f, g, o = (GATES.rows(name, n) for name in GATES.names)
        scale = half_sigmoid_rows(xp, GATES, n, x.dtype)
        shift = 1 - scale                                      # 0.5 on sigmoid rows, 0 on g
        acts = projection(xp, x, w_ih, bias, scale, context_of(params))   # becomes the activated gates
        hs = xp.empty((steps + 1, batch, n), x.dtype)
        cs = xp.empty((steps + 1, batch, n), x.dtype)
        hs[0], cs[0] = h0, c0
        w_t = xp.ascontiguousarray(w.T * scale)
        rec, ig = xp.empty((batch, 4 * n), x.dtype), xp.empty((batch, n), x.dtype)
        start = masked_steps(valid)
        for t in range(steps):
            z = acts[t]
            xp.matmul(hs[t], w_t, out=rec)
            z += rec
            xp.tanh(z, out=z)
            z *= scale
            z += shift
            xp.multiply(z[:, f], cs[t], out=cs[t + 1])
            xp.multiply(z[:, i], z[:, g], out=ig)
            cs[t + 1] += ig
            xp.tanh(cs[t + 1], out=hs[t + 1])
            hs[t + 1] *= z[:, o]
            mask = step_mask(valid, start, t)
            if mask is not None:
                carry(xp, hs[t + 1], hs[t], mask)
                carry(xp, cs[t + 1], cs[t], mask)
        ctx.start, ctx.cache, ctx.states = start, acts, (hs, cs)
        return mask_outputs(xp, hs[1:], valid, start), hs[steps].copy(), cs[steps].copy()

    @staticmethod
    def backward(ctx, d_out, d_final, need_x, need_parts, need_params):
        x, w_ih, w = ctx.saved_tensors[0], ctx.params["weight_ih"], ctx.params["weight_hh"]
        xp, valid, start = ctx.xp, ctx.valid, ctx.start
        acts, (hs, cs) = ctx.cache, ctx.states
        steps, batch, width = acts.shape
        n = width // 4
        dz_all = xp.empty((steps, batch, 4, n), acts.dtype)    # d(pre-activation) / (dc or dh), then dz
        chunk = max(1, _CHUNK // (batch * n))
        dc_from_h = xp.empty((chunk, batch, n), acts.dtype)
        dh, dc = d_final[0].copy(), d_final[1].copy()
        tmp = xp.empty_like(dh)
        forget = acts[..., GATES.rows("f", n)]
        reads_out = d_out is not None                           # False when only the final state is used
        for stop in range(steps, 0, -chunk):                    # a chunk of steps at a time, the last first:
            first = max(0, stop - chunk)                        # its local derivatives stay in cache for its loop
            _local_derivatives(xp, acts[first:stop], cs[first:stop + 1], dz_all[first:stop],
                               dc_from_h[:stop - first])
            for t in range(stop - 1, first - 1, -1):
                mask = step_mask(valid, start, t)
                if reads_out:
                    dh += d_out[t] if mask is None else d_out[t] * mask
                dc_in = None if mask is None else dc.copy()
                xp.multiply(dh, dc_from_h[t - first], out=tmp)
                dc += tmp
                dz = dz_all[t]
                dz[:, _FROM_C] *= dc[:, None]
                dz[:, _FROM_H] *= dh
                dc *= forget[t]
                dz = dz.reshape(batch, width)
                if mask is not None:
                    dz *= mask
                    carry(xp, dc, dc_in, mask)
                    dh = xp.where(mask, dz @ w, dh)
                else:
                    xp.matmul(dz, w, out=dh)
        dz_all = dz_all.reshape(steps, batch, width)
        grads = input_grads(dz_all, x, w_ih, need_x, need_params["weight_ih"], needs_context(need_params))
        if need_params["weight_hh"]:
            grads["weight_hh"] = dz_all.reshape(-1, width).T @ hs[:-1].reshape(-1, n)
        if need_params["bias_ih"] or need_params["bias_hh"]:
            db = dz_all.reshape(-1, width).sum(axis=0)
            grads["bias_ih"], grads["bias_hh"] = db, db
        dx = grads.pop("x", None)
        return dx, (dh if need_parts[0] else None, dc if need_parts[1] else None), grads


def _local_derivatives(xp, acts, cs, dz, dc_from_h):
    """For a chunk of S steps: dz (S, B, 4, H) gets each gate's d(pre-activation) per unit of the
    gradient that drives it (dc for i, f, g; dh for o), and dc_from_h (S, B, H) gets
    o (1 - tanh^2 c'), what dh adds to dc; acts (S, B, 4H) holds the activated gates, cs the
    S + 1 cell states around the chunk."""
    n = dz.shape[-1]
    i, f, g, o = (acts[..., GATES.rows(name, n)] for name in GATES.names)
    blocks = {name: dz[:, :, k] for k, name in enumerate(GATES.names)}
    derivative_times(xp, blocks["i"], i, g)                     # g i (1 - i)
    derivative_times(xp, blocks["f"], f, cs[:-1])               # c f (1 - f)
    xp.multiply(g, g, out=blocks["g"])                          # i (1 - g^2)
    xp.subtract(1, blocks["g"], out=blocks["g"])
    blocks["g"] *= i
    tanh_c = blocks["o"]
    xp.tanh(cs[1:], out=tanh_c)
    xp.multiply(tanh_c, tanh_c, out=dc_from_h)                  # o (1 - tanh^2 c')
    xp.subtract(1, dc_from_h, out=dc_from_h)
    dc_from_h *= o
    derivative_times(xp, tanh_c, o, tanh_c)                     # tanh(c') o (1 - o)


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
