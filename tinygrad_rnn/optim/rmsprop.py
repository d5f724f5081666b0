"""RMSprop (Tieleman & Hinton 2012), with Graves' (2013) centred variant."""
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """s = a s + (1-a) g^2;  d = sqrt(s - gbar^2) (centred) or sqrt(s), plus eps;
    p -= lr g / d, or through a momentum buffer b = mu b + g / d."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def update(self, p, g, group, state):
        a = group["alpha"]
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        state["square_avg"] = sq = a * state.get("square_avg", 0.0) + (1 - a) * g * g
        if group["centered"]:
            state["grad_avg"] = ga = a * state.get("grad_avg", 0.0) + (1 - a) * g
            denom = (sq - ga * ga) ** 0.5 + group["eps"]
        else:
            denom = sq ** 0.5 + group["eps"]
        if group["momentum"]:
            state["momentum_buffer"] = buf = group["momentum"] * state.get("momentum_buffer", 0.0) + g / denom
            p.data = p.data - group["lr"] * buf
        else:
            p.data = p.data - group["lr"] * g / denom
