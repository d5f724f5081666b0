"""Optimizer: parameter groups, per-parameter state, and state_dict round trips.

A subclass gives its defaults and an ``update(p, grad, group, state)`` that
gives ``p.data`` its new array. Updates run on the raw arrays, outside the graph,
and never write into the old array: a graph still held (truncated BPTT keeps
one across updates) keeps the weights it was computed with.
"""
import numpy as np

from .. import backend
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for group in (params if isinstance(params[0], dict) else [{"params": params}]):
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(group["params"]):
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: params[{i}] must be a leaf Tensor, got {p!r:.60}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.check_hyperparameters(group)
        self.param_groups.append(group)

    def check_hyperparameters(self, group):
        for key in ("lr", "weight_decay", "eps", "momentum"):
            if key in group and group[key] < 0:
                raise ValueError(f"{type(self).__name__}: {key} must be non-negative, got {group[key]}")

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else _zeros_like(p.grad)

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad.data, group, self.state.setdefault(p, {}))
                    if isinstance(p.data, np.generic):     # NumPy makes scalars of 0-d results
                        p.data = np.asarray(p.data)

    def update(self, p, grad, group, state):
        raise NotImplementedError

    # ----- state -----
    def state_dict(self):
        """{"state": {param index: {name: NumPy array or number}}, "param_groups": [...]}, the
        parameters numbered in group order, as PyTorch does."""
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {index[id(p)]: {k: (backend.to_device(v, "cpu").copy() if hasattr(v, "shape") else v)
                                for k, v in s.items()} for p, s in self.state.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved groups hold "
                             f"{[len(g['params']) for g in groups]} parameters, this optimizer "
                             f"{[len(g['params']) for g in self.param_groups]}")
        params = [p for g in self.param_groups for p in g["params"]]
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {k: (backend.to_device(np.asarray(v, dtype=p.dtype), p.device) if np.ndim(v) else v)
                             for k, v in s.items()}


def _zeros_like(t):
    return Tensor._make(backend.get_array_module(t.data).zeros_like(t.data), False, None, 0)
