"""Array helpers shared by the hand-tuned whole-sequence kernels of the built-in cells.

A kernel's parameters may include ``PROJECTED_CONTEXT``: a (B, G*H) array added to every
step's projected input (a layer's context, projected once: :mod:`tinygrad_rnn.nn.context`);
``projection`` adds it and ``input_grads`` returns its gradient, the sum over the steps.
"""

PROJECTED_CONTEXT = "projected_context"


def half_sigmoid_rows(xp, layout, hidden_size, dtype):
    """Per stacked row: 0.5 where the gate is a sigmoid (computed as tanh of half its input), else 1."""
    scale = xp.ones(len(layout) * hidden_size, dtype)
    for rows in layout.sigmoid_rows(hidden_size):
        scale[rows] = 0.5
    return scale


def projection(xp, x, w_ih, bias, scale=None, context=None):
    """(x W_ih^T + b + q) * scale for all T*B rows at once: (T, B, I) -> (T, B, G*H), a new array;
    q (B, G*H) is the projected context added at every step, or None."""
    steps, batch, features = x.shape
    w_t = w_ih.T if scale is None else w_ih.T * scale
    out = (x.reshape(steps * batch, features) @ w_t).reshape(steps, batch, -1)
    for term in (bias, context):
        if term is not None:
            out += term if scale is None else term * scale
    return out


def input_grads(dz, x, w_ih, need_x, need_w, need_context=False):
    """{"x": dL/dx, "weight_ih": dL/dW_ih, PROJECTED_CONTEXT: dL/dq} (those needed) from dz
    (T, B, G*H), the gradient at the projected inputs: one matmul each over all T*B rows, and
    for q, added at every step, the sum of dz over the steps."""
    steps, batch, features = x.shape
    flat = dz.reshape(steps * batch, -1)
    grads = {}
    if need_x:
        grads["x"] = (flat @ w_ih).reshape(x.shape)
    if need_w:
        grads["weight_ih"] = flat.T @ x.reshape(steps * batch, features)
    if need_context:
        grads[PROJECTED_CONTEXT] = dz.sum(axis=0)
    return grads


def context_of(params):
    """The projected context among a kernel's parameters, or None."""
    return params.get(PROJECTED_CONTEXT)


def needs_context(need_params):
    """Whether the projected context (if the kernel has one) needs a gradient."""
    return need_params.get(PROJECTED_CONTEXT, False)


def derivative_times(xp, out, s, other):
    """out = other * s (1 - s): a sigmoid output's derivative times ``other`` (``out`` may be ``other``)."""
    if out is other:
        out *= s
    else:
        xp.multiply(other, s, out=out)
    out -= out * s
