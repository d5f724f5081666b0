"""Adagrad (Duchi, Hazan & Singer 2011)."""
from .. import backend
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """s += g^2;  p -= lr_t g / (sqrt(s) + eps), with lr_t = lr / (1 + (t-1) lr_decay)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def update(self, p, g, group, state):
        if not state:
            xp = backend.get_array_module(p.data)
            state.update(step=0, sum=xp.full_like(p.data, group["initial_accumulator_value"]))
        state["step"] += 1
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] = s = state["sum"] + g * g
        p.data = p.data - lr * g / (s ** 0.5 + group["eps"])
