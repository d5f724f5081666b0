"""Optimizer: parameter groups, per-parameter state, and state_dict round trips.

A subclass gives its defaults and an ``update(p, grad, group, state)`` that
gives ``p.data`` its new array. Updates run on the raw arrays, outside the graph,
and never write into the old array: a graph still held (truncated BPTT keeps
one across updates) keeps the weights it was computed with.

Nothing reaches ``update`` unchecked: hyperparameters are checked (and made
Python numbers, so a NumPy scalar cannot promote a float32 parameter to float64)
when a group is added or loaded, and ``step`` checks every gradient and state
buffer against its parameter's shape and dtype before it changes anything.
"""
import math
import numbers
import os
import sys
import warnings

import numpy as np

from .. import backend
from ..tensor import Tensor

_NON_NEGATIVE = ("lr", "momentum", "weight_decay", "eps", "lr_decay", "initial_accumulator_value")
_FLAGS = ("nesterov", "amsgrad", "centered")
_HERE = os.path.dirname(os.path.abspath(__file__))


class Optimizer:
    def __init__(self, params, defaults):
        params = _as_list(type(self).__name__, params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.check_hyperparameters(defaults)
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for group in (params if isinstance(params[0], dict) else [{"params": params}]):
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict with "params" and any hyperparameters that differ from the defaults.
        A parameter listed twice in the group is kept once (with a warning, as PyTorch
        warns), so each step updates it once; one in two groups raises."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' entry, got {group!r:.60}")
        group = dict(group)
        params = _as_list(name, group["params"])
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise TypeError(f"{name}: params[{i}] must be a leaf Tensor, got {p!r:.60}")
        group["params"] = list({id(p): p for p in params}.values())
        if len(group["params"]) < len(params):
            warnings.warn(f"{name}: a parameter group lists {len(params) - len(group['params'])} parameter(s) "
                          "more than once; each is kept once, so a step updates it once",
                          stacklevel=_caller_level())
        seen = {id(p): gi for gi, g in enumerate(self.param_groups) for p in g["params"]}
        for i, p in enumerate(group["params"]):
            if id(p) in seen:
                raise ValueError(f"{name}: a parameter appears in two groups (params[{i}] of the new group "
                                 f"is already in param_groups[{seen[id(p)]}])")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.check_hyperparameters(group)
        self.param_groups.append(group)

    def check_hyperparameters(self, group):
        """Raise if a hyperparameter in ``group`` is of the wrong type or out of range;
        otherwise make each a Python number (betas a tuple of two), in place."""
        name = type(self).__name__
        for key in _NON_NEGATIVE + ("alpha", "dampening"):
            if key in group:
                group[key] = _number(name, key, group[key])
        for key in _NON_NEGATIVE:
            if group.get(key, 0.0) < 0:
                raise ValueError(f"{name}: {key} must be >= 0, got {group[key]}")
        if not 0.0 <= group.get("alpha", 0.0) <= 1.0:
            raise ValueError(f"{name}: alpha must be in [0, 1], got {group['alpha']}")
        for key in _FLAGS:
            if key in group:
                if not isinstance(group[key], (bool, np.bool_)):
                    raise TypeError(f"{name}: {key} must be True or False, got {group[key]!r}")
                group[key] = bool(group[key])
        if "betas" in group:
            betas = group["betas"]
            if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
                raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
            group["betas"] = tuple(_number(name, "betas", b) for b in betas)
            if not all(0.0 <= b < 1.0 for b in group["betas"]):
                raise ValueError(f"{name}: betas must be in [0, 1), got {group['betas']}")

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none or p.grad is None else _zeros_like(p.grad)

    def step(self):
        """Update every parameter that has a gradient. All gradients and state buffers
        are checked first: on an error no parameter and no state has changed."""
        todo = [(p, group) for group in self.param_groups for p in group["params"] if p.grad is not None]
        for p, _ in todo:
            self._check_against(p)
        for p, group in todo:
            self.update(p, p.grad.data, group, self.state.setdefault(p, {}))
            if isinstance(p.data, np.generic):     # NumPy makes scalars of 0-d results
                p.data = np.asarray(p.data)

    def _check_against(self, p):
        """Raise unless p.grad and p's state buffers have p's shape, dtype and device."""
        where = f"{type(self).__name__}.step: {self._describe(p)}"
        if not isinstance(p.grad, Tensor):
            raise TypeError(f"{where} has a .grad of type {type(p.grad).__name__}, expected a Tensor")
        arrays = [("its .grad", p.grad.data, "was it set by hand, or changed by a hook?")]
        arrays += [(f"its state {k!r}", v, "was it loaded from another model? if the model was cast or moved "
                    "after this optimizer stepped, optimizer.load_state_dict(optimizer.state_dict()) casts it")
                   for k, v in self.state.get(p, {}).items() if hasattr(v, "shape")]
        for what, a, hint in arrays:
            wrong = [(f"{key} {got}", f"{key} {want}") for key, got, want in
                     (("shape", tuple(a.shape), p.shape), ("dtype", a.dtype.name, p.dtype.name),
                      ("device", _device(a), p.device)) if got != want]
            if wrong:
                raise ValueError(f"{where}: {what} has {' and '.join(g for g, _ in wrong)}, expected "
                                 f"{' and '.join(w for _, w in wrong)} like the parameter ({hint}); "
                                 "nothing was updated")

    def _describe(self, p):
        for gi, group in enumerate(self.param_groups):
            for pi, q in enumerate(group["params"]):
                if q is p:
                    return f"param_groups[{gi}]['params'][{pi}] (shape {p.shape}, {p.dtype.name})"

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
        """Take the hyperparameters and state of a ``state_dict()`` (also one read back
        with ``tg.load``). Everything is checked before anything changes: the group
        sizes, every hyperparameter, every parameter index, and every state buffer's
        shape and convertibility to its parameter's dtype (to which it is cast)."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError(f"{name}: expected a dict with 'state' and 'param_groups', got {state_dict!r:.80}")
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"{name}: the saved groups hold {[len(g['params']) for g in groups]} "
                             f"parameters, this optimizer {[len(g['params']) for g in self.param_groups]}")
        new_groups = []
        for group, saved in zip(self.param_groups, groups):
            merged = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            self.check_hyperparameters(merged)
            new_groups.append(merged)
        params = [p for g in self.param_groups for p in g["params"]]
        new_state = {}
        for i, saved in state_dict["state"].items():
            index = _index(name, i, len(params))
            p = params[index]
            new_state[p] = {k: _state_value(f"{name}: state[{i}][{k!r}]", k, v, p)
                            for k, v in saved.items() if v is not None}
        for group, merged in zip(self.param_groups, new_groups):
            group.update(merged)
        self.state = new_state


def _as_list(owner, params):
    if isinstance(params, (set, frozenset)):
        raise TypeError(f"{owner}: params must be an ordered collection such as a list, got a set "
                        "(its order, and so the numbering in state_dict, changes between runs)")
    return [params] if isinstance(params, Tensor) else list(params)


def _number(owner, key, value):
    """``value`` as a finite Python float (a 0-d array or NumPy scalar is fine), else raise."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {key} must be a real number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {key} must be finite, got {value}")
    return float(value)


def _index(name, i, count):
    try:
        index = int(i)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: state keys must be parameter indices, got {i!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"{name}: state for parameter {index}, but this optimizer has {count} parameters")
    return index


def _state_value(where, key, value, p):
    """A loaded state entry: "step" as a Python int, any other a buffer of p's shape, cast to
    p's dtype and moved to p's device."""
    if key == "step":
        step = np.asarray(value)
        if step.ndim or step.dtype.kind not in "iuf" or not (step >= 0 and step == np.floor(step)):
            raise ValueError(f"{where} must be a whole number >= 0, got {value!r:.60}")
        return int(step)
    host = value.numpy() if isinstance(value, Tensor) else value
    host = backend.to_device(host, "cpu") if hasattr(host, "__cuda_array_interface__") else np.asarray(host)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{where} holds {host.dtype} values, expected numbers convertible to {p.dtype.name}")
    if host.shape != p.shape:
        raise ValueError(f"{where} has shape {host.shape}, expected {p.shape} like its parameter "
                         f"(was the state saved from another model?)")
    return backend.to_device(host.astype(p.dtype), p.device)


def _device(a):
    return "cpu" if isinstance(a, (np.ndarray, np.generic)) else "cuda"


def _caller_level():
    """The stacklevel of the first frame outside this package's optimizers, for warnings."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame, level = frame.f_back, level + 1
    return level


def _zeros_like(t):
    return Tensor._make(backend.get_array_module(t.data).zeros_like(t.data), False, None, 0)
