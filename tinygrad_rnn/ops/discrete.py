"""Ops without a gradient: comparisons, logic, sign, casts to int or bool.

Their results are piecewise constant in their inputs, so they carry no gradient
(``differentiable = False``: the engine never records them and their outputs never
require grad). They are still ops, not computations on ``.data``, so that a traced
step (:mod:`tinygrad_rnn.nn.trace_scan`) replays them at every time step: a mask
such as ``h > 0`` is recomputed from each step's ``h``, never frozen at step 0.
"""
from .. import backend
from ..function import Function


class Discrete(Function):
    """``xp.<name>(*arrays)`` for a NumPy function without a gradient (``less``, ``equal``,
    ``logical_and``, ``logical_not``, ``sign``, ``isfinite``, ``any``, ``all``...), or
    ``a.astype(dtype)`` for ``name="astype"``, ``a`` itself for ``name="detach"``."""

    differentiable = False

    @staticmethod
    def forward(ctx, *arrays, name, dtype=None):
        if name == "astype":
            return arrays[0].astype(dtype)
        if name == "detach":
            return arrays[0]
        xp = backend.get_array_module(*arrays)
        return xp.asarray(getattr(xp, name)(*arrays))

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("Discrete ops have no gradient and are never recorded in the graph")
