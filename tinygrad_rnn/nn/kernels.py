"""Array helpers shared by the hand-tuned whole-sequence kernels of the built-in cells."""


def half_sigmoid_rows(xp, layout, hidden_size, dtype):
    """Per stacked row: 0.5 where the gate is a sigmoid (computed as tanh of half its input), else 1."""
    scale = xp.ones(len(layout) * hidden_size, dtype)
    for rows in layout.sigmoid_rows(hidden_size):
        scale[rows] = 0.5
    return scale


def projection(xp, x, w_ih, bias, scale=None):
    """(x W_ih^T + b) * scale for all T*B rows at once: (T, B, I) -> (T, B, G*H), a new array."""
    steps, batch, features = x.shape
    w_t = w_ih.T if scale is None else w_ih.T * scale
    out = (x.reshape(steps * batch, features) @ w_t).reshape(steps, batch, -1)
    if bias is not None:
        out += bias if scale is None else bias * scale
    return out


def input_grads(dz, x, w_ih, need_x, need_w):
    """{"x": dL/dx, "weight_ih": dL/dW_ih} (those needed) from dz (T, B, G*H), the gradient at
    the projected inputs: one matmul each over all T*B rows."""
    steps, batch, features = x.shape
    flat = dz.reshape(steps * batch, -1)
    grads = {}
    if need_x:
        grads["x"] = (flat @ w_ih).reshape(x.shape)
    if need_w:
        grads["weight_ih"] = flat.T @ x.reshape(steps * batch, features)
    return grads


def derivative_times(xp, out, s, other):
    """out = other * s (1 - s): a sigmoid output's derivative times ``other`` (``out`` may be ``other``)."""
    if out is other:
        out *= s
    else:
        xp.multiply(other, s, out=out)
    out -= out * s
